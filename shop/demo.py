"""A believable demo catalog, generated locally and deterministically.

`catalog_seed(seed=..., product_count=...)` always produces the same catalog
for the same arguments and can be re-run at will: categories are keyed by
slug and products by SKU (category code + running number), so a re-run
updates rows in place (upserts) instead of adding new ones, and a different
seed rewrites the same SKUs with other names, prices and stock. Images are
drawn with Pillow (nothing is downloaded) and named after a hash of what
they show, so an unchanged product keeps its file and re-runs stay fast.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils.text import slugify
from PIL import Image, ImageDraw, ImageFont

from shop.models import Category, Product
from shop.selectors import category_menu_invalidate

IMAGE_SIZE = 480
COLOURS = [
    "Black", "White", "Navy", "Charcoal", "Stone", "Olive", "Rust", "Sand", "Forest",
    "Slate", "Burgundy", "Ochre", "Sky", "Ivory", "Graphite", "Sage",
]  # fmt: skip


@dataclass(frozen=True)
class CategorySpec:
    code: str
    name: str
    description: str
    hue: tuple[int, int, int]  # base colour of the product images
    brands: tuple[str, ...]
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    materials: tuple[str, ...]
    price_range: tuple[int, int]
    selling_points: tuple[str, ...]


# A data table: ruff would put every word on its own line.
# fmt: off
CATALOG: tuple[CategorySpec, ...] = (
    CategorySpec(
        code="KNT", name="Knitwear", hue=(122, 86, 160),
        description="Sweaters and cardigans knitted to last for seasons.",
        brands=("Northwind", "Halden & Co", "Fjell", "Marlow Knit", "Aldersgate", "Tamsin"),
        adjectives=(
            "Merino", "Cable-Knit", "Lambswool", "Ribbed", "Chunky", "Fine-Gauge", "Brushed",
            "Heritage", "Relaxed", "Seamless",
        ),
        nouns=(
            "Crew Sweater", "Cardigan", "Turtleneck", "V-Neck Sweater", "Zip Cardigan",
            "Knit Vest", "Roll-Neck", "Polo Sweater", "Hoodie", "Half-Zip",
        ),
        materials=("merino wool", "lambswool", "cashmere blend", "organic cotton", "alpaca blend"),
        price_range=(45, 220),
        selling_points=(
            "Soft against the skin and warm without bulk.",
            "Ribbed cuffs and hem keep their shape.", "Hand-finished seams for a clean line.",
        ),
    ),
    CategorySpec(
        code="OUT", name="Outerwear", hue=(46, 94, 140),
        description="Coats and jackets for wind, rain and city winters.",
        brands=("Northwind", "Stormfront", "Ridgeway", "Aldersgate", "Kestrel Outdoor", "Brume"),
        adjectives=(
            "Waterproof", "Insulated", "Packable", "Quilted", "Waxed", "Storm", "Lightweight",
            "Belted", "Hooded", "Technical",
        ),
        nouns=(
            "Parka", "Rain Jacket", "Puffer Jacket", "Trench Coat", "Field Jacket", "Overcoat",
            "Bomber Jacket", "Gilet", "Anorak", "Shell Jacket",
        ),
        materials=("recycled nylon", "waxed cotton", "wool blend", "ripstop polyester", "gabardine"),
        price_range=(69, 420),
        selling_points=(
            "Taped seams and a storm flap keep the weather out.",
            "Two-way zip and deep hand-warmer pockets.", "Packs into its own pocket for travel.",
        ),
    ),
    CategorySpec(
        code="FTW", name="Footwear", hue=(176, 92, 58),
        description="Sneakers, boots and everyday shoes.",
        brands=("Paceline", "Cobbler & Sons", "Trailmark", "Halden & Co", "Strider", "Lumen"),
        adjectives=(
            "Leather", "Suede", "Trail", "Minimal", "Classic", "Cushioned", "Waterproof",
            "Low-Top", "High-Top", "Everyday",
        ),
        nouns=(
            "Sneakers", "Chelsea Boots", "Loafers", "Trail Runners", "Derby Shoes", "Hiking Boots",
            "Slip-Ons", "Desert Boots", "Court Shoes", "Sandals",
        ),
        materials=("full-grain leather", "suede", "recycled mesh", "canvas", "nubuck"),
        price_range=(39, 260),
        selling_points=(
            "A cushioned footbed for all-day comfort.", "Stitched rubber outsole, resoleable.",
            "Breaks in quickly and ages well.",
        ),
    ),
    CategorySpec(
        code="BAG", name="Bags & Travel", hue=(92, 110, 72),
        description="Backpacks, totes and luggage that carry everything.",
        brands=("Wayfarer", "Carryall", "Ridgeway", "Tern", "Portmanteau", "Kestrel Outdoor"),
        adjectives=(
            "Roll-Top", "Canvas", "Weatherproof", "Compact", "Expandable", "Everyday", "Travel",
            "Leather", "Modular", "Minimal",
        ),
        nouns=(
            "Backpack", "Duffel Bag", "Tote", "Weekender", "Sling Bag", "Messenger Bag",
            "Carry-On", "Laptop Sleeve", "Wash Bag", "Belt Bag",
        ),
        materials=("waxed canvas", "recycled nylon", "full-grain leather", "cordura", "cotton canvas"),
        price_range=(25, 340),
        selling_points=(
            "A padded sleeve fits a 15-inch laptop.", "YKK zips and reinforced corners.",
            "Fits airline cabin limits.",
        ),
    ),
    CategorySpec(
        code="KIT", name="Kitchen", hue=(190, 64, 52),
        description="Cookware and tools for people who cook every day.",
        brands=("Hearthstone", "Copperline", "Ferro", "Oak & Ember", "Maison Blanc", "Kiln"),
        adjectives=(
            "Cast-Iron", "Enamelled", "Stainless", "Carbon-Steel", "Non-Stick", "Professional",
            "Classic", "Copper-Core", "Forged", "Compact",
        ),
        nouns=(
            "Skillet", "Dutch Oven", "Chef's Knife", "Saucepan", "Wok", "Cutting Board",
            "Roasting Pan", "Stock Pot", "Paring Knife", "Baking Sheet",
        ),
        materials=("cast iron", "stainless steel", "carbon steel", "enamelled steel", "walnut"),
        price_range=(18, 380),
        selling_points=(
            "Works on gas, electric and induction.", "Oven-safe to 260 °C.",
            "Holds heat evenly for a better sear.",
        ),
    ),
    CategorySpec(
        code="BED", name="Bed & Bath", hue=(106, 142, 168),
        description="Linen, towels and throws for slow mornings.",
        brands=("Linnea", "Dovecote", "Maison Blanc", "Sleepwell", "Halden & Co", "Driftwood"),
        adjectives=(
            "Washed Linen", "Percale", "Sateen", "Waffle", "Organic", "Heavyweight", "Stonewashed",
            "Plush", "Breathable", "Brushed",
        ),
        nouns=(
            "Duvet Cover", "Pillowcase Set", "Bath Towel", "Throw Blanket", "Bathrobe",
            "Fitted Sheet", "Hand Towel Set", "Bath Mat", "Quilt", "Flat Sheet",
        ),
        materials=("linen", "organic cotton", "Turkish cotton", "bamboo lyocell", "wool"),
        price_range=(19, 240),
        selling_points=(
            "Gets softer with every wash.", "OEKO-TEX certified, no harsh finishes.",
            "Generously sized for deep mattresses.",
        ),
    ),
    CategorySpec(
        code="LGT", name="Lighting", hue=(210, 168, 64),
        description="Lamps and lights that make a room.",
        brands=("Lumen", "Arc & Line", "Fennel Studio", "Brightwork", "Opal", "Kiln"),
        adjectives=(
            "Brass", "Ceramic", "Adjustable", "Dimmable", "Glass", "Rechargeable", "Arc",
            "Mushroom", "Linen-Shade", "Industrial",
        ),
        nouns=(
            "Table Lamp", "Floor Lamp", "Pendant Light", "Desk Lamp", "Wall Sconce",
            "Reading Light", "Lantern", "Ceiling Light", "Clip Lamp", "Bedside Lamp",
        ),
        materials=("brass", "glazed ceramic", "opal glass", "powder-coated steel", "oak"),
        price_range=(29, 460),
        selling_points=(
            "Warm 2700 K light, dimmable.", "Comes with an energy-efficient LED bulb.",
            "Braided fabric cable and an in-line switch.",
        ),
    ),
    CategorySpec(
        code="AUD", name="Audio", hue=(52, 58, 74),
        description="Headphones, speakers and turntables.",
        brands=("Sonance", "Fidelio", "Echo Park", "Resonant", "Quartz Audio", "Tonearm"),
        adjectives=(
            "Wireless", "Noise-Cancelling", "Portable", "Studio", "Bluetooth", "Compact", "Hi-Fi",
            "Waterproof", "Open-Back", "Smart",
        ),
        nouns=(
            "Headphones", "Earbuds", "Speaker", "Turntable", "Soundbar", "DAC", "Radio",
            "Subwoofer", "Headphone Amp", "Bookshelf Speakers",
        ),
        materials=("aluminium", "walnut", "recycled plastic", "steel", "fabric"),
        price_range=(35, 699),
        selling_points=(
            "Up to 30 hours of battery life.", "Tuned for clear mids and deep, controlled bass.",
            "Pairs with two devices at once.",
        ),
    ),
    CategorySpec(
        code="CMP", name="Camping", hue=(58, 120, 84),
        description="Tents, sleeping bags and stoves for nights outside.",
        brands=("Kestrel Outdoor", "Ridgeway", "Timberline", "Summit & Co", "Basecamp", "Trailmark"),
        adjectives=(
            "Ultralight", "Two-Person", "Four-Season", "Packable", "Insulated", "Rugged",
            "Compact", "Down", "Folding", "Trekking",
        ),
        nouns=(
            "Tent", "Sleeping Bag", "Camp Stove", "Headlamp", "Trekking Poles", "Sleeping Pad",
            "Camp Chair", "Cook Set", "Water Filter", "Hammock",
        ),
        materials=("ripstop nylon", "aluminium", "titanium", "goose down", "recycled polyester"),
        price_range=(15, 520),
        selling_points=(
            "Weighs less than a litre of water.", "Sets up in under five minutes.",
            "Field-tested through three winters.",
        ),
    ),
    CategorySpec(
        code="FIT", name="Fitness", hue=(214, 96, 112),
        description="Gear for home workouts and the gym.",
        brands=("Pulse", "Ironside", "Kinetic", "Flowform", "Strider", "Apex Athletic"),
        adjectives=(
            "Adjustable", "Non-Slip", "Cork", "Heavy-Duty", "Travel", "Foldable", "Weighted",
            "Pro", "Eco", "Compact",
        ),
        nouns=(
            "Yoga Mat", "Dumbbell Set", "Resistance Bands", "Jump Rope", "Foam Roller",
            "Kettlebell", "Pull-Up Bar", "Yoga Block", "Ab Wheel", "Gym Bag",
        ),
        materials=("natural rubber", "cork", "cast iron", "TPE foam", "steel"),
        price_range=(12, 320),
        selling_points=(
            "Grippy on both sides, even when you sweat.", "Stores flat in a cupboard.",
            "Built for daily use, backed by a 2-year warranty.",
        ),
    ),
    CategorySpec(
        code="STN", name="Stationery", hue=(70, 98, 184),
        description="Notebooks, pens and desk things.",
        brands=("Inkwell", "Paperworks", "Quillon", "Margin", "Fennel Studio", "Ledger & Lane"),
        adjectives=(
            "Dot-Grid", "Hardcover", "Refillable", "Linen-Bound", "Pocket", "Weekly", "Brass",
            "Recycled", "Lay-Flat", "Classic",
        ),
        nouns=(
            "Notebook", "Fountain Pen", "Planner", "Desk Organizer", "Sketchbook",
            "Rollerball Pen", "Pencil Case", "Letter Set", "Desk Pad", "Journal",
        ),
        materials=("acid-free paper", "brass", "recycled card", "linen", "leather"),
        price_range=(6, 140),
        selling_points=(
            "120 gsm paper that fountain pens love.", "Lies flat on the desk when open.",
            "Made in a small bindery.",
        ),
    ),
    CategorySpec(
        code="COF", name="Coffee & Tea", hue=(128, 84, 56),
        description="Brewers, grinders and cups for a better cup.",
        brands=("Roastery Row", "Kettle & Kiln", "Barista Lab", "Tidewater", "Mokka", "Oak & Ember"),
        adjectives=(
            "Ceramic", "Glass", "Stainless", "Gooseneck", "Manual", "Electric", "Double-Walled",
            "Hand-Thrown", "Precision", "Classic",
        ),
        nouns=(
            "Pour-Over Set", "Burr Grinder", "Tea Kettle", "French Press", "Espresso Cups",
            "Teapot", "Milk Frother", "Coffee Scale", "Cold Brew Maker", "Travel Mug",
        ),
        materials=("borosilicate glass", "stainless steel", "stoneware", "porcelain", "ceramic"),
        price_range=(14, 290),
        selling_points=(
            "Brews a balanced cup in four minutes.", "Dishwasher-safe parts.",
            "Conical burrs for an even grind.",
        ),
    ),
    CategorySpec(
        code="CAR", name="Personal Care", hue=(150, 112, 150),
        description="Skin, hair and shaving care with short ingredient lists.",
        brands=("Botanica", "Saltwater", "Verdant", "Alder & Fig", "Clearbrook", "Mosswood"),
        adjectives=(
            "Hydrating", "Unscented", "Botanical", "Gentle", "Nourishing", "Daily", "Refillable",
            "Mineral", "Restorative", "Travel-Size",
        ),
        nouns=(
            "Face Cream", "Shampoo Bar", "Beard Oil", "Hand Balm", "Body Wash", "Lip Balm",
            "Shaving Soap", "Face Serum", "Conditioner", "Sunscreen",
        ),
        materials=("shea butter", "jojoba oil", "aloe vera", "oat extract", "sea minerals"),
        price_range=(6, 85),
        selling_points=(
            "Dermatologist-tested for sensitive skin.", "Vegan and cruelty-free.",
            "In a recyclable aluminium tin.",
        ),
    ),
    CategorySpec(
        code="TOY", name="Toys & Games", hue=(236, 140, 60),
        description="Puzzles, board games and building sets for all ages.",
        brands=("Playwright", "Tinkerbox", "Meeple & Co", "Wonderworks", "Little Oak", "Gamewright"),
        adjectives=(
            "Wooden", "Strategy", "Cooperative", "1000-Piece", "Magnetic", "Family", "Classic",
            "Travel", "Deluxe", "Junior",
        ),
        nouns=(
            "Puzzle", "Board Game", "Building Set", "Card Game", "Train Set", "Marble Run",
            "Chess Set", "Dominoes", "Stacking Blocks", "Kite",
        ),
        materials=("FSC beech wood", "recycled card", "ABS plastic", "bamboo", "cotton"),
        price_range=(9, 150),
        selling_points=(
            "Made to be played with again and again.", "Non-toxic, child-safe finishes.",
            "Rules fit on one page; strategy takes longer.",
        ),
    ),
)
# fmt: on


@dataclass(frozen=True)
class SeedResult:
    categories: int
    created: int
    updated: int
    images_drawn: int


def catalog_seed(
    *, seed: int = 1, product_count: int = 1000, on_progress: Callable[[int], None] | None = None
) -> SeedResult:
    """Create or update the demo catalog: `product_count` products spread over
    every category (products beyond that count from an earlier, larger run are
    left as they are). `on_progress(1)` is called per product prepared.

    Images are drawn first, outside the transaction (files are not
    transactional; an interrupted run leaves files the next run reuses), then
    categories and products are upserted in one transaction.
    """
    rng = random.Random(seed)
    plans = _plan_products(rng, product_count)
    images_drawn = 0
    products: list[Product] = []
    for plan in plans:
        image_name, drawn = _ensure_image(plan)
        images_drawn += drawn
        products.append(plan.to_product(image_name))
        if on_progress is not None:
            on_progress(1)

    with transaction.atomic():
        categories = _upsert_categories()
        by_code = {spec.code: categories[spec.name] for spec in CATALOG}
        previous_images = dict(
            Product.objects.filter(sku__in=[p.sku for p in products]).values_list("sku", "image")
        )
        for product, plan in zip(products, plans, strict=True):
            product.category = by_code[plan.spec.code]
        Product.objects.bulk_create(
            products,
            batch_size=500,
            update_conflicts=True,
            unique_fields=["sku"],
            update_fields=[
                "category", "name", "slug", "description", "brand", "colour", "material", "price",
                "stock", "is_active", "image", "units_sold", "updated_at",
            ],
        )  # fmt: skip
    category_menu_invalidate()
    # A product whose name or colour changed got a new image: drop the old file.
    for name in set(previous_images.values()) - {p.image.name for p in products}:
        if name:
            default_storage.delete(name)
    created = sum(1 for p in products if p.sku not in previous_images)
    return SeedResult(
        categories=len(CATALOG),
        created=created,
        updated=len(products) - created,
        images_drawn=images_drawn,
    )


def demo_admin_ensure(*, username: str = "admin", password: str = "admin") -> bool:
    """Create the demo superuser; an existing account is left untouched (its
    password may have been changed on purpose). Returns whether it was created."""
    users = get_user_model().objects
    if users.filter(username=username).exists():
        return False
    users.create_superuser(username=username, email=f"{username}@example.com", password=password)
    return True


# ---------------------------------------------------------------------------
# Planning: every random draw happens here, in a fixed order, so the same
# seed gives the same catalog whatever is already in the database.
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ProductPlan:
    spec: CategorySpec
    sku: str
    name: str
    slug: str
    brand: str
    colour: str
    material: str
    price: Decimal
    stock: int
    units_sold: int
    description: str

    @property
    def image_key(self) -> str:
        digest = hashlib.sha1(f"{self.name}|{self.colour}|{self.spec.hue}".encode()).hexdigest()
        return f"{self.sku.lower()}-{digest[:10]}.jpg"

    def to_product(self, image_name: str) -> Product:
        return Product(
            name=self.name,
            slug=self.slug,
            sku=self.sku,
            description=self.description,
            brand=self.brand,
            colour=self.colour,
            material=self.material,
            price=self.price,
            stock=self.stock,
            is_active=True,
            image=image_name,
            units_sold=self.units_sold,
        )


def _plan_products(rng: random.Random, count: int) -> list[ProductPlan]:
    # Distinct brand/adjective/noun combinations per category, so no two
    # products share a name while the catalog is smaller than the combinations.
    combos = {
        spec.code: rng.sample(
            [(b, a, n) for b in spec.brands for a in spec.adjectives for n in spec.nouns],
            k=len(spec.brands) * len(spec.adjectives) * len(spec.nouns),
        )
        for spec in CATALOG
    }
    plans = []
    for index in range(count):
        spec = CATALOG[index % len(CATALOG)]
        number = index // len(CATALOG) + 1
        brand, adjective, noun = combos[spec.code][(number - 1) % len(combos[spec.code])]
        colour = rng.choice(COLOURS)
        material = rng.choice(spec.materials)
        name = f"{brand} {adjective} {noun}"
        sku = f"{spec.code}-{number:04d}"
        plans.append(
            ProductPlan(
                spec=spec,
                sku=sku,
                name=name,
                # The SKU in the slug keeps slugs unique however names repeat or change.
                slug=slugify(f"{name}-{sku}"),
                brand=brand,
                colour=colour,
                material=material,
                price=_price(rng, spec.price_range),
                stock=_stock(rng),
                # Long-tailed popularity, as in real shops: a few best sellers.
                units_sold=int(rng.paretovariate(1.3) * 8) - 8,
                description=_description(rng, spec, brand, adjective, noun, colour, material),
            )
        )
    return plans


def _price(rng: random.Random, price_range: tuple[int, int]) -> Decimal:
    low, high = price_range
    # Skewed towards the cheap end, like most catalogs; retail endings.
    whole = int(low + (high - low) * rng.random() ** 2)
    ending = rng.choice(["0.00", "0.00", "-0.01", "-0.05", "0.50"])
    return max(Decimal(whole) + Decimal(ending), Decimal("1.00")).quantize(Decimal("0.01"))


def _stock(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.03:
        return 0  # sold out
    if roll < 0.15:
        return rng.randint(1, 5)  # "only a few left"
    return rng.randint(6, 150)


def _description(
    rng: random.Random,
    spec: CategorySpec,
    brand: str,
    adjective: str,
    noun: str,
    colour: str,
    material: str,
) -> str:
    points = rng.sample(spec.selling_points, k=2)
    return (
        f"The {adjective.lower()} {noun.lower()} from {brand}, in {colour.lower()} {material}. "
        f"{points[0]} {points[1]}"
    )


def _upsert_categories() -> dict[str, Category]:
    Category.objects.bulk_create(
        [
            Category(
                name=spec.name, slug=slugify(spec.name), description=spec.description, position=i
            )
            for i, spec in enumerate(CATALOG)
        ],
        update_conflicts=True,
        unique_fields=["slug"],
        update_fields=["name", "description", "position"],
    )
    return {c.name: c for c in Category.objects.filter(slug__in=[slugify(s.name) for s in CATALOG])}


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------
def _ensure_image(plan: ProductPlan) -> tuple[str, int]:
    """The stored image name for a product, drawing it only if missing.
    Returns (name, 1 if drawn else 0)."""
    field = Product._meta.get_field("image")
    name = field.generate_filename(None, plan.image_key)
    if default_storage.exists(name):
        return name, 0
    stored = default_storage.save(name, ContentFile(_draw(plan)))
    return stored, 1


@cache
def _gradient_mask() -> Image.Image:
    vertical = Image.linear_gradient("L")
    return Image.blend(vertical, vertical.rotate(90), 0.5).resize((IMAGE_SIZE, IMAGE_SIZE))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _draw(plan: ProductPlan) -> bytes:
    """A 480×480 JPEG (encodes ~30× faster than PNG, which matters at 1,000
    images): a diagonal gradient in the category's colour, tinted by the
    product's colour, a soft shape and the product's initials."""
    base = plan.spec.hue
    tint = _mix(base, _COLOUR_RGB.get(plan.colour, base), 0.35)
    light = _mix(tint, (255, 255, 255), 0.55)
    mask = _gradient_mask()
    image = Image.composite(
        Image.new("RGB", mask.size, tint), Image.new("RGB", mask.size, light), mask
    )

    draw = ImageDraw.Draw(image, "RGBA")
    digest = int(hashlib.md5(plan.sku.encode()).hexdigest(), 16)
    shape_box = (
        90 + digest % 40,
        90 + digest // 40 % 40,
        390 - digest // 1600 % 40,
        390 - digest // 64000 % 40,
    )
    if digest % 2:
        draw.ellipse(shape_box, fill=(255, 255, 255, 70))
    else:
        draw.rounded_rectangle(shape_box, radius=48, fill=(255, 255, 255, 70))
    initials = "".join(w[0] for w in plan.name.replace("-", " ").split() if w[0].isalnum())[
        :3
    ].upper()
    centre = IMAGE_SIZE / 2
    draw.text((centre, centre), initials, font=_font(120), anchor="mm", fill=(255, 255, 255, 235))
    draw.text(
        (centre, IMAGE_SIZE - 48),
        plan.brand.upper(),
        font=_font(22),
        anchor="mm",
        fill=(255, 255, 255, 210),
    )

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], weight: float) -> tuple[int, int, int]:
    return tuple(round(x * (1 - weight) + y * weight) for x, y in zip(a, b, strict=True))


_COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "Black": (30, 30, 34), "White": (240, 240, 236), "Navy": (28, 42, 86), "Charcoal": (60, 64, 70),
    "Stone": (180, 170, 150), "Olive": (110, 116, 60), "Rust": (170, 80, 40), "Sand": (210, 190, 150),
    "Forest": (36, 84, 56), "Slate": (90, 104, 120), "Burgundy": (110, 30, 50), "Ochre": (200, 150, 40),
    "Sky": (120, 170, 220), "Ivory": (240, 234, 214), "Graphite": (70, 72, 76), "Sage": (150, 170, 140),
}  # fmt: skip
