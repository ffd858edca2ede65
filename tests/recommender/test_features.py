"""recommender.features: near-duplicate keys from product fields (the rest of
the module is tested through serving, training and the simulator)."""

from __future__ import annotations

from recommender.features import near_duplicate_groups, near_duplicate_key


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
