from django.core.management.base import BaseCommand, CommandError

from recommender.learning.training import TrainerBusy, policy_train
from recommender.models import TrainingRun
from recommender.rl.runtime import configure_training_process


class Command(BaseCommand):
    help = "Replay-train the policy now and publish a checkpoint if it passes the guards."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--steps", type=int, help="Gradient steps (default RECOMMENDER_TRAIN_STEPS)."
        )

    def handle(self, *args, steps: int | None, **options) -> None:
        # It trains here, as a worker would: one torch thread, freed memory kept.
        configure_training_process()
        try:
            run = policy_train(triggered_by="command", steps=steps)
        except TrainerBusy as exc:
            raise CommandError(str(exc)) from exc
        style = (
            self.style.SUCCESS if run.status == TrainingRun.Status.SUCCEEDED else self.style.WARNING
        )
        self.stdout.write(style(f"Run {run.pk} {run.status}: {run.outcome}"))
        if run.status == TrainingRun.Status.SUCCEEDED:
            self.stdout.write(
                f"steps={run.steps} loss={run.loss:.4f} mean_q={run.mean_q:.3f} "
                f"replay={run.replay_size} in {run.duration_s:.1f}s"
            )
