"""Judging policies on an imported log and training the learner from one: the
services behind ``evaluate_offline`` and ``train_offline``. The estimators,
the reward model and the training step are the RL core's
(``recommender.rl.ope``, ``recommender.rl.offline``); this module resolves
names into policies, loads the arrays and stores what training produced."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Max

from recommender.conf import dqn_config
from recommender.datasets.selectors import dataset_catalog, dataset_feedback
from recommender.evaluation.reports import GuardReport
from recommender.models import Checkpoint
from recommender.models.datasets import LoggedDataset
from recommender.rl import checkpoint as checkpoint_io
from recommender.rl import offline, ope
from recommender.rl.agent import DQNAgent
from recommender.rl.agents import agent_kind, check_agent, load_agent
from recommender.rl.checkpoint import CheckpointError
from recommender.rl.core import category_count
from recommender.rl.learner import Learner
from recommender.rl.offline import LoggedFeedback, PolicyEvaluation
from recommender.rl.types import ItemCatalog
from recommender.serving import features

POLICIES = ("uniform", "logged", *offline.BASELINES, "checkpoint:<version>")
_ALIASES = {
    "random": "uniform",
    "same_category": "same-category",
    "cooccurrence": "co-occurrence",
}
ROWS = ("all", "test")
DEFAULT_TEST_FRACTION = 0.3
MIN_EXPECTED_REWARDS = 5.0
"""An importance-weighted estimate resting on fewer effective rows than would
hold this many rewards at the log's own rate is flagged (and not used to call
one policy better than another): with click rates of a few per thousand, a
policy that seldom shows what the log showed is judged on a handful of clicks,
or none, and its bootstrap interval can collapse to [0, 0]."""


class PolicyError(ValueError):
    """A policy that cannot be evaluated on this dataset, with why."""


@dataclass
class OfflineReport:
    """One policy's estimates on a dataset's rows, and what to know about them."""

    dataset: str
    policy: str
    rows: str  # "all" or "test"
    evaluation: PolicyEvaluation
    notes: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return self.evaluation.n_rows

    def to_dict(self) -> dict:
        """The ``evaluate_offline --json`` object."""
        out = self.evaluation.to_dict()
        return {
            "dataset": self.dataset,
            "policy": self.policy,
            "n_rows": out["n_rows"],
            "rows": self.rows,
            "logged_value": out["logged_value"],
            "estimates": out["estimates"],
            "notes": self.notes,
        }


def normalise_policy(name: str) -> str:
    name = name.strip().lower()
    name = _ALIASES.get(name, name)
    if name in ("uniform", "logged", *offline.BASELINES):
        return name
    if name.startswith("checkpoint:") and name.split(":", 1)[1].isdecimal():
        return name
    raise PolicyError(f"unknown policy {name!r}: use one of {', '.join(POLICIES)}")


def policy_evaluate(
    *,
    dataset: LoggedDataset,
    policy: str,
    estimators: list[str] | tuple[str, ...] = ope.ESTIMATORS,
    rows: str = "all",
    test_fraction: float = DEFAULT_TEST_FRACTION,
    epsilon: float = 0.0,
    max_weight: float | None = None,
    reward: str = "click",
    n_bootstrap: int = 1000,
    seed: int = 0,
    feedback: LoggedFeedback | None = None,
) -> OfflineReport:
    """Estimate ``policy``'s value (click-through rate per shown position by
    default) on the dataset's rows: all of them, or the latest
    ``test_fraction`` (``rows="test"``).

    Baselines that learn from the log never score a row they learnt from: on
    the test rows they are fitted on the earlier rows; on all rows they are
    cross-fitted over five blocks in time order. A checkpoint trained on this
    dataset is judged on the rows it was not trained on only.
    """
    name = normalise_policy(policy)
    if rows not in ROWS:
        raise PolicyError(f"rows must be one of {', '.join(ROWS)}")
    feedback = feedback if feedback is not None else dataset_feedback(dataset, reward=reward)
    notes: list[str] = []
    agent = None
    if name.startswith("checkpoint:"):
        checkpoint = Checkpoint.objects.filter(version=int(name.split(":", 1)[1])).first()
        if checkpoint is None:
            raise PolicyError(f"there is no checkpoint {name.split(':', 1)[1]}")
        agent = checkpoint_agent(checkpoint, dataset, feedback)
        if checkpoint.dataset_id == dataset.pk:
            trained = (checkpoint.evaluation or {}).get("training", {})
            test_fraction = float(trained.get("test_fraction", test_fraction))
            if rows == "all":
                notes.append(
                    f"v{checkpoint.version} was trained on the first "
                    f"{1 - test_fraction:.0%} of this dataset: judged on the rest only"
                )
            rows = "test"
    fit_rows, test_rows = offline.time_split(len(feedback), test_fraction)
    eval_rows = test_rows if rows == "test" else np.arange(len(feedback))
    if name in ("uniform", "logged"):
        target = name
    elif name in offline.BASELINES:
        target = offline.baseline_scorer(
            name, feedback, eval_rows, fit_rows=fit_rows if rows == "test" else None
        )
    else:
        target = offline.policy_scorer(agent, feedback)
    evaluation = offline.evaluate(
        feedback,
        eval_rows,
        target,
        estimators=estimators,
        epsilon=0.0 if name in ("uniform", "logged") else epsilon,
        max_weight=max_weight,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    notes.extend(_notes(evaluation))
    return OfflineReport(dataset.name, name, rows, evaluation, notes)


def _notes(evaluation: PolicyEvaluation) -> list[str]:
    """What a reader must know to trust the numbers: a threshold that was
    needed (or not), too few effective rows."""
    notes = []
    for name, estimate in evaluation.estimates.items():
        if estimate.max_weight is None:
            continue
        action = "clipped" if name == "ips" else "valued by the reward model alone"
        if estimate.clipped:
            notes.append(
                f"{name}: {estimate.clipped} of {estimate.n} rows had an importance weight "
                f"above {estimate.max_weight:g} and were {action}"
            )
        else:
            notes.append(f"{name}: no importance weight above {estimate.max_weight:g}: not needed")
    first = next(iter(evaluation.estimates.values()), None)
    expected = expected_rewards(first, evaluation.logged_value) if first is not None else None
    if expected is not None and expected < MIN_EXPECTED_REWARDS:
        notes.append(
            f"the importance weights rest on {first.ess:,.1f} effective rows, which at the "
            f"log's own rate ({evaluation.logged_value:.4f}) would hold {expected:.1f} rewards: "
            "too few for the IPS, SNIPS and DR intervals to mean much (DM rests on its model)"
        )
    return notes


def expected_rewards(estimate: ope.Estimate, rate: float) -> float | None:
    """How many rewards the estimate's effective rows would hold at ``rate``."""
    if not (math.isfinite(estimate.ess) and math.isfinite(rate)):
        return None
    return estimate.ess * rate


