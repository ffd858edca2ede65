"""manage.py seed_demo: a believable catalog, the same on every run."""

from __future__ import annotations

import random
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from shop.demo import CATALOG, _plan_products
from shop.models import Category, Product

pytestmark = pytest.mark.django_db

FIELDS = (
    "sku",
    "name",
    "slug",
    "price",
    "stock",
    "brand",
    "colour",
    "material",
    "description",
    "image",
)


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", "--products", "28", "--verbosity", "0", *args, stdout=out)
    return out.getvalue()


def catalog() -> list[tuple]:
    return list(Product.objects.order_by("sku").values_list(*FIELDS))


def test_seed_builds_a_catalog_with_images_and_a_demo_admin():
    output = seed()
    assert Category.objects.count() == len(CATALOG) >= 12
    assert Product.objects.count() == 28
    assert "username admin, password admin" in output
    assert get_user_model().objects.get(username="admin").is_superuser
    for product in Product.objects.all():
        assert product.price > 0 and product.brand and product.colour and product.material
        assert product.description.startswith("The ")
        assert product.name.startswith(product.brand)
        assert (Path(settings.MEDIA_ROOT) / product.image.name).stat().st_size > 1000


def test_seed_is_deterministic_and_idempotent():
    seed("--no-admin")
    first = catalog()
    output = seed("--no-admin")
    assert catalog() == first
    assert "0 products created, 28 updated, 0 images drawn" in output
    assert not get_user_model().objects.exists()


def test_another_seed_rewrites_the_same_products():
    seed("--no-admin")
    first = catalog()
    seed("--no-admin", "--seed", "2")
    second = catalog()
    assert [row[0] for row in second] == [row[0] for row in first]  # same SKUs, no duplicates
    assert [row[1] for row in second] != [row[1] for row in first]
    images = {p.name for p in (Path(settings.MEDIA_ROOT) / "products").iterdir()}
    assert len(images) == 28  # replaced images were removed


def test_an_existing_admin_keeps_its_password():
    get_user_model().objects.create_superuser("admin", "admin@example.com", "s3cret-and-long")
    assert "left unchanged" in seed()
    assert get_user_model().objects.get(username="admin").check_password("s3cret-and-long")


def test_the_default_catalog_is_large_varied_and_unique():
    # The plan for the default size, without drawing 1,000 images.
    plans = _plan_products(random.Random(1), 1000)
    assert (
        len({p.name for p in plans})
        == len({p.slug for p in plans})
        == len({p.sku for p in plans})
        == 1000
    )
    per_category = Counter(p.spec.code for p in plans)
    assert len(per_category) == len(CATALOG) and min(per_category.values()) >= 70
    stock = [p.stock for p in plans]
    assert 10 <= stock.count(0) <= 60  # a few sold out
    assert sum(1 <= s <= 5 for s in stock) >= 60  # some "only a few left"
    for plan in plans:
        low, high = plan.spec.price_range
        assert low - 1 <= plan.price <= high
    assert _plan_products(random.Random(1), 50) == plans[:50]
