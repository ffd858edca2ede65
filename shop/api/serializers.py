"""Output shapes shared by several shop endpoints (and reusable by other
apps: the recommender's items are products too). Inputs are nested in the
view that reads them. Money is a string with two decimals."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from shop.models import Product


def _absolute(request, url: str) -> str:
    return request.build_absolute_uri(url) if request is not None else url


class MoneyField(serializers.DecimalField):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_digits=12, decimal_places=2, coerce_to_string=True, **kwargs)


class CategorySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.SlugField()


class ProductSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.SlugField()
    price = MoneyField()
    category = CategorySerializer()
    in_stock = serializers.BooleanField()
    url = serializers.SerializerMethodField(help_text="The product's page in the store.")
    image = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, product: Product) -> str:
        return _absolute(self.context.get("request"), product.get_absolute_url())

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_image(self, product: Product) -> str | None:
        if not product.image:
            return None
        return _absolute(self.context.get("request"), product.image.url)


class ProductDetailSerializer(ProductSerializer):
    description = serializers.CharField()
    brand = serializers.CharField()
    colour = serializers.CharField()
    material = serializers.CharField()
    stock = serializers.IntegerField(help_text="Units available now.")


class CartItemSerializer(serializers.Serializer):
    product = ProductSerializer()
    quantity = serializers.IntegerField()
    line_total = MoneyField()


class CartSerializer(serializers.Serializer):
    """Reads a shop.selectors.CartSummary."""

    items = CartItemSerializer(many=True)
    subtotal = MoneyField(help_text="The goods, without delivery.")
    delivery_fee = MoneyField(
        help_text="What delivery of this cart costs (SHOP_DELIVERY_FEE rule)."
    )
    total = MoneyField(help_text="What checking out would charge: goods plus delivery.")
    count = serializers.IntegerField(help_text="Units in the cart.")
    checkout_token = serializers.UUIDField(
        source="cart.checkout_token",
        help_text="Send it with POST /checkout/ so that a retried checkout returns the same order.",
    )


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer (see shop.api.exceptions)."""

    detail = serializers.CharField(help_text="A message fit to show the shopper.")
    code = serializers.CharField(
        help_text="Machine-readable, e.g. invalid_quantity or out_of_stock."
    )


class ShortageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    requested = serializers.IntegerField()
    available = serializers.IntegerField()


class StockErrorSerializer(ErrorSerializer):
    products = ShortageSerializer(
        many=True,
        required=False,
        help_text="With code out_of_stock: every line that cannot be served.",
    )