def checkpoint_agent(
    checkpoint: Checkpoint, dataset: LoggedDataset, feedback: LoggedFeedback
) -> Learner:
    """``checkpoint``'s agent serving the dataset's items, if its item ids are
    the dataset's: a checkpoint knows items by id, so one trained on another
    catalog would score unrelated items."""
    origin = checkpoint.dataset
    version = f"v{checkpoint.version}"
    if origin is None and dataset.format != LoggedDataset.Format.STORE:
        raise PolicyError(
            f"{version} was trained on this store's catalog (product ids), but dataset "
            f"{dataset.name!r} ({dataset.get_format_display()}) has its own item ids: "
            "evaluating it there is meaningless. Evaluate store checkpoints on a dataset "
            "exported from this store (export_logged_feedback, then import_logged_feedback "
            "--format store)."
        )
    if origin is not None and origin.pk != dataset.pk and origin.format != dataset.format:
        raise PolicyError(
            f"{version} was trained on dataset {origin.name!r} ({origin.format}); "
            f"{dataset.name!r} is a {dataset.format} log whose item ids are not its items'"
        )
    try:
        payload = checkpoint_io.loads(bytes(checkpoint.weights))
        known = payload["catalog"]["ids"].numpy()
        ids = feedback.catalog.ids
        overlap = float(np.isin(ids, known).mean()) if len(ids) else 0.0
        if overlap < 0.5:
            raise PolicyError(
                f"only {overlap:.0%} of dataset {dataset.name!r}'s item ids are among the "
                f"{len(known)} items {version} was trained on: the ids do not match"
            )
        return load_agent(bytes(checkpoint.weights), catalog=feedback.catalog)
    except (CheckpointError, ValueError, KeyError) as exc:
        if isinstance(exc, PolicyError):
            raise
        raise PolicyError(
            f"{version} cannot score dataset {dataset.name!r}'s items: {exc}"
        ) from exc


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass
class TrainReport:
    checkpoint: Checkpoint
    training: offline.TrainingResult
    comparisons: dict[str, OfflineReport]  # on the held-out rows, the candidate last
    n_train: int
    n_test: int


