from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.datasets import formats
from recommender.datasets.services import DatasetImportError, dataset_import


class Command(BaseCommand):
    help = (
        "Import a log of feedback (an Open Bandit Dataset folder, or a store export) as a "
        "named dataset for evaluate_offline and train_offline. Validated, all or nothing; "
        "importing the same files again changes nothing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "path", help="The folder (obd: the log CSV and item_context.csv; store: an export)."
        )
        parser.add_argument("--format", choices=formats.FORMATS, required=True)
        parser.add_argument("--name", required=True, help="The dataset's name (a slug).")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Replace a dataset of this name that holds other files.",
        )

    def handle(self, *args, path: str, format: str, name: str, replace: bool, **options) -> None:
        bar: list[tqdm] = []  # opened on the first rows read: none for a repeated import

        def progress(rows: int) -> None:
            if not bar:
                total = formats.locate(path, format).count_rows()
                quiet = options["verbosity"] == 0
                bar.append(tqdm(total=total, desc=name, unit="row", disable=quiet))
            bar[0].update(rows)

        try:
            result = dataset_import(
                path=path, format=format, name=name, replace=replace, on_progress=progress
            )
        except (formats.FormatError, DatasetImportError) as exc:
            raise CommandError(f"{exc}. Nothing was imported.") from exc
        finally:
            if bar:
                bar[0].close()
        dataset = result.dataset
        if not result.created:
            self.stdout.write(f"Dataset {dataset.name!r} already holds these files: nothing to do.")
            return
        rate = dataset.clicks / dataset.n_rows
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {dataset.name!r}: {dataset.n_rows:,} rows, {dataset.n_items} items, "
                f"{dataset.n_positions} positions, {dataset.clicks} clicks (click rate {rate:.4f})."
            )
        )
