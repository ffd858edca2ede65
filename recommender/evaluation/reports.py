"""What a checkpoint's publication found, typed: the guard checks and the
off-policy evaluation that ``Checkpoint.checks`` and ``Checkpoint.evaluation``
store as JSON.

The publisher writes these with ``to_dict`` and the dashboard and admin read
them with ``from_dict``: the check names, their labels and their order are
defined once (``GUARD_CHECKS``), so writer and reader cannot disagree. Readers
tolerate rows written by older trainers (missing keys read as "not recorded")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Every guard check, in the order it runs, with the label admins read. A check
# whose value is None was not judged (for example no logged state with context).
GUARD_CHECKS: tuple[tuple[str, str], ...] = (
    ("finite_weights", "Finite weights"),
    ("q_finite", "Finite Q values"),
    ("q_within_bound", "Q within bound"),
    ("personalised", "Personalised"),
)
CHECK_NAMES = tuple(name for name, _ in GUARD_CHECKS)
ESTIMATORS = ("ips", "snips", "dr")


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float (nested too) as null: JSON columns reject NaN."""
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class GuardCheck:
    name: str
    label: str
    passed: bool | None  # None: not judged


@dataclass(frozen=True)
class GuardReport:
    """The publication guard's checks of one candidate learner."""

    finite_weights: bool | None
    q_finite: bool | None
    q_within_bound: bool | None
    personalised: bool | None
    q_min: float | None = None
    q_max: float | None = None
    q_mean: float | None = None
    q_bound: float | None = None
    n_observations: int | None = None
    n_items: int | None = None
    non_finite_tensors: list[str] = field(default_factory=list)
    # The personalisation measurement (Jaccard figures, states, reason), as
    # ``recommender.learning.publishing.personalisation_check`` returns it.
    personalisation: dict = field(default_factory=dict)

    @classmethod
    def from_agent_check(cls, report: dict, personalisation: dict | None = None) -> GuardReport:
        """From ``recommender.rl.agents.check_agent``'s report and the
        personalisation check (None: not run)."""
        personalisation = personalisation or {}
        judged = "jaccard_vs_cold" in personalisation
        return cls(
            finite_weights=bool(report["finite_weights"]),
            q_finite=bool(report["q_finite"]),
            q_within_bound=bool(report["q_within_bound"]),
            personalised=bool(personalisation["passed"]) if judged else None,
            q_min=_number(report.get("q_min")),
            q_max=_number(report.get("q_max")),
            q_mean=_number(report.get("q_mean")),
            q_bound=_number(report.get("q_bound")),
            n_observations=report.get("n_observations"),
            n_items=report.get("n_items"),
            non_finite_tensors=list(report.get("non_finite_tensors", ())),
            personalisation=finite_json(personalisation),
        )

    @property
    def sound(self) -> bool:
        """Finite weights and finite, bounded Q values: rankings mean something."""
        return bool(self.finite_weights and self.q_finite and self.q_within_bound)

    @property
    def passed(self) -> bool:
        return self.sound and self.personalised is not False

    @property
    def checks(self) -> list[GuardCheck]:
        return [GuardCheck(name, label, getattr(self, name)) for name, label in GUARD_CHECKS]

    @property
    def failures(self) -> list[str]:
        """Why it failed, in words fit for ``Checkpoint.note``."""
        reasons = []
        if self.finite_weights is False:
            reasons.append("non-finite weights")
        if self.q_finite is False or self.q_within_bound is False:
            reasons.append("Q values out of bounds")
        if self.personalised is False:
            jaccard = _number(self.personalisation.get("jaccard_vs_cold"))
            shown = f"{jaccard:.2f}" if jaccard is not None else "not recorded"
            reasons.append(f"ignores the shopper's state (Jaccard with no context {shown})")
        return reasons

    def to_dict(self) -> dict:
        return finite_json(
            {
                **{name: getattr(self, name) for name in CHECK_NAMES},
                "passed": self.passed,
                "q_min": self.q_min,
                "q_max": self.q_max,
                "q_mean": self.q_mean,
                "q_bound": self.q_bound,
                "n_observations": self.n_observations,
                "n_items": self.n_items,
                "non_finite_tensors": list(self.non_finite_tensors),
                "personalisation": dict(self.personalisation),
            }
        )

    @classmethod
    def from_dict(cls, data: Any) -> GuardReport | None:
        """A stored report; None when nothing was stored. Missing or malformed
        values read as not recorded."""
        data = _dict(data)
        if not data:
            return None
        n_observations, n_items = _number(data.get("n_observations")), _number(data.get("n_items"))
        tensors = data.get("non_finite_tensors")
        return cls(
            **{name: _flag(data.get(name)) for name in CHECK_NAMES},
            q_min=_number(data.get("q_min")),
            q_max=_number(data.get("q_max")),
            q_mean=_number(data.get("q_mean")),
            q_bound=_number(data.get("q_bound")),
            n_observations=int(n_observations) if n_observations is not None else None,
            n_items=int(n_items) if n_items is not None else None,
            non_finite_tensors=[str(t) for t in tensors] if isinstance(tensors, list) else [],
            personalisation=_dict(data.get("personalisation")),
        )


@dataclass(frozen=True)
class OffPolicyEvaluation:
    """The off-policy gate's verdict on one candidate: its estimates (``ope.Estimate``
    dicts by estimator), those of the version it was compared with, and the
    serving parameters the estimates assume (``epsilon``: the exploration rate
    shoppers are served, ``RECOMMENDER_EPSILON``)."""

    estimates: dict[str, dict]
    active: dict  # {"policy", "version", and its estimates by estimator}
    n_impressions: int
    epsilon: float | None
    margin: float | None
    min_ess: float | None
    passed: bool | None
    reason: str
    baselines: dict | None = None
    offline: dict | None = None  # trained offline: the dataset it was judged on

    @property
    def active_version(self) -> int | None:
        version = _number(self.active.get("version"))
        return int(version) if version is not None else None

    @property
    def effective_impressions(self) -> float | None:
        return _number(_dict(self.estimates.get("snips")).get("ess"))

    def to_dict(self) -> dict:
        data = {
            **self.estimates,
            "active": self.active,
            "n_impressions": self.n_impressions,
            "epsilon": self.epsilon,
            "margin": self.margin,
            "min_ess": self.min_ess,
            "passed": self.passed,
            "reason": self.reason,
            "baselines": self.baselines,
        }
        if self.offline is not None:
            data["offline"] = self.offline
        return finite_json(data)

    @classmethod
    def from_dict(cls, data: Any) -> OffPolicyEvaluation | None:
        data = _dict(data)
        if not data:
            return None
        n_impressions, epsilon = _number(data.get("n_impressions")), _number(data.get("epsilon"))
        baselines, offline = data.get("baselines"), data.get("offline")
        return cls(
            estimates={key: data[key] for key in ESTIMATORS if key in data},
            active=_dict(data.get("active")),
            n_impressions=int(n_impressions) if n_impressions is not None else 0,
            epsilon=epsilon,
            margin=_number(data.get("margin")),
            min_ess=_number(data.get("min_ess")),
            passed=_flag(data.get("passed")),
            reason=data.get("reason") if isinstance(data.get("reason"), str) else "",
            baselines=baselines if isinstance(baselines, dict) else None,
            offline=offline if isinstance(offline, dict) else None,
        )
