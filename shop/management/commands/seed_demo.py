"""manage.py seed_demo: fill the store with a deterministic demo catalog."""

import sys

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from shop.demo import catalog_seed, demo_admin_ensure


class Command(BaseCommand):
    help = (
        "Create or update the demo catalog (categories, products, generated images) and a demo "
        "superuser. Same --seed, same catalog; re-running updates it in place."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seed", type=int, default=1, help="Varies names, prices and stock (default 1)."
        )
        parser.add_argument(
            "--products", type=int, default=1000, help="How many products (default 1000)."
        )
        parser.add_argument(
            "--no-admin", action="store_true", help="Do not create the admin/admin superuser."
        )

    def handle(
        self, *args, seed: int, products: int, no_admin: bool, verbosity: int, **options
    ) -> None:
        with tqdm(
            total=products, desc="Products", unit="product", disable=verbosity < 1, file=sys.stderr
        ) as bar:
            result = catalog_seed(seed=seed, product_count=products, on_progress=bar.update)
        self.stdout.write(
            self.style.SUCCESS(
                f"Catalog (seed {seed}): {result.categories} categories, {result.created} products created, "
                f"{result.updated} updated, {result.images_drawn} images drawn."
            )
        )
        if no_admin:
            return
        if demo_admin_ensure(username="admin", password="admin"):
            self.stdout.write(
                self.style.WARNING("Demo superuser created: username admin, password admin.")
            )
        else:
            self.stdout.write("Superuser 'admin' already exists; its password was left unchanged.")
