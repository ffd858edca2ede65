from django.core.management.base import BaseCommand, CommandError

from recommender.datasets.selectors import DatasetNotFound, dataset_get
from recommender.datasets.services import DatasetImportError, feedback_export


class Command(BaseCommand):
    help = (
        "Write the store's logged impressions whose rewards are final (one row per shown "
        "item, with propensity, reward, click and the state the policy saw) and the catalog "
        "to FOLDER/feedback.csv and FOLDER/items.csv: the store format of "
        "import_logged_feedback. Session keys are written as digests."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder")
        parser.add_argument("--limit", type=int, help="Only the N most recent impressions.")
        parser.add_argument(
            "--dataset", help="Write this imported dataset (a store export) instead."
        )

    def handle(self, *args, folder: str, limit: int | None, dataset: str | None, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            source = dataset_get(name=dataset) if dataset else None
            rows = feedback_export(folder=folder, dataset=source, limit=limit)
        except (DatasetNotFound, DatasetImportError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Wrote {rows:,} rows to {folder}."))
