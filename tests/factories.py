"""factory_boy factories for the shop's models, shared by every test package."""

from __future__ import annotations

import uuid
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from shop.models import Cart, CartItem, Category, Order, OrderLine, Product

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"shopper{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    first_name = "Ada"
    last_name = factory.Sequence(lambda n: f"Lovelace{n}")
    password = factory.django.Password(PASSWORD)


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")
    description = "Things worth having."
    position = factory.Sequence(int)


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    category = factory.SubFactory(CategoryFactory)
    name = factory.Sequence(lambda n: f"Northwind Merino Crew Sweater {n}")
    slug = factory.Sequence(lambda n: f"northwind-merino-crew-sweater-{n}")
    sku = factory.Sequence(lambda n: f"TST-{n:05d}")
    description = "A soft merino sweater for cold days."
    brand = "Northwind"
    colour = "Navy"
    material = "merino wool"
    price = Decimal("49.50")
    stock = 10
    is_active = True


class CartFactory(factory.django.DjangoModelFactory):
    """An anonymous session's cart; pass user=... (and session_key=None) for an account's."""

    class Meta:
        model = Cart

    session_key = factory.LazyFunction(lambda: uuid.uuid4().hex)
    user = None


class CartItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CartItem

    cart = factory.SubFactory(CartFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = 1


class OrderFactory(factory.django.DjangoModelFactory):
    """A placed order; its lines come from OrderLineFactory(order=...)."""

    class Meta:
        model = Order

    user = factory.SubFactory(UserFactory)
    idempotency_key = factory.LazyFunction(uuid.uuid4)
    email = factory.LazyAttribute(
        lambda order: order.user.email if order.user else "guest@example.com"
    )
    name = "Ada Lovelace"
    address = "12 St James's Square\nLondon SW1Y 4JH"
    total = Decimal("0.00")


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    product_name = factory.LazyAttribute(lambda line: line.product.name)
    unit_price = factory.LazyAttribute(lambda line: line.product.price)
    quantity = 1
