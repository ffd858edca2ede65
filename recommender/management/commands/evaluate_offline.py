import json

from django.core.management.base import BaseCommand, CommandError

from recommender.datasets.evaluation import (
    DEFAULT_TEST_FRACTION,
    POLICIES,
    ROWS,
    PolicyError,
    policy_evaluate,
)
from recommender.datasets.reports import estimates_table
from recommender.datasets.selectors import REWARDS, DatasetNotFound, dataset_get
from recommender.rl import ope


def estimator_list(text: str) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ope.ESTIMATORS]
    if unknown or not names:
        raise CommandError(
            f"unknown estimator(s) {', '.join(unknown) or '(none given)'}: "
            f"use some of {','.join(ope.ESTIMATORS)}"
        )
    return list(dict.fromkeys(names))


class Command(BaseCommand):
    help = (
        "Estimate a policy's click-through rate per shown position from an imported log, "
        "off-policy, with 95% bootstrap intervals and the effective sample size. "
        f"POLICY: {', '.join(POLICIES)}."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--policy", required=True)
        parser.add_argument(
            "--estimators",
            default=",".join(ope.ESTIMATORS),
            help=f"Comma-separated, from {','.join(ope.ESTIMATORS)} (default: all).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--rows",
            choices=ROWS,
            default="all",
            help="Judge on every row, or on the latest --test-fraction only (as train_offline).",
        )
        parser.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION)
        parser.add_argument(
            "--epsilon",
            type=float,
            default=0.0,
            help="Mix a ranking policy with uniform exploration at each position.",
        )
        parser.add_argument(
            "--max-weight",
            type=float,
            help=(
                "Clip IPS's importance weights at this value; also Switch-DR's threshold "
                f"(default {ope.DEFAULT_MAX_WEIGHT:g}). The output says on how many rows it acted."
            ),
        )
        parser.add_argument(
            "--reward",
            choices=REWARDS,
            default="click",
            help="click: estimate click-through rates; reward: the log's own reward.",
        )
        parser.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap replicates.")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, **options) -> None:
        estimators = estimator_list(options["estimators"])
        if not 0.0 <= options["epsilon"] <= 1.0:
            raise CommandError("--epsilon must be in [0, 1]")
        if options["max_weight"] is not None and not options["max_weight"] > 0:
            raise CommandError("--max-weight must be positive")
        if not 0.0 < options["test_fraction"] < 1.0:
            raise CommandError("--test-fraction must be in (0, 1)")
        if options["bootstrap"] < 10:
            raise CommandError("--bootstrap must be at least 10")
        try:
            dataset = dataset_get(name=options["dataset"])
            report = policy_evaluate(
                dataset=dataset,
                policy=options["policy"],
                estimators=estimators,
                rows=options["rows"],
                test_fraction=options["test_fraction"],
                epsilon=options["epsilon"],
                max_weight=options["max_weight"],
                reward=options["reward"],
                n_bootstrap=options["bootstrap"],
                seed=options["seed"],
            )
        except (DatasetNotFound, PolicyError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.to_dict()))
            return
        what = "click-through rate" if options["reward"] == "click" else "reward"
        self.stdout.write(
            f"Dataset {dataset.name!r} ({dataset.format}): {report.n_rows:,} "
            f"{'held-out ' if report.rows == 'test' else ''}rows, logged {what} "
            f"{report.evaluation.logged_value:.4f} per shown position"
        )
        self.stdout.write(f"Policy {report.policy}: estimated {what} per shown position")
        self.stdout.write(estimates_table(report))
        for note in report.notes:
            self.stdout.write(f"- {note}")
