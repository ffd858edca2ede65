"""Shop API, one class per action: parse with the nested InputSerializer,
call one selector or service, answer with an output serializer. Domain errors
propagate to shop.api.exceptions, which maps them to 400/404/409."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import ensure_csrf_cookie
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from shop import selectors
from shop.api.schema import ApiAutoSchema
from shop.api.serializers import (
    CartSerializer,
    CategorySerializer,
    ErrorSerializer,
    MoneyField,
    ProductDetailSerializer,
    ProductSerializer,
    StockErrorSerializer,
)
from shop.exceptions import InvalidQuantity
from shop.models import MAX_LINE_QUANTITY, Category, Product
from shop.services import cart_add_item, cart_remove_item, cart_update_item, order_place
from shop.sessions import cart_for_request, remember_placed_order, visit_key
from shop.throttling import CART

# One message for every way a quantity can be wrong, as the HTML forms say it.
QUANTITY_ERRORS = dict.fromkeys(
    ("invalid", "min_value", "max_value", "required", "null"), InvalidQuantity.default_message
)


def _error(
    description: str, serializer: type[ErrorSerializer] = ErrorSerializer
) -> OpenApiResponse:
    return OpenApiResponse(serializer, description=description)


CSRF_ERROR = _error("Missing or wrong X-CSRFToken header.")
THROTTLED = _error("Too many cart changes or checkouts; retry after Retry-After seconds.")


def _quantity_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=1, max_value=MAX_LINE_QUANTITY, error_messages=QUANTITY_ERRORS
    )


# Base of the storefront's endpoints (a comment, not a docstring: the schema
# would show it as every subclass's description). Each endpoint sets the
# csrftoken cookie, so a client can read it from any GET and send it back as
# X-CSRFToken on its writes (CsrfEnforcedSessionAuthentication checks it, for
# guests too).
@method_decorator(ensure_csrf_cookie, name="dispatch")
class ShopApiView(APIView):
    schema = ApiAutoSchema()


def _cart_response(request: Request, *, status_code: int = status.HTTP_200_OK) -> Response:
    summary = selectors.cart_detail(cart=cart_for_request(request))
    return Response(CartSerializer(summary, context={"request": request}).data, status=status_code)


# ---------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------
class CategoryListApi(ShopApiView):
    """All categories, in menu order."""

    @extend_schema(operation_id="categories_list", responses=CategorySerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(CategorySerializer(selectors.category_list(), many=True).data)


class ProductListApi(ShopApiView):
    """Active products, 24 per page: by popularity, or best match first with `q`."""

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    class FilterSerializer(serializers.Serializer):
        category = serializers.CharField(
            required=False, help_text="A category's slug or id; an unknown one matches nothing."
        )
        q = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=selectors.SEARCH_MAX_LENGTH,
            help_text="Free-text search (PostgreSQL websearch syntax); results come best first.",
        )

    @extend_schema(
        operation_id="products_list",
        parameters=[FilterSerializer],
        responses={
            200: ProductSerializer(many=True),
            400: _error("A filter is invalid (e.g. q too long)."),
            404: _error("No such page."),
        },
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        category_ref = filters.validated_data.get("category")
        category = self._category(category_ref) if category_ref else None
        query = filters.validated_data.get("q", "")
        if category_ref and category is None:
            products = Product.objects.none()
        elif query:
            products = selectors.product_search(query=query, category=category)
        else:
            products = selectors.product_list(category=category)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(products, request, view=self)
        return paginator.get_paginated_response(
            ProductSerializer(page, many=True, context={"request": request}).data
        )

    @staticmethod
    def _category(ref: str) -> Category | None:
        lookup = {"pk": int(ref)} if ref.isdecimal() else {"slug": ref}
        return Category.objects.filter(**lookup).first()


class ProductDetailApi(ShopApiView):
    """One active product, with its description, attributes and stock."""

    @extend_schema(
        operation_id="products_retrieve",
        responses={
            200: ProductDetailSerializer,
            404: _error("No such product, or no longer sold."),
        },
    )
    def get(self, request: Request, product_id: int) -> Response:
        product = get_object_or_404(selectors.product_list(), pk=product_id)
        return Response(ProductDetailSerializer(product, context={"request": request}).data)


# ---------------------------------------------------------------------------
# Cart
# ---------------------------------------------------------------------------
class CartDetailApi(ShopApiView):
    """The shopper's cart (of the account when signed in, else of the session)."""

    @extend_schema(operation_id="cart_retrieve", responses=CartSerializer)
    def get(self, request: Request) -> Response:
        return _cart_response(request)


