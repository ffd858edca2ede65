"""recommender.serving.recommendations: one slate served and logged for a
shopper's visit, from plain arguments (no request), as the views, the API, the
simulator and tasks call it."""

from __future__ import annotations

import os

import pytest

from recommender.feedback.events import event_record
from recommender.models import Event, EventType, Impression
from recommender.serving.recommendations import _rng, recommend, replayable_serving
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("recommender_isolation")]


def test_recommend_serves_and_logs_a_slate_for_the_visit_it_is_given(catalog):
    user = UserFactory()
    rec = recommend(session_key="visit-1", user_id=user.pk, slot="home", k=3)

    assert len(rec.products) == 3
    logged = Impression.objects.get(pk=rec.impression.pk)
    assert (logged.session_key, logged.user_id, logged.slot) == ("visit-1", user.pk, "home")
    assert [item.product_id for item in logged.items.order_by("position")] == [
        p.pk for p in rec.products
    ]


def test_the_page_product_is_not_recommended_on_its_own_page_and_is_logged(catalog):
    on_page = catalog[0]
    rec = recommend(
        session_key="visit-2", user_id=None, slot="product", k=len(catalog), product_id=on_page.pk
    )

    assert on_page.pk not in {p.pk for p in rec.products}
    assert Impression.objects.get(pk=rec.impression.pk).product_id == on_page.pk


def test_a_view_of_the_session_shapes_its_observation(catalog):
    viewed = catalog[1]
    event_record(
        type=EventType.VIEW,
        product=viewed,
        session_key="visit-3",
        user_id=None,
        source=Event.Source.SERVER,
    )
    rec = recommend(session_key="visit-3", user_id=None, slot="home", k=2)

    impression = Impression.objects.get(pk=rec.impression.pk)
    assert viewed.pk in impression.state["recent_items"]


def test_replayable_serving_replays_the_same_slates_and_only_while_it_lasts(catalog, settings):
    """Simulated traffic sent in the same order gets the same slates, so a
    simulated history (or a test's shoppers) can be replayed exactly."""
    settings.RECOMMENDER_EPSILON = 1.0  # every position explores

    def slates(prefix: str) -> list[list[int]]:
        return [
            [
                p.pk
                for p in recommend(
                    session_key=f"{prefix}{n}", user_id=None, slot="home", k=4
                ).products
            ]
            for n in range(6)
        ]

    with replayable_serving(7):
        first = slates("a")
    with replayable_serving(7):
        again = slates("b")
    with replayable_serving(8):
        other = slates("c")
    unseeded = [slates("d"), slates("e")]

    assert first == again
    assert other != first
    assert unseeded[0] != unseeded[1]
    # Nested replays would share one stream: refused.
    with (
        replayable_serving(7),
        pytest.raises(RuntimeError, match="seeded already"),
        replayable_serving(7),
    ):
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_explores_with_draws_of_its_own():
    """A web worker forked from a process that already served (gunicorn's
    master preloads the app) must not repeat its parent's exploration: the
    same draws in every worker would make them explore in lockstep."""
    _rng().random()  # this process has served: its generator exists
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        try:
            os.write(write, _rng().bytes(16))
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        drawn_in_child = pipe.read()

    assert len(drawn_in_child) == 16
    assert drawn_in_child != _rng().bytes(16)
