"""Shop domain: catalog, carts and orders. Business rules live in services.py
(writes) and selectors.py (reads); models hold data and invariants only."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse

# A cart line holds 1..MAX_LINE_QUANTITY units: enough for any real shopper,
# small enough that a typo (500 instead of 5) is caught before checkout.
MAX_LINE_QUANTITY = 50


class Category(models.Model):
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in menus.")

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("shop:category", kwargs={"slug": self.slug})


class Product(models.Model):
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, unique=True)
    sku = models.CharField("SKU", max_length=32, unique=True)
    description = models.TextField(blank=True)
    brand = models.CharField(max_length=80, blank=True, db_index=True)
    colour = models.CharField(max_length=40, blank=True)
    material = models.CharField(max_length=40, blank=True)
    price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    stock = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True, db_index=True)
    image = models.ImageField(upload_to="products/", blank=True)
    units_sold = models.PositiveIntegerField(
        default=0, help_text="Denormalised popularity, incremented by order_place."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["category", "is_active"]),
            models.Index(fields=["-units_sold"]),
            models.Index(fields=["price"]),
            # The few products that cannot be sold now: what the recommender's
            # web processes re-read every few seconds (recommender/serving/server.py).
            models.Index(
                fields=["id"],
                condition=models.Q(stock=0) | models.Q(is_active=False),
                name="product_unavailable",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("shop:product", kwargs={"slug": self.slug})

    @property
    def in_stock(self) -> bool:
        return self.stock > 0


class Cart(models.Model):
    """One cart per signed-in user or per anonymous session."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="cart",
    )
    session_key = models.CharField(max_length=40, null=True, blank=True, unique=True)
    # Identifies one checkout attempt of this cart's contents: a retried
    # checkout carries the same token and gets the same order back.
    checkout_token = models.UUIDField(default=uuid.uuid4)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Cart {self.pk} ({self.user or self.session_key})"


class CartItem(models.Model):
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="items")
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField()
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["added_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["cart", "product"], name="unique_cart_product"),
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1, quantity__lte=MAX_LINE_QUANTITY),
                name="cart_item_quantity_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product}"

    @property
    def line_total(self) -> Decimal:
        return self.product.price * self.quantity


class Order(models.Model):
    class Status(models.TextChoices):
        PLACED = "placed", "Placed"
        SHIPPED = "shipped", "Shipped"
        CANCELLED = "cancelled", "Cancelled"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="orders",
    )
    session_key = models.CharField(max_length=40, blank=True, db_index=True)
    idempotency_key = models.UUIDField(unique=True)
    email = models.EmailField()
    name = models.CharField(max_length=200)
    address = models.TextField()
    total = models.DecimalField(
        max_digits=12, decimal_places=2, help_text="What was charged: goods plus delivery."
    )
    delivery_fee = models.DecimalField(
        max_digits=10, decimal_places=2, default=Decimal("0.00"), help_text="Included in total."
    )
    receipt_sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the receipt e-mail went out (empty: not sent)."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLACED)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Order #{self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("shop:order_detail", kwargs={"pk": self.pk})

    @property
    def subtotal(self) -> Decimal:
        """The goods, without delivery."""
        return self.total - self.delivery_fee


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    product_name = models.CharField(max_length=200)
    unit_price = models.DecimalField(max_digits=10, decimal_places=2)
    quantity = models.PositiveIntegerField()

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gte=1), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_name}"

    @property
    def line_total(self) -> Decimal:
        return self.unit_price * self.quantity
