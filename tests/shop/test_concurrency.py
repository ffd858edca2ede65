"""Two shoppers race for the last unit on a real PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection

from shop.exceptions import OutOfStock
from shop.models import Order, Product
from shop.services import order_place
from tests.factories import CartFactory, CartItemFactory, ProductFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not settings.IS_POSTGRES or connection.vendor != "postgresql",
        reason="needs PostgreSQL row locks (set DATABASE_URL=postgres://...)",
    ),
]


def race(*targets) -> list[object]:
    """Run the targets in threads released together; return what each returned or raised."""
    barrier = threading.Barrier(len(targets))
    results: list[object] = [None] * len(targets)

    def run(index: int, target) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = target()
        except Exception as error:  # the outcome under test, reported to the main thread
            results[index] = error
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=run, args=(i, t)) for i, t in enumerate(targets)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def contact(n: int) -> dict[str, str]:
    return {
        "email": f"shopper{n}@example.com",
        "name": f"Shopper {n}",
        "address": f"{n} Race Street",
    }


def test_the_last_unit_is_sold_exactly_once():
    product = ProductFactory(stock=1)
    carts = [
        CartItemFactory(cart=CartFactory(), product=product, quantity=1).cart for _ in range(2)
    ]

    results = race(
        *(
            lambda cart=cart, n=n: order_place(cart=cart, **contact(n))
            for n, cart in enumerate(carts)
        )
    )

    placed = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(placed) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], OutOfStock)
    assert refused[0].shortages[0].available == 0
    assert Order.objects.count() == 1
    product.refresh_from_db()
    assert (product.stock, product.units_sold) == (0, 1)


def test_a_double_submitted_checkout_places_one_order():
    product = ProductFactory(stock=5)
    cart = CartItemFactory(product=product, quantity=2).cart
    token = cart.checkout_token

    results = race(
        *(lambda: order_place(cart=cart, checkout_token=token, **contact(1)) for _ in range(2))
    )

    assert not any(isinstance(r, Exception) for r in results), results
    assert results[0].order == results[1].order
    assert sorted(r.created for r in results) == [False, True]
    product.refresh_from_db()
    assert product.stock == 3


def test_crossed_carts_do_not_deadlock():
    # Each cart holds the same two products: lock order by pk makes one wait, never both.
    first, second = ProductFactory(stock=5), ProductFactory(stock=5)
    carts = []
    for products in ((first, second), (second, first)):
        cart = CartFactory()
        for product in products:
            CartItemFactory(cart=cart, product=product, quantity=2)
        carts.append(cart)

    results = race(
        *(
            lambda cart=cart, n=n: order_place(cart=cart, **contact(n))
            for n, cart in enumerate(carts)
        )
    )

    assert not any(isinstance(r, Exception) for r in results), results
    assert list(
        Product.objects.filter(pk__in=[first.pk, second.pk]).values_list("stock", flat=True)
    ) == [1, 1]
