"""The dashboard on a checkpoint the real trainer published: the guard checks
and the ε it shows are those the publisher wrote and the server serves, and
the carousel size it shows is the one shoppers get."""

from __future__ import annotations

import re

import pytest

from recommender.evaluation.reports import GUARD_CHECKS, GuardReport
from recommender.learning.training import policy_train
from recommender.models import Checkpoint, Impression, TrainingRun
from tests.recommender.support import Shopper

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]

URL = "/admin/recommender/dashboard/"


def _number(pattern: str, html: str) -> float:
    found = re.search(pattern, html, re.S)
    assert found, pattern
    return float(found.group(1))


def test_the_dashboard_shows_what_was_published_and_what_is_served(
    shopper_history, superuser_client, settings
):
    settings.RECOMMENDER_EPSILON = 0.25
    settings.RECOMMENDER_DEFAULT_K = 5
    run = policy_train(triggered_by="test")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.outcome
    checkpoint = Checkpoint.objects.get(status=Checkpoint.Status.ACTIVE)
    written = GuardReport.from_dict(checkpoint.checks)

    body = Shopper().recommend()
    served = Impression.objects.get(pk=body["impression_id"])
    assert body["policy"] == {"name": "dqn", "version": checkpoint.version}
    html = superuser_client.get(URL).content.decode()
    table = html[html.index('class="rec-table rec-checkpoints"') :]
    row = re.search(rf'<tr data-version="{checkpoint.version}">(.*?)</tr>', table, re.S).group(1)

    shown = re.findall(r'rec-check rec-check-(pass|fail)" title="([^"]+)"', row)
    assert shown == [
        ("pass" if check.passed else "fail", check.label)
        for check in written.checks
        if check.passed is not None
    ]
    assert {label for _, label in shown} <= {label for _, label in GUARD_CHECKS}
    assert "Ok" not in {label for _, label in shown}
    assert [label for _, label in shown][:3] == [
        "Finite weights",
        "Finite Q values",
        "Q within bound",
    ]

    # One ε: the one shoppers were served is the one the publisher evaluated at
    # and the one the dashboard shows, not the training schedule's.
    assert served.epsilon == checkpoint.evaluation["epsilon"] == 0.25
    assert _number(r"data-served-epsilon[^>]*>ε = ([\d.]+)<", html) == served.epsilon
    assert _number(r"data-evaluated-epsilon>served ε ([\d.]+)<", row) == served.epsilon
    assert run.epsilon != served.epsilon

    assert _number(r"data-carousel-size>(\d+)<", html) == len(body["items"]) == 5
