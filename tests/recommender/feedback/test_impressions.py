"""The impression log's one statement: what it writes and what it reads."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.db import written_fields
from recommender.feedback.impressions import ITEM_FIELDS, impression_log
from recommender.models import ImpressionItem
from recommender.rl.types import Observation, Slate, Slot
from shop.models import Product

pytestmark = pytest.mark.usefixtures("recommender_isolation")


def test_the_logging_statement_sets_every_column_of_an_item():
    # A column added to ImpressionItem needs its value in impression_log: a
    # nullable one would otherwise be logged as NULL, not its default.
    assert sorted(ITEM_FIELDS) == sorted(f.name for f in written_fields(ImpressionItem))


@pytest.mark.django_db
def test_the_products_a_carousel_shows_come_with_what_it_renders(
    catalog, django_assert_num_queries
):
    """Products are read with the impression's statement, with the fields a
    carousel, the API and a reason show (each in its own attribute, whatever
    the order of the model's fields): rendering them costs no query."""
    product = Product.objects.select_related("category").get(pk=catalog[0].pk)
    slate = Slate(
        items=np.array([product.pk]), propensities=np.array([1.0]), scores=np.array([0.5])
    )

    logged = impression_log(
        session_key="s" * 32,
        user_id=None,
        slot="home",
        product_id=None,
        observation=Observation(slot=Slot.HOME),
        slate=slate,
        policy_name="popularity",
        policy_version=None,
        epsilon=0.1,
        also_read=[catalog[1].pk],
    )

    with django_assert_num_queries(0):
        (shown,) = logged.products
        fields = ("pk", "name", "slug", "brand", "price", "stock", "is_active", "image")
        assert [getattr(shown, f) for f in fields] == [getattr(product, f) for f in fields]
        assert (shown.category.pk, shown.category.name, shown.category.slug) == (
            product.category.pk,
            product.category.name,
            product.category.slug,
        )
        assert logged.also[catalog[1].pk].name == catalog[1].name
