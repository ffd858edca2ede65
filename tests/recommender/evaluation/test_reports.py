"""recommender.evaluation.reports: the guard and evaluation results the
publisher writes and the dashboard reads, in one vocabulary."""

from __future__ import annotations

import math

from recommender.evaluation.reports import (
    CHECK_NAMES,
    GUARD_CHECKS,
    GuardReport,
    OffPolicyEvaluation,
)


def _agent_check(**overrides) -> dict:
    # The shape recommender.rl.agents.check_agent returns.
    report = {
        "finite_weights": True,
        "non_finite_tensors": [],
        "n_observations": 12,
        "n_items": 40,
        "q_bound": 500.0,
        "q_finite": True,
        "q_min": -0.5,
        "q_max": 4.0,
        "q_mean": 1.2,
        "q_within_bound": True,
        "ok": True,
    }
    return {**report, **overrides}


def test_a_report_round_trips_through_json_with_every_check_by_name():
    personalisation = {"passed": True, "jaccard_vs_cold": 0.3, "max_jaccard": 0.8, "reason": "r"}
    report = GuardReport.from_agent_check(_agent_check(), personalisation)

    stored = report.to_dict()

    assert GuardReport.from_dict(stored) == report
    assert [check.name for check in report.checks] == list(CHECK_NAMES)
    assert "ok" not in stored and "ok" not in CHECK_NAMES
    assert stored["passed"] is True


def test_non_finite_q_values_fail_and_are_stored_as_null():
    report = GuardReport.from_agent_check(
        _agent_check(q_finite=False, q_within_bound=False, q_min=math.nan, ok=False)
    )

    stored = report.to_dict()

    assert stored["q_min"] is None
    assert stored["passed"] is False
    assert report.failures == ["Q values out of bounds"]
    assert [c.passed for c in report.checks] == [True, False, False, None]


def test_a_shopper_blind_ranking_fails_only_when_it_was_judged():
    blind = {"passed": False, "jaccard_vs_cold": 0.97, "max_jaccard": 0.8, "reason": "r"}
    not_judged = {"passed": True, "max_jaccard": 0.8, "reason": "no logged states"}

    assert GuardReport.from_agent_check(_agent_check(), blind).passed is False
    assert GuardReport.from_agent_check(_agent_check(), not_judged).personalised is None
    assert GuardReport.from_agent_check(_agent_check(), not_judged).passed is True
    assert (
        "Jaccard with no context 0.97"
        in GuardReport.from_agent_check(_agent_check(), blind).failures[0]
    )


def test_rows_from_older_trainers_read_as_not_recorded():
    old = GuardReport.from_dict({"finite_weights": True, "q_sane": True, "ok": True})

    assert old.finite_weights is True
    assert old.q_within_bound is None
    assert [c.name for c in old.checks if c.passed is not None] == ["finite_weights"]
    assert GuardReport.from_dict({}) is None and GuardReport.from_dict("junk") is None


def test_every_check_has_a_label():
    assert len({name for name, _ in GUARD_CHECKS}) == len(GUARD_CHECKS)
    assert all(label and label[0].isupper() for _, label in GUARD_CHECKS)


def test_an_evaluation_round_trips_and_keeps_the_epsilon_it_assumed():
    evaluation = OffPolicyEvaluation(
        estimates={"snips": {"value": 0.4, "ci95": [0.3, 0.5], "ess": 42.0}},
        active={"policy": "v3", "version": 3, "snips": {"value": 0.38}},
        n_impressions=500,
        epsilon=0.1,
        margin=0.05,
        min_ess=30.0,
        passed=True,
        reason="ok by SNIPS",
    )

    read = OffPolicyEvaluation.from_dict(evaluation.to_dict())

    assert read == evaluation
    assert (read.epsilon, read.active_version, read.effective_impressions) == (0.1, 3, 42.0)
    assert OffPolicyEvaluation.from_dict(None) is None
