import json

from django.core.management.base import BaseCommand, CommandError

from recommender.datasets.evaluation import (
    DEFAULT_TEST_FRACTION,
    PolicyError,
    policy_train_offline,
)
from recommender.datasets.reports import comparison_table, verdict
from recommender.datasets.selectors import REWARDS, DatasetNotFound, dataset_get
from recommender.rl import ope
from recommender.rl.offline import BASELINES
from recommender.rl.runtime import configure_training_process


class Command(BaseCommand):
    help = (
        "Train the store's learner (the per-item DQN agent) on an imported log's earlier "
        "rows, with the logged propensities for off-policy correction, store it as a "
        "candidate checkpoint (not activated), and compare it on the held-out latest rows "
        "with uniform, logged and the baselines."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--steps", type=int, default=2000, help="Gradient steps.")
        parser.add_argument(
            "--test-fraction",
            type=float,
            default=DEFAULT_TEST_FRACTION,
            help="The latest share of the log held out to judge on.",
        )
        parser.add_argument(
            "--no-importance-weights",
            action="store_true",
            help="Sample transitions uniformly instead of by their importance weights.",
        )
        parser.add_argument(
            "--max-weight",
            type=float,
            default=ope.DEFAULT_MAX_WEIGHT,
            help="Clip the training importance weights here (and Switch-DR's threshold).",
        )
        parser.add_argument("--reward", choices=REWARDS, default="click")
        parser.add_argument("--bootstrap", type=int, default=1000)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")

    def handle(self, *args, **options) -> None:
        if options["steps"] < 1:
            raise CommandError("--steps must be at least 1")
        if not 0.0 < options["test_fraction"] < 1.0:
            raise CommandError("--test-fraction must be in (0, 1)")
        if not options["max_weight"] > 0:
            raise CommandError("--max-weight must be positive")
        if options["bootstrap"] < 10:
            raise CommandError("--bootstrap must be at least 10")
        # As in the store's workers: one torch thread (RL_TORCH_THREADS), freed
        # memory kept for the next step.
        configure_training_process()
        try:
            dataset = dataset_get(name=options["dataset"])
            report = policy_train_offline(
                dataset=dataset,
                steps=options["steps"],
                test_fraction=options["test_fraction"],
                importance_weighted=not options["no_importance_weights"],
                max_weight=options["max_weight"],
                reward=options["reward"],
                n_bootstrap=options["bootstrap"],
                seed=options["seed"],
            )
        except (DatasetNotFound, PolicyError) as exc:
            raise CommandError(str(exc)) from exc
        checkpoint = report.checkpoint
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "dataset": dataset.name,
                        "checkpoint": checkpoint.version,
                        "status": checkpoint.status,
                        "training": checkpoint.evaluation["training"],
                        "n_rows": report.n_test,
                        "policies": checkpoint.evaluation["offline"]["policies"],
                    }
                )
            )
            return
        stats = report.training.stats
        self.stdout.write(
            f"Trained on {report.n_train:,} rows of {dataset.name!r} "
            f"({report.training.terminal:,} of {report.training.transitions:,} transitions "
            f"terminal): {stats.steps} steps, loss {stats.loss:.4f}, "
            f"{report.training.clipped} rows' importance weights clipped."
        )
        self.stdout.write(
            self.style.SUCCESS(f"Stored as candidate checkpoint v{checkpoint.version}.")
            + (f" {checkpoint.note}" if checkpoint.note else "")
        )
        self.stdout.write(
            f"\nEstimated click-through rate per shown position on the {report.n_test:,} "
            "held-out rows (95% bootstrap intervals):"
        )
        self.stdout.write(comparison_table(report.comparisons, list(ope.ESTIMATORS)))
        candidate = report.comparisons["candidate"].evaluation
        rate = candidate.logged_value
        for name in ("logged", "uniform", *BASELINES):
            other = report.comparisons[name].evaluation.estimates["snips"]
            line = verdict(candidate.estimates["snips"], other, name, "SNIPS", rate)
            self.stdout.write(f"- candidate {line}")
        for note in report.comparisons["candidate"].notes:
            self.stdout.write(f"- candidate: {note}")