class CartItemAddApi(ShopApiView):
    """Add units of a product to the cart, on top of any already there."""

    throttle_classes = CART

    class InputSerializer(serializers.Serializer):
        product_id = serializers.IntegerField()
        quantity = _quantity_field()

    @extend_schema(
        operation_id="cart_items_create",
        request=InputSerializer,
        responses={
            201: CartSerializer,
            400: _error(
                "Quantity not a whole number in 1..50 (also counting units already in the cart), or unknown product."
            ),
            403: CSRF_ERROR,
            409: _error(
                "Not enough stock (lists `products`), or product no longer sold.",
                StockErrorSerializer,
            ),
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        data = self._validated(request)
        cart_add_item(
            cart=cart_for_request(request),
            product=data["product"],
            quantity=data["quantity"],
            session_key=visit_key(request.session),
        )
        return _cart_response(request, status_code=status.HTTP_201_CREATED)

    def _validated(self, request: Request) -> dict:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        product = Product.objects.filter(pk=serializer.validated_data["product_id"]).first()
        if product is None:
            raise serializers.ValidationError({"product_id": ["No product with this id."]})
        return {"product": product, "quantity": serializer.validated_data["quantity"]}


# PATCH and DELETE share the contract's path, so one class answers both.
class CartItemApi(ShopApiView):
    throttle_classes = CART

    class UpdateInputSerializer(serializers.Serializer):
        quantity = _quantity_field()

    @extend_schema(
        operation_id="cart_items_partial_update",
        # A raw schema: given a serializer, drf-spectacular documents every
        # PATCH field as optional, but quantity is required here.
        request={
            "application/json": {
                "type": "object",
                "properties": {
                    "quantity": {"type": "integer", "minimum": 1, "maximum": MAX_LINE_QUANTITY}
                },
                "required": ["quantity"],
            }
        },
        responses={
            200: CartSerializer,
            400: _error("Quantity not a whole number in 1..50."),
            403: CSRF_ERROR,
            404: _error("No such product, or it is not in the cart."),
            409: _error(
                "Not enough stock (lists `products`), or product no longer sold.",
                StockErrorSerializer,
            ),
            429: THROTTLED,
        },
        description="Set the quantity of a product already in the cart.",
    )
    def patch(self, request: Request, product_id: int) -> Response:
        product = get_object_or_404(Product, pk=product_id)
        serializer = self.UpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        cart_update_item(
            cart=cart_for_request(request),
            product=product,
            quantity=serializer.validated_data["quantity"],
        )
        return _cart_response(request)

    @extend_schema(
        operation_id="cart_items_destroy",
        request=None,
        responses={
            200: CartSerializer,
            403: CSRF_ERROR,
            404: _error("No such product."),
            429: THROTTLED,
        },
        description="Removes the product from the cart; removing one that is not there is not an error.",
    )
    def delete(self, request: Request, product_id: int) -> Response:
        product = get_object_or_404(Product, pk=product_id)
        cart_remove_item(
            cart=cart_for_request(request), product=product, session_key=visit_key(request.session)
        )
        return _cart_response(request)


# ---------------------------------------------------------------------------
# Checkout
# ---------------------------------------------------------------------------
class CheckoutApi(ShopApiView):
    """Place an order for everything in the cart, in one transaction."""

    throttle_classes = CART

    class InputSerializer(serializers.Serializer):
        email = serializers.EmailField(max_length=254)
        name = serializers.CharField(max_length=200)
        address = serializers.CharField(max_length=1000)
        checkout_token = serializers.UUIDField(
            required=False,
            help_text="The cart's checkout_token. Retrying with the same token returns the same order; "
            "without it the cart's current token is used.",
        )

    class OutputSerializer(serializers.Serializer):
        class LineSerializer(serializers.Serializer):
            product_id = serializers.IntegerField()
            name = serializers.CharField(source="product_name")
            unit_price = MoneyField()
            quantity = serializers.IntegerField()
            line_total = MoneyField()

        order_id = serializers.IntegerField(source="pk")
        subtotal = MoneyField(help_text="The goods, without delivery.")
        delivery_fee = MoneyField()
        total = MoneyField(help_text="What was charged: goods plus delivery.")
        items = LineSerializer(source="lines", many=True)

    @extend_schema(
        operation_id="checkout_create",
        request=InputSerializer,
        responses={
            201: OpenApiResponse(OutputSerializer, description="Order placed."),
            200: OpenApiResponse(
                OutputSerializer,
                description="A retry of a checkout that already succeeded: the same order, nothing changed.",
            ),
            400: _error("Invalid contact data, or the cart is empty."),
            403: CSRF_ERROR,
            409: _error(
                "Stock ran out (lists `products`; nothing was ordered), or the checkout_token is not this cart's.",
                StockErrorSerializer,
            ),
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        placed = order_place(
            cart=cart_for_request(request),
            session_key=visit_key(request.session),
            **serializer.validated_data,
        )
        remember_placed_order(request, placed.order)
        order = selectors.order_detail_queryset().get(pk=placed.order.pk)
        return Response(
            self.OutputSerializer(order).data,
            status=status.HTTP_201_CREATED if placed.created else status.HTTP_200_OK,
        )
