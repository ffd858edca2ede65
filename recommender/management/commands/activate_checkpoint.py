from django.core.management.base import BaseCommand, CommandError

from recommender.models import Checkpoint
from recommender.serving.checkpoints import (
    CheckpointStateError,
    checkpoint_activate,
    checkpoint_rollback,
)


class Command(BaseCommand):
    help = (
        "Activate a checkpoint version, or roll back to the latest earlier one that loads. "
        "A version is first loaded as the web processes would load it; one that fails is refused."
    )

    def add_arguments(self, parser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("version", nargs="?", type=int, help="The version to activate.")
        target.add_argument(
            "--rollback",
            action="store_true",
            help="Reject the active version and re-activate the one before it.",
        )

    def handle(self, *args, version: int | None, rollback: bool, **options) -> None:
        if rollback:
            try:
                result = checkpoint_rollback()
            except CheckpointStateError as error:
                raise CommandError(f"Could not roll back: {error}") from error
            for error in result.passed_over:
                self.stderr.write(f"Passed over {error}")
            self.stdout.write(self.style.SUCCESS(f"v{result.restored.version} is active."))
            return
        checkpoint = Checkpoint.objects.defer("weights").filter(version=version).first()
        if checkpoint is None:
            raise CommandError(f"There is no checkpoint v{version}.")
        try:
            checkpoint_activate(checkpoint=checkpoint)
        except CheckpointStateError as error:
            raise CommandError(
                f"Not activated: {error}. The active version is unchanged."
            ) from error
        self.stdout.write(self.style.SUCCESS(f"v{version} is active."))
