from django.core.management.base import BaseCommand, CommandError

from recommender.learning.training import TrainerBusy, target_sync


class Command(BaseCommand):
    help = "Copy the learner's online network weights into its target network."

    def handle(self, *args, **options) -> None:
        try:
            run = target_sync(triggered_by="command")
        except TrainerBusy as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{run.status}: {run.outcome}")
