"""The recommender's admin list views: browsable with filters, search and
date drill-down; history read-only; checkpoints changed only by actions;
impressions exportable as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.forms.models import model_to_dict

from recommender.evaluation.stats import stats_rollup
from recommender.models import Checkpoint, EventType, ImpressionStats, LoggedDataset
from recommender.serving.server import sold_out_set
from tests.recommender.factories import (
    CheckpointFactory,
    EventFactory,
    ImpressionFactory,
    ImpressionItemFactory,
    ProductFactory,
    TrainingRunFactory,
    TransitionFactory,
)
from tests.recommender.support import loadable_weights

pytestmark = pytest.mark.django_db

ADMIN = "/admin/recommender"
T0 = datetime(2024, 3, 5, 10, 0, tzinfo=UTC)


@pytest.fixture
def history():
    """One of everything the admin lists."""
    product = ProductFactory(name="Linen shirt")
    impression = ImpressionFactory(
        created_at=T0, session_key="sess-alpha", clicks=1, reward=1.0, policy_version=3
    )
    ImpressionItemFactory(impression=impression, product=product, position=0, propensity=0.875)
    event = EventFactory(
        created_at=T0,
        session_key="sess-alpha",
        type=EventType.CLICK,
        product=product,
        impression=impression,
        reward=1.0,
    )
    transition = TransitionFactory(impression=impression, product=product, reward=1.0)
    run = TrainingRunFactory(started_at=T0, loss=0.125)
    from recommender.simulation.history import history_plan

    simulated = history_plan(sessions=10, days=1, first_train=5, train_every=5, force=True)
    stats_rollup(since=T0, until=T0)  # nothing: empty range
    stats_rollup(since=T0, until=T0.replace(hour=11))
    return {
        "impression": impression,
        "event": event,
        "transition": transition,
        "simulatedhistory": simulated,
        "trainingrun": run,
        "impressionstats": ImpressionStats.objects.get(),
    }


# ---------------------------------------------------------------------------
# Lists: filters, search and date hierarchy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("impression", "", "sess-alp"),
        ("impression", "?slot__exact=home&created_at__year=2024&created_at__month=3", "sess-alp"),
        ("impression", "?q=sess-alpha", "sess-alp"),
        ("impression", "?policy_version=3&policy_name=dqn", "dqn v3"),
        ("impression", "?policy_version=fallback", "0 impressions"),
        ("impression", "?policy_version=%C2%B2", "sess-alp"),  # "²" is no version: no filter
        ("impression", "?policy_version=" + "9" * 30, "0 impressions"),
        ("event", "?type__exact=click&impression__isempty=0", "Linen shirt"),
        ("event", "?q=Linen", "Linen shirt"),
        ("event", "?created_at__year=2024&created_at__month=3&created_at__day=5", "Linen shirt"),
        ("transition", "?done__exact=0", "Linen shirt"),
        ("trainingrun", "?kind__exact=train&status__exact=succeeded", "0.125"),
        ("impressionstats", "?slot__exact=home&hour__year=2024", "dqn"),
        ("checkpoint", "", "0 checkpoints"),
        ("event", "?created_at__year=2024&created_at__month=3", "Linen shirt"),
    ],
)
def test_lists_open_with_their_filters(superuser_client, history, path, query, expected):
    response = superuser_client.get(f"{ADMIN}/{path}/{query}")

    assert response.status_code == 200
    assert expected in response.content.decode()


def test_searching_for_an_id_finds_the_row(superuser_client, history):
    impression, event = history["impression"], history["event"]

    by_impression = superuser_client.get(f"{ADMIN}/impression/?q={impression.pk}")
    events_of_it = superuser_client.get(f"{ADMIN}/event/?q={impression.pk}")
    by_event = superuser_client.get(f"{ADMIN}/event/?q={event.event_id}")
    nothing = superuser_client.get(f"{ADMIN}/impression/?q=00000000-0000-0000-0000-000000000000")

    assert by_impression.context["cl"].result_count == 1
    assert events_of_it.context["cl"].result_count == 1
    assert by_event.context["cl"].result_count == 1
    assert nothing.context["cl"].result_count == 0


def test_impression_page_shows_its_items_and_attributed_events(superuser_client, history):
    impression = history["impression"]

    html = superuser_client.get(f"{ADMIN}/impression/{impression.pk}/change/").content.decode()

    assert "0.875" in html  # the shown item's propensity
    assert "Attributed events" in html or "attributed events" in html
    assert 'name="_save"' not in html


def test_impression_page_names_the_sold_out_products_it_could_not_show(superuser_client, history):
    impression = history["impression"]
    impression.sold_out_id = sold_out_set([98765, 4321])
    impression.save()

    html = superuser_client.get(f"{ADMIN}/impression/{impression.pk}/change/").content.decode()

    assert "sold out (not candidates)" in html.lower()
    assert "#4321, #98765" in html


def test_date_drill_down_lists_the_periods_that_have_rows(superuser_client):
    for day in (3, 5):
        ImpressionFactory(created_at=T0.replace(day=day))
    ImpressionFactory(created_at=T0.replace(year=2023, month=12, day=30))

    years = superuser_client.get(f"{ADMIN}/impression/").content.decode()
    months = superuser_client.get(f"{ADMIN}/impression/?created_at__year=2024").content.decode()
    days = superuser_client.get(
        f"{ADMIN}/impression/?created_at__year=2024&created_at__month=3"
    ).content.decode()

    assert "?created_at__year=2023" in years and "?created_at__year=2024" in years
    assert "created_at__month=3" in months and "created_at__month=2" not in months
    assert "created_at__day=3" in days and "created_at__day=5" in days
    assert "created_at__day=6" not in days


# ---------------------------------------------------------------------------
# History is read-only
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["impression", "event", "transition", "trainingrun", "simulatedhistory"]
)
def test_history_cannot_be_added_changed_or_deleted(superuser_client, history, model):
    obj = history[model]
    before = model_to_dict(obj)
    change_url = f"{ADMIN}/{model}/{obj.pk}/change/"

    assert superuser_client.get(f"{ADMIN}/{model}/add/").status_code == 403
    assert superuser_client.get(f"{ADMIN}/{model}/{obj.pk}/delete/").status_code == 403
    page = superuser_client.get(change_url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert superuser_client.post(change_url, {"reward": "99"}).status_code == 403
    obj.refresh_from_db()
    assert model_to_dict(obj) == before
    changelist = superuser_client.get(f"{ADMIN}/{model}/").content.decode()
    assert "delete_selected" not in changelist


def test_stats_buckets_are_read_only_too(superuser_client, history):
    bucket = history["impressionstats"]
    assert (
        superuser_client.post(
            f"{ADMIN}/impressionstats/{bucket.pk}/change/", {"clicks": "500"}
        ).status_code
        == 403
    )
    bucket.refresh_from_db()
    assert bucket.clicks == 1


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def test_checkpoint_weights_are_never_shown_raw(superuser_client):
    checkpoint = CheckpointFactory(version=4, weights=b"RAW-WEIGHT-BYTES" * 128)

    html = superuser_client.get(f"{ADMIN}/checkpoint/{checkpoint.pk}/change/").content.decode()

    assert "RAW-WEIGHT-BYTES" not in html
    assert "2.0\xa0KB" in html  # its size instead
    assert "finite_weights" in html  # the guard checks are shown


def test_checkpoint_status_changes_only_through_actions(superuser_client):
    checkpoint = CheckpointFactory(version=4)

    response = superuser_client.post(
        f"{ADMIN}/checkpoint/{checkpoint.pk}/change/",
        {"status": "active", "version": "99", "note": "Looks good on the home slot."},
    )

    assert response.status_code == 302
    checkpoint.refresh_from_db()
    assert (checkpoint.status, checkpoint.version) == (Checkpoint.Status.CANDIDATE, 4)
    assert checkpoint.note == "Looks good on the home slot."
    assert superuser_client.get(f"{ADMIN}/checkpoint/add/").status_code == 403
    assert superuser_client.get(f"{ADMIN}/checkpoint/{checkpoint.pk}/delete/").status_code == 403


def run_action(client, model: str, action: str, pks: list) -> object:
    return client.post(
        f"{ADMIN}/{model}/", {"action": action, "_selected_action": [str(pk) for pk in pks]}
    )


def test_activate_action_activates_and_retires_the_previous(superuser_client):
    v1 = CheckpointFactory(version=1, status=Checkpoint.Status.ACTIVE)
    v2 = CheckpointFactory(version=2, weights=loadable_weights())

    response = run_action(superuser_client, "checkpoint", "activate_selected", [v2.pk])

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (Checkpoint.Status.RETIRED, Checkpoint.Status.ACTIVE)
    assert str(list(get_messages(response.wsgi_request))[0]).startswith(
        "v2 is now active; v1 was retired."
    )


def test_activate_action_refuses_a_version_that_does_not_load(superuser_client):
    CheckpointFactory(version=1, status=Checkpoint.Status.ACTIVE)
    v2 = CheckpointFactory(version=2)  # placeholder bytes: not a checkpoint

    response = run_action(superuser_client, "checkpoint", "activate_selected", [v2.pk])

    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert "Could not activate v2: it does not load" in message
    assert Checkpoint.objects.get(status=Checkpoint.Status.ACTIVE).version == 1


def test_activate_action_needs_exactly_one(superuser_client):
    v1, v2 = CheckpointFactory(version=1), CheckpointFactory(version=2)

    response = run_action(superuser_client, "checkpoint", "activate_selected", [v1.pk, v2.pk])

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Select exactly one checkpoint to activate."
    ]
    assert not Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).exists()


def test_a_checkpoint_trained_on_another_shops_log_is_not_activated(superuser_client):
    dataset = LoggedDataset.objects.create(name="obd-bts", format="obd", source="x", digest="0")
    v1 = CheckpointFactory(version=1, status=Checkpoint.Status.ACTIVE)
    offline = CheckpointFactory(version=2, dataset=dataset)

    response = run_action(superuser_client, "checkpoint", "activate_selected", [offline.pk])

    message = str(list(get_messages(response.wsgi_request))[0])
    assert message.startswith("Could not activate v2: v2 was trained offline on dataset 'obd-bts'")
    v1.refresh_from_db()
    assert v1.status == Checkpoint.Status.ACTIVE
    page = superuser_client.get(f"{ADMIN}/checkpoint/{offline.pk}/change/").content.decode()
    assert "obd-bts" in page


def test_imported_datasets_are_listed_read_only(superuser_client):
    dataset = LoggedDataset.objects.create(
        name="obd-random", format="obd", source="/data/x", digest="0", n_rows=10_000, clicks=38
    )
    changelist = superuser_client.get(f"{ADMIN}/loggeddataset/").content.decode()
    assert "obd-random" in changelist and "10000" in changelist.replace(",", "")
    assert superuser_client.get(f"{ADMIN}/loggeddataset/add/").status_code == 403
    assert superuser_client.get(f"{ADMIN}/loggeddataset/{dataset.pk}/delete/").status_code == 403


def test_roll_back_action(superuser_client):
    v1 = CheckpointFactory(
        version=1, status=Checkpoint.Status.RETIRED, activated_at=T0, weights=loadable_weights()
    )
    v2 = CheckpointFactory(version=2, status=Checkpoint.Status.ACTIVE, activated_at=T0)

    not_active = run_action(superuser_client, "checkpoint", "roll_back_active", [v1.pk])
    assert [str(m) for m in get_messages(not_active.wsgi_request)] == [
        "Select the active checkpoint to roll it back."
    ]
    run_action(superuser_client, "checkpoint", "roll_back_active", [v2.pk])

    v1.refresh_from_db()
    v2.refresh_from_db()
    assert (v1.status, v2.status) == (Checkpoint.Status.ACTIVE, Checkpoint.Status.REJECTED)


def test_staff_who_may_only_view_get_no_checkpoint_actions(operator_client, staff_client):
    from django.contrib.auth.models import Permission

    from tests.recommender.factories import StaffFactory

    viewer = StaffFactory(username="ckpt-viewer")
    viewer.user_permissions.add(Permission.objects.get(codename="view_checkpoint"))
    staff_client.force_login(viewer)
    CheckpointFactory(version=1)

    html = staff_client.get(f"{ADMIN}/checkpoint/").content.decode()

    assert "activate_selected" not in html
    assert "activate_selected" in operator_client.get(f"{ADMIN}/checkpoint/").content.decode()


# ---------------------------------------------------------------------------
# CSV export
# ---------------------------------------------------------------------------


def read_csv(response) -> list[dict[str, str]]:
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="impressions-')
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def exportable():
    shirt, scarf = ProductFactory(name="Shirt"), ProductFactory(name="Scarf")
    home = ImpressionFactory(
        created_at=T0,
        slot="home",
        session_key="s-home",
        clicks=1,
        add_to_carts=1,
        purchases=1,
        reward=9.5,
        revenue=Decimal("25.00"),
    )
    ImpressionItemFactory(impression=home, product=scarf, position=1, propensity=0.05)
    ImpressionItemFactory(impression=home, product=shirt, position=0, propensity=0.9125)
    cart = ImpressionFactory(
        created_at=T0.replace(hour=11),
        slot="cart",
        session_key="s-cart",
        policy_name="popularity",
        policy_version=None,
    )
    return {"home": home, "cart": cart, "shirt": shirt, "scarf": scarf}


def test_export_action_streams_the_selected_impressions_with_rewards(superuser_client, exportable):
    home, shirt, scarf = exportable["home"], exportable["shirt"], exportable["scarf"]

    rows = read_csv(run_action(superuser_client, "impression", "export_csv", [home.pk]))

    assert rows == [
        {
            "impression_id": str(home.pk),
            "created_at": "2024-03-05T10:00:00+00:00",
            "slot": "home",
            "policy_name": "dqn",
            "policy_version": "1",
            "epsilon": "0.1",
            "session_key": "s-home",
            "user_id": "",
            "page_product_id": "",
            "item_ids": f"{shirt.pk} {scarf.pk}",
            "propensities": "0.9125 0.05",
            "clicks": "1",
            "add_to_carts": "1",
            "purchases": "1",
            "reward": "9.5",
            "revenue": "25.00",
        }
    ]


def test_export_link_honours_the_current_filters(superuser_client, exportable):
    changelist = superuser_client.get(f"{ADMIN}/impression/?slot__exact=cart").content.decode()
    assert f'href="{ADMIN}/impression/export/?slot__exact=cart"' in changelist

    rows = read_csv(superuser_client.get(f"{ADMIN}/impression/export/?slot__exact=cart"))
    everything = read_csv(superuser_client.get(f"{ADMIN}/impression/export/"))

    assert [(r["session_key"], r["policy_version"], r["item_ids"]) for r in rows] == [
        ("s-cart", "", "")
    ]
    assert [r["session_key"] for r in everything] == ["s-cart", "s-home"]  # newest first


def test_export_needs_admin_access(client, staff_client, exportable):
    assert client.get(f"{ADMIN}/impression/export/").status_code == 302
    # Staff without the view permission on impressions get nothing.
    assert staff_client.get(f"{ADMIN}/impression/export/").status_code == 403


def test_export_of_bad_filters_goes_back_to_the_list(superuser_client, exportable):
    response = superuser_client.get(f"{ADMIN}/impression/export/?created_at__gte=not-a-date")

    assert response.status_code == 302
