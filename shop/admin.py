from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from shop.models import Category, Order, OrderLine, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position", "product_count"]
    list_editable = ["position"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Category]:
        return super().get_queryset(request).annotate(product_count=Count("products"))

    @admin.display(description="products", ordering="product_count")
    def product_count(self, category: Category) -> int:
        return category.product_count


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = [
        "thumbnail",
        "name",
        "sku",
        "category",
        "brand",
        "price",
        "stock",
        "is_active",
        "units_sold",
    ]
    list_display_links = ["thumbnail", "name"]
    list_editable = ["stock", "is_active"]
    list_filter = ["category", "is_active", "brand"]
    list_select_related = ["category"]
    list_per_page = 50
    search_fields = ["name", "sku", "brand"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["thumbnail", "units_sold", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "sku", "category", "description", "is_active"]}),
        ("Attributes", {"fields": ["brand", "colour", "material"]}),
        ("Price and stock", {"fields": ["price", "stock", "units_sold"]}),
        ("Image", {"fields": ["image", "thumbnail"]}),
        ("History", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    @admin.display(description="image")
    def thumbnail(self, product: Product) -> str:
        if not product.image:
            return "—"
        return format_html(
            '<img src="{}" alt="" width="48" height="48" style="border-radius:6px;object-fit:cover">',
            product.image.url,
        )


class OrderLineInline(admin.TabularInline):
    """Lines are a record of what was sold at what price: never edited."""

    model = OrderLine
    fields = ["product", "product_name", "unit_price", "quantity", "line_total"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "created_at", "name", "email", "user", "total", "status"]
    list_filter = ["status", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["email", "name"]
    search_help_text = "E-mail, name, or order number (e.g. 1042 or #1042)."
    list_select_related = ["user"]
    inlines = [OrderLineInline]
    # Only the status moves on (placed → shipped / cancelled); the rest is what
    # the shopper submitted and was charged.
    readonly_fields = [
        "user",
        "session_key",
        "idempotency_key",
        "email",
        "name",
        "address",
        "total",
        "created_at",
    ]
    fields = ["status", *readonly_fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Order], search_term: str
    ) -> tuple[QuerySet[Order], bool]:
        # Not "=id" in search_fields: a non-numeric term would make that a
        # database error. An order number is matched only when it is one.
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        number = search_term.strip().removeprefix("#")
        if number.isdecimal():  # what int() reads: "²" is a digit, not a decimal
            results |= queryset.filter(pk=int(number))
        return results, may_have_duplicates
