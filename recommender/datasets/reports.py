"""Plain-text tables of offline estimates, for the management commands."""

from __future__ import annotations

import math

from recommender.datasets.evaluation import MIN_EXPECTED_REWARDS, OfflineReport
from recommender.rl import ope


def _cell(estimate: ope.Estimate | None) -> str:
    if estimate is None or not math.isfinite(estimate.value):
        return "—"
    # + 0.0 turns -0.0 (a bootstrap quantile of zeros) into 0.0.
    value, low, high = estimate.value + 0.0, estimate.ci_low + 0.0, estimate.ci_high + 0.0
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def estimates_table(report: OfflineReport) -> str:
    """One policy: a row per estimator with its value, 95% interval and ESS."""
    lines = [f"{'estimator':<10} {'value [95% CI]':<28} {'ESS':>9}"]
    for name, estimate in report.evaluation.estimates.items():
        ess = f"{estimate.ess:,.1f}" if math.isfinite(estimate.ess) else "—"
        lines.append(f"{name:<10} {_cell(estimate):<28} {ess:>9}")
    return "\n".join(lines)


def comparison_table(reports: dict[str, OfflineReport], estimators: list[str]) -> str:
    """Several policies on the same rows: a row per policy, a column per estimator."""
    width = 28
    header = (
        f"{'policy':<15}" + "".join(f" {name:<{width}}" for name in estimators) + f" {'ESS':>9}"
    )
    lines = [header]
    for policy, report in reports.items():
        estimates = report.evaluation.estimates
        first = next(iter(estimates.values()))
        ess = f"{first.ess:,.1f}" if math.isfinite(first.ess) else "—"
        cells = "".join(f" {_cell(estimates.get(name)):<{width}}" for name in estimators)
        lines.append(f"{policy:<15}{cells} {ess:>9}")
    return "\n".join(lines)


def verdict(
    candidate: ope.Estimate, other: ope.Estimate, name: str, estimator: str, rate: float
) -> str:
    """Whether ``candidate`` beats ``other`` by their 95% intervals, or that the
    log cannot tell: when the thinner of the two rests on fewer effective rows
    than would hold ``MIN_EXPECTED_REWARDS`` rewards at the log's own ``rate``,
    non-overlapping intervals are no evidence (a policy judged on rows with no
    click at all gets the interval [0, 0])."""
    values = (candidate.ci_low, candidate.ci_high, other.ci_low, other.ci_high)
    if not all(math.isfinite(x) for x in values):
        return f"against {name}: undecided ({estimator} has no interval)"
    thinner = min(candidate.ess, other.ess)
    if not thinner * rate >= MIN_EXPECTED_REWARDS:
        return (
            f"against {name}: undecided: one estimate rests on {thinner:,.1f} effective rows, "
            f"about {thinner * rate:.1f} rewards at the log's rate"
        )
    if candidate.ci_low > other.ci_high:
        return f"against {name}: better ({estimator} intervals do not overlap)"
    if candidate.ci_high < other.ci_low:
        return f"against {name}: worse ({estimator} intervals do not overlap)"
    return f"against {name}: no evidence either way ({estimator} intervals overlap)"
