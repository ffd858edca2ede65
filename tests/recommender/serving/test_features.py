"""A session's state as the policy sees it, read in one query whatever the
length of the visit, and near-duplicate keys from product fields
(recommender/serving/features.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from recommender.models import EventType
from recommender.rl.types import EventType as RLEventType
from recommender.rl.types import Slot
from recommender.serving import features
from recommender.serving.features import near_duplicate_groups, near_duplicate_key
from shop.selectors import cart_item_count
from tests.factories import (
    CartFactory,
    CartItemFactory,
    OrderFactory,
    OrderLineFactory,
    UserFactory,
)
from tests.recommender.factories import EventFactory, ImpressionFactory

pytestmark = pytest.mark.django_db

SESSION = "visit-under-test"


def test_a_new_session_has_an_empty_state_at_depth_zero(catalog, django_assert_num_queries):
    with django_assert_num_queries(1):
        observation = features.session_observation(
            session_key=SESSION, user_id=None, slot="product", product_id=catalog[0].pk
        )

    assert observation.slot == Slot.PRODUCT
    assert observation.current_item == catalog[0].pk
    assert observation.recent_items == observation.cart_items == observation.history_items == ()
    assert observation.page_depth == 0


def test_the_latest_events_of_the_last_day_come_oldest_first(catalog):
    now = timezone.now()
    EventFactory(session_key=SESSION, product=catalog[0], created_at=now - timedelta(hours=25))
    EventFactory(session_key="another visit", product=catalog[1], created_at=now)
    # More events than the state keeps, a second apart, the newest last.
    kept = []
    for i in range(features.MAX_RECENT_EVENTS + 5):
        event_type = EventType.CLICK if i % 2 else EventType.VIEW
        product = catalog[2 + i % 10]
        EventFactory(
            session_key=SESSION,
            product=product,
            type=event_type,
            created_at=now - timedelta(seconds=100 - i),
        )
        kept.append((product.pk, event_type, 100 - i))
    kept = kept[-features.MAX_RECENT_EVENTS :]

    observation = features.session_observation(
        session_key=SESSION, user_id=None, slot="home", now=now
    )

    assert observation.recent_items == tuple(pk for pk, _, _ in kept)
    assert observation.recent_events == tuple(
        int(RLEventType.CLICK if t == EventType.CLICK else RLEventType.VIEW) for _, t, _ in kept
    )
    assert observation.recent_ages == pytest.approx([float(age) for _, _, age in kept])


def test_the_cart_of_the_session_or_of_the_signed_in_shopper(catalog):
    guest_cart = CartFactory(session_key=SESSION)
    for product in (catalog[3], catalog[1]):
        CartItemFactory(cart=guest_cart, product=product)
    user = UserFactory()
    account_cart = CartFactory(user=user, session_key=None)
    CartItemFactory(cart=account_cart, product=catalog[7])

    guest = features.session_observation(session_key=SESSION, user_id=None, slot="cart")
    signed_in = features.session_observation(session_key=SESSION, user_id=user.pk, slot="cart")

    assert guest.cart_items == (catalog[3].pk, catalog[1].pk)  # in the order they were added
    assert signed_in.cart_items == (catalog[7].pk,)


def test_the_state_counts_the_cart_badge_as_the_shop_does_in_the_same_query(
    catalog, django_assert_num_queries
):
    """The badge counts units: the signed-in shopper's cart, else the guest
    cart of the request's session key (after a sign-in, not the visit's)."""
    guest_cart = CartFactory(session_key=SESSION)
    CartItemFactory(cart=guest_cart, product=catalog[0], quantity=2)
    CartItemFactory(cart=guest_cart, product=catalog[1], quantity=1)
    user = UserFactory()
    CartItemFactory(
        cart=CartFactory(user=user, session_key="signed-in"), product=catalog[2], quantity=4
    )
    CartItemFactory(cart=CartFactory(session_key="another visit"), product=catalog[3], quantity=5)
    cases = [
        (None, SESSION),  # a guest
        (None, "another visit"),  # a guest whose key changed since the visit began
        (user.pk, "signed-in"),  # signed in: the account's cart, whatever the key
        (None, "nobody's"),  # no cart
        (None, "signed-in"),  # an account's cart is no guest cart
    ]

    for user_id, badge_key in cases:
        with django_assert_num_queries(1):
            state = features.session_state(
                session_key=SESSION, user_id=user_id, slot="home", badge_session_key=badge_key
            )
        shopper = user if user_id else None
        assert state.cart_units == cart_item_count(user=shopper, session_key=badge_key)
    assert [
        features.session_state(
            session_key=SESSION, user_id=user_id, slot="home", badge_session_key=badge_key
        ).cart_units
        for user_id, badge_key in cases
    ] == [3, 5, 4, 0, 0]
    # Not asked for, not counted.
    assert features.session_state(session_key=SESSION, user_id=None, slot="home").cart_units is None


def test_a_signed_in_shopper_brings_the_latest_purchases_oldest_first(catalog):
    user = UserFactory()
    now = timezone.now()
    bought = []
    for i in range(features.MAX_HISTORY_ITEMS + 4):
        order = OrderFactory(user=user)
        order.created_at = now - timedelta(days=30 - i)
        order.save(update_fields=["created_at"])
        OrderLineFactory(order=order, product=catalog[i % len(catalog)])
        bought.append(catalog[i % len(catalog)].pk)
    OrderLineFactory(order=OrderFactory(), product=catalog[0])  # someone else's

    signed_in = features.session_observation(session_key=SESSION, user_id=user.pk, slot="home")
    guest = features.session_observation(session_key=SESSION, user_id=None, slot="home")

    assert signed_in.history_items == tuple(bought[-features.MAX_HISTORY_ITEMS :])
    assert guest.history_items == ()


def test_the_depth_follows_the_latest_impression_in_one_query_however_long_the_visit(
    catalog, django_assert_num_queries
):
    """Each impression logs the depth it was served at; the next request is one
    deeper, read from the latest impression alone (no count over the visit)."""
    now = timezone.now()
    for depth in range(30):
        ImpressionFactory(
            session_key=SESSION,
            created_at=now - timedelta(seconds=60 - depth),
            state={"slot": 0, "page_depth": depth},
        )
        EventFactory(session_key=SESSION, product=catalog[depth % 12], created_at=now)
    CartItemFactory(cart=CartFactory(session_key=SESSION), product=catalog[0])

    with django_assert_num_queries(1):
        observation = features.session_observation(
            session_key=SESSION, user_id=None, slot="home", now=now
        )

    assert observation.page_depth == 30
    assert len(observation.recent_items) == features.MAX_RECENT_EVENTS
    assert observation.cart_items == (catalog[0].pk,)


def key(name: str, *, category_id: int = 1, brand: str = "Kestrel Outdoor", colour: str = ""):
    return near_duplicate_key(category_id=category_id, brand=brand, name=name, colour=colour)


def test_one_brands_products_of_one_kind_in_one_category_are_near_duplicates():
    assert key("Kestrel Outdoor Ultralight Tent") == key("Kestrel Outdoor Four-Season Tent")
    assert key("Halden & Co Merino Crew Sweater", brand="Halden & Co") == key(
        "Halden & Co Chunky V-Neck Sweater", brand=" halden & co "
    )


def test_the_same_name_in_another_colour_is_a_near_duplicate():
    assert key("Ultralight Tent Olive", colour="Olive") == key("Ultralight Tent", colour="Sand")


def test_another_kind_brand_or_category_is_not():
    tent = key("Kestrel Outdoor Ultralight Tent")
    assert key("Kestrel Outdoor Ultralight Sleeping Bag") != tent
    assert key("Ridgeway Ultralight Tent", brand="Ridgeway") != tent
    assert key("Kestrel Outdoor Ultralight Tent", category_id=2) != tent


def test_numbers_are_not_a_products_kind():
    assert key("Item 3-5") == key("Item 3-11") != key("Widget 3-5")


def test_groups_number_equal_keys_alike():
    groups = near_duplicate_groups([("a",), ("b",), ("a",), ("c",), ("b",)])
    assert groups.tolist() == [0, 1, 0, 2, 1]
    assert near_duplicate_groups([]).tolist() == []