def policy_train_offline(
    *,
    dataset: LoggedDataset,
    steps: int = 2000,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    importance_weighted: bool = True,
    max_weight: float = ope.DEFAULT_MAX_WEIGHT,
    reward: str = "click",
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> TrainReport:
    """Train the per-item DQN learner (the store's configuration) on the
    dataset's earlier rows, judge it against ``uniform``, ``logged`` and the
    baselines on the held-out latest ``test_fraction``, and store it as a
    candidate checkpoint (never activated; one trained on another shop's items
    cannot be) with that comparison as its evaluation."""
    feedback = dataset_feedback(dataset, reward=reward)
    train_rows, test_rows = offline.time_split(len(feedback), test_fraction)
    if not len(train_rows) or not len(test_rows):
        raise PolicyError(f"dataset {dataset.name!r} has too few rows to hold any out")
    config = dataclasses.replace(dqn_config(), seed=seed)
    agent = DQNAgent(config, feedback.catalog, _category_table_size(dataset, feedback.catalog))
    training = _train_capped(
        agent,
        feedback,
        train_rows,
        steps=steps,
        seed=seed,
        importance_weighted=importance_weighted,
        max_weight=max_weight,
    )
    comparisons = _compare_on_test_rows(
        agent,
        dataset,
        feedback,
        test_rows,
        test_fraction=test_fraction,
        reward=reward,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    sample = [feedback.observations[r] for r in test_rows[:200]]
    checks = GuardReport.from_agent_check(
        check_agent(agent, sample, max_abs_reward=config.max_abs_reward)
    ).to_dict()
    evaluation = _evaluation_record(
        dataset,
        comparisons,
        training,
        n_train=len(train_rows),
        n_test=len(test_rows),
        test_fraction=test_fraction,
        importance_weighted=importance_weighted,
        max_weight=max_weight,
        reward=reward,
    )
    checkpoint = _store_candidate(agent, checks, evaluation, dataset, _candidate_note(dataset))
    return TrainReport(checkpoint, training, comparisons, len(train_rows), len(test_rows))


def _category_table_size(dataset: LoggedDataset, catalog: ItemCatalog) -> int:
    """The store's category table size for a store export (so the policy can
    serve the store), the dataset's own categories otherwise."""
    if dataset.format == LoggedDataset.Format.STORE:
        return features.category_table_size(catalog)
    return category_count(catalog)


def _train_capped(
    agent: DQNAgent,
    feedback: LoggedFeedback,
    train_rows: np.ndarray,
    *,
    steps: int,
    seed: int,
    importance_weighted: bool,
    max_weight: float,
) -> offline.TrainingResult:
    """Train ``agent`` on ``train_rows``. Each transition's reward is capped as
    the store caps it (one luxury order must not dominate the squared errors);
    the evaluations keep the log's own."""
    capped = dataclasses.replace(
        feedback, rewards=np.minimum(feedback.rewards, agent.config.max_abs_reward)
    )
    return offline.train(
        agent,
        capped,
        train_rows,
        steps=steps,
        rng=np.random.default_rng(seed),
        importance_weighted=importance_weighted,
        max_weight=max_weight,
    )


def _compare_on_test_rows(
    agent: DQNAgent,
    dataset: LoggedDataset,
    feedback: LoggedFeedback,
    test_rows: np.ndarray,
    *,
    test_fraction: float,
    reward: str,
    n_bootstrap: int,
    seed: int,
) -> dict[str, OfflineReport]:
    """Off-policy estimates on the held-out rows of ``uniform``, ``logged``,
    each baseline and, last, the trained ``candidate``."""
    comparisons: dict[str, OfflineReport] = {}
    common = {
        "dataset": dataset,
        "rows": "test",
        "test_fraction": test_fraction,
        "reward": reward,
        "n_bootstrap": n_bootstrap,
        "seed": seed,
        "feedback": feedback,
    }
    for name in ("uniform", "logged", *offline.BASELINES):
        comparisons[name] = policy_evaluate(policy=name, **common)
    candidate = offline.evaluate(
        feedback,
        test_rows,
        offline.policy_scorer(agent, feedback),
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    comparisons["candidate"] = OfflineReport(
        dataset.name, "candidate", "test", candidate, _notes(candidate)
    )
    return comparisons


def _evaluation_record(
    dataset: LoggedDataset,
    comparisons: dict[str, OfflineReport],
    training: offline.TrainingResult,
    *,
    n_train: int,
    n_test: int,
    test_fraction: float,
    importance_weighted: bool,
    max_weight: float,
    reward: str,
) -> dict:
    """The candidate checkpoint's evaluation: its estimates, the logged policy's
    as the active one's, every comparison and how it was trained."""
    candidate = comparisons["candidate"].evaluation
    return {
        **{k: candidate.estimates[k].to_dict() for k in ("ips", "snips", "dr")},
        "active": {
            "policy": "logged policy",
            "version": None,
            **{
                k: comparisons["logged"].evaluation.estimates[k].to_dict()
                for k in ("ips", "snips", "dr")
            },
        },
        "offline": {
            "dataset": dataset.name,
            "rows": "test",
            "n_rows": n_test,
            "policies": {name: report.to_dict() for name, report in comparisons.items()},
        },
        "training": {
            "dataset": dataset.name,
            "test_fraction": test_fraction,
            "train_rows": n_train,
            "steps": training.stats.steps,
            "loss": training.stats.loss,
            "importance_weighted": importance_weighted,
            "max_weight": max_weight,
            "clipped_rows": training.clipped,
            "terminal_transitions": training.terminal,
            "reward": reward,
        },
    }


def _candidate_note(dataset: LoggedDataset) -> str:
    servable = dataset.format == LoggedDataset.Format.STORE
    note = f"Trained offline on dataset {dataset.name!r}" + (
        "." if servable else " (its own item ids): the store cannot serve it."
    )
    return note[:200]


def _store_candidate(
    agent: Learner, checks: dict, evaluation: dict, dataset, note: str
) -> Checkpoint:
    """A new candidate version (versions are shared with the store's own
    training, which may take the next number at the same moment: retry)."""
    for attempt in range(5):
        try:
            with transaction.atomic():
                version = (Checkpoint.objects.aggregate(v=Max("version"))["v"] or 0) + 1
                return Checkpoint.objects.create(
                    version=version,
                    weights=agent.save(),
                    config={"agent": agent_kind(agent), **agent.config.to_dict()},
                    checks=checks,
                    evaluation=evaluation,
                    status=Checkpoint.Status.CANDIDATE,
                    note=note,
                    dataset=dataset,
                )
        except IntegrityError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def dataset_summary(dataset: LoggedDataset) -> dict:
    """What a dataset holds, for the commands' headers."""
    catalog = dataset_catalog(dataset)
    return {
        "name": dataset.name,
        "format": dataset.format,
        "rows": dataset.n_rows,
        "items": len(catalog),
        "positions": dataset.n_positions,
        "clicks": dataset.clicks,
    }
