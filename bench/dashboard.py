"""How fast the admin's recommendation dashboard renders on a large history.

Seeds a PostgreSQL database of its own (``bench_<NAME>`` beside the one in
DATABASE_URL, never your data) with --impressions impressions and --events
events over --days days, plus a training run every five minutes and twenty
checkpoints with real-sized weights, using COPY. It then backfills the hourly
roll-up and times the dashboard as a signed-in staff user would load it (the
Django test client, full middleware and template rendering), several times
per scenario.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dashdev \\
        python -m bench.dashboard [--json] [--impressions 200000 --events 1000000]

Prints a table (p50 / max milliseconds and queries per scenario); with --json
the last line is one JSON object. --keepdb keeps the seeded database for the
next run (seeding is skipped when it already holds the requested volume).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal

from psycopg.types.json import Jsonb

TARGET_MS = 1000.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30, help="history length, ending now")
    parser.add_argument("--runs", type=int, default=7, help="timed renders per scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keepdb", action="store_true", help="keep (and reuse) the bench database")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line"
    )
    return parser.parse_args(argv)


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    # Static files are served by whitenoise from finders here; its warning
    # about an uncollected STATIC_ROOT is noise for a benchmark.
    warnings.filterwarnings("ignore", message="No directory at")


# ---------------------------------------------------------------------------
# Seeding with COPY
# ---------------------------------------------------------------------------


def _copy_text(value: object) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Jsonb):
        value = json.dumps(value.obj)
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


def copy_rows(model, fields: list[str], rows: Iterable[tuple], *, chunk: int = 20_000) -> int:
    """COPY rows into a model's table, formatted as COPY text here (several
    times faster than adapting value by value). ``rows`` hold values for the
    ``fields`` named, in order; every other concrete field gets its model
    default, so fields added to the model later need no change here."""
    from django.db import connection, transaction

    columns = [f for f in model._meta.concrete_fields if not f.primary_key or f.name in fields]
    defaults = {
        f.name: _copy_text(f.get_db_prep_save(f.get_default(), connection))
        for f in columns
        if f.name not in fields
    }
    position = {name: i for i, name in enumerate(fields)}
    plan = [(position.get(f.name), defaults.get(f.name)) for f in columns]
    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(f.column) for f in columns)
    count = 0
    # cursor.cursor is the psycopg cursor under Django's wrapper, for COPY.
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        # The rows are consistent by construction: skip the per-row foreign
        # key triggers (the bulk-load setting pg_dump uses; needs a superuser,
        # as the bench database's owner is here), which cost more than the
        # COPY itself. Scoped to this transaction by SET LOCAL.
        cursor.execute("SET LOCAL session_replication_role = replica")
        copy_context = cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN")
        with copy_context as copy:
            buffer: list[str] = []
            for row in rows:
                buffer.append(
                    "\t".join(_copy_text(row[i]) if i is not None else d for i, d in plan) + "\n"
                )
                if len(buffer) >= chunk:
                    copy.write("".join(buffer))
                    buffer.clear()
                count += 1
            copy.write("".join(buffer))
    return count


@contextmanager
def indexes_dropped(*models) -> Iterator[None]:
    """Drop the tables' secondary indexes and unique constraints for a bulk
    load and rebuild them afterwards from their own definitions. Building an
    index once over a million rows is far cheaper than updating eight of them
    row by row (random UUIDs and session keys touch a new page per row)."""
    from django.db import connection

    rebuild: list[str] = []
    with connection.cursor() as cursor:
        for model in models:
            table = model._meta.db_table
            cursor.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'u'",
                [table],
            )
            for name, definition in cursor.fetchall():
                cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
                rebuild.append(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
            cursor.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
                [table],
            )
            for name, definition in cursor.fetchall():
                cursor.execute(f'DROP INDEX "{name}"')
                rebuild.append(definition)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for statement in rebuild:
                cursor.execute(statement)


def insert_series(model, count: int, expressions: dict[str, str], params: list) -> None:
    """INSERT ``count`` rows generated by PostgreSQL itself (generate_series):
    ``expressions`` give SQL for some fields; the rest get their model default."""
    from django.db import connection, transaction

    columns = [f for f in model._meta.concrete_fields if not f.primary_key or f.name in expressions]
    sql_values, default_params = [], []
    for f in columns:
        if f.name in expressions:
            sql_values.append(expressions[f.name])
        else:
            sql_values.append("%s")
            default_params.append(f.get_db_prep_save(f.get_default(), connection))
    # Parameters appear in column order: defaults and expression params interleave.
    ordered: list = []
    expression_params = iter(params)
    for f in columns:
        if f.name in expressions:
            ordered.extend(next(expression_params) for _ in range(expressions[f.name].count("%s")))
        else:
            ordered.append(default_params.pop(0))
    names = ", ".join(connection.ops.quote_name(f.column) for f in columns)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({names}) "
            f"SELECT {', '.join(sql_values)} FROM generate_series(1, %s)",
            [*ordered, count],
        )


def seed(args: argparse.Namespace, now: datetime) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from recommender.models import Checkpoint, Event, Impression, TrainingRun
    from shop.models import Category, Product

    rng = random.Random(args.seed)
    timings: dict[str, float] = {}
    start = now - timedelta(days=args.days)
    span_s = (now - start).total_seconds()

    t0 = time.perf_counter()
    categories = Category.objects.bulk_create(
        Category(name=f"Bench category {i}", slug=f"bench-category-{i}") for i in range(20)
    )
    products = Product.objects.bulk_create(
        Product(
            category=categories[i % len(categories)],
            name=f"Bench product {i}",
            slug=f"bench-product-{i}",
            sku=f"BENCH-{i:05d}",
            price=Decimal(rng.choice(["9.90", "19.00", "34.50", "59.00", "120.00"])),
            stock=100,
        )
        for i in range(500)
    )
    product_ids = [p.pk for p in products]
    price_of = {p.pk: p.price for p in products}
    get_user_model().objects.create_superuser("bench-admin", "bench@example.com", "bench-pass")

    # Impressions: five learned versions over the period and a fallback share,
    # each version a little better than the last.
    n = args.impressions
    versions = 5
    created = sorted(start + timedelta(seconds=rng.random() * span_s) for _ in range(n))
    # (impression id, created_at, session, type, product, value, reward)
    attributed: list[tuple] = []
    empty_state = "{}"  # jsonb, in COPY's text format

    def impressions() -> Iterator[tuple]:
        for i, created_at in enumerate(created):
            version = 1 + i * versions // n
            fallback = rng.random() < 0.08
            ctr = 0.05 if fallback else 0.06 + 0.012 * version
            # Random 128-bit ids from the seeded generator: uuid4() (os.urandom)
            # is most of the per-row cost at this volume.
            pk = uuid.UUID(int=rng.getrandbits(128))
            session = f"{rng.getrandbits(128):032x}"
            clicks = int(rng.random() < ctr) + int(rng.random() < ctr * 0.1)
            clicked = rng.sample(product_ids, clicks)
            add_to_carts = int(bool(clicks) and rng.random() < 0.25)
            purchases = int(bool(add_to_carts) and rng.random() < 0.35)
            revenue = price_of[clicked[0]] if purchases else Decimal("0")
            reward = clicks + 3.0 * add_to_carts + purchases * (5.0 + 0.02 * float(revenue))
            for product in clicked:
                attributed.append((pk, created_at, session, "click", product, Decimal(0), 1.0))
            if add_to_carts:
                attributed.append((pk, created_at, session, "add_to_cart", clicked[0], 0, 3.0))
            if purchases:
                attributed.append(
                    (pk, created_at, session, "purchase", clicked[0], revenue, reward - clicks - 3)
                )
            yield (
                pk,
                created_at,
                session,
                rng.choice(("home", "home", "cart", "product")),
                empty_state,
                "popularity" if fallback else "dqn",
                None if fallback else version,
                0.0 if fallback else 0.1,
                clicks,
                add_to_carts,
                purchases,
                reward,
                revenue,
                True,
            )

    # Both big tables are loaded without their secondary indexes, which are
    # rebuilt once at the end (timed as seed_indexes_s).
    with indexes_dropped(Impression, Event):
        copy_rows(
            Impression,
            [
                "id",
                "created_at",
                "session_key",
                "slot",
                "state",
                "policy_name",
                "policy_version",
                "epsilon",
                "clicks",
                "add_to_carts",
                "purchases",
                "reward",
                "revenue",
                "transitions_built",
            ],
            impressions(),
        )
        timings["seed_impressions_s"] = time.perf_counter() - t0

        # Events: the attributed clicks, add-to-carts and purchases, then product
        # views (unattributed) up to the requested total.
        t0 = time.perf_counter()
        n_views = max(0, args.events - len(attributed))

        def attributed_events() -> Iterator[tuple]:
            for impression_id, created_at, session, kind, product, value, reward in attributed:
                yield (
                    uuid.UUID(int=rng.getrandbits(128)),
                    created_at + timedelta(seconds=rng.randint(2, 300)),
                    session,
                    kind,
                    product,
                    value,
                    "server" if kind != "click" else "client",
                    impression_id,
                    reward,
                )

        copy_rows(
            Event,
            [
                "event_id",
                "created_at",
                "session_key",
                "type",
                "product",
                "value",
                "source",
                "impression",
                "reward",
            ],
            attributed_events(),
        )
        # Product views carry no impression: PostgreSQL generates them itself.
        insert_series(
            Event,
            n_views,
            {
                "event_id": "gen_random_uuid()",
                "created_at": "%s::timestamptz + random() * %s::interval",
                "session_key": "md5(random()::text)",
                "type": "'view'",
                "product": "(%s::bigint[])[1 + floor(random() * %s)::int]",
                "source": "'client'",
            },
            [start, timedelta(seconds=span_s), product_ids, len(product_ids)],
        )
        timings["seed_events_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
    timings["seed_indexes_s"] = time.perf_counter() - t0

    # A training run every five minutes (the default schedule) and twenty
    # checkpoints whose 256 KB weights the dashboard must never load.
    t0 = time.perf_counter()
    runs, at, loss = [], start, 1.0
    while at < now:
        loss = max(0.03, loss * rng.uniform(0.995, 1.0))
        runs.append(
            TrainingRun(
                kind="train",
                status="succeeded",
                started_at=at,
                finished_at=at + timedelta(seconds=10),
                steps=300,
                loss=loss,
                mean_q=3.5 - loss,
                epsilon=0.1,
                replay_size=50_000,
                duration_s=10.0,
            )
        )
        at += timedelta(minutes=5)
    TrainingRun.objects.bulk_create(runs, batch_size=2000)
    weights = os.urandom(256 * 1024)
    for version in range(1, 21):
        Checkpoint.objects.create(
            version=version,
            status="active" if version == 20 else "retired",
            activated_at=start + timedelta(days=version),
            weights=weights,
            checks={
                "finite_weights": True,
                "q_sane": True,
                "q_min": 0.0,
                "q_max": 5.0,
                "passed": True,
            },
            evaluation={"ips": {"value": 0.3, "ci95": [0.25, 0.35]}, "passed": True},
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    timings["seed_rest_s"] = time.perf_counter() - t0
    return timings


# ---------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------


def time_page(client, url: str, runs: int) -> dict[str, float]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up: template and URL caches
    assert response.status_code == 200, (url, response.status_code)
    # Each request clears the query log when it starts; start from empty so
    # the context's offset into it is 0.
    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    # Read now: the captured list is a view of the log the next request clears.
    n_queries = len(queries)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200 and body
    return {
        "p50_ms": statistics.median(times),
        "max_ms": max(times),
        "queries": n_queries,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_databases, teardown_databases
    from django.utils import timezone

    from recommender.evaluation.stats import stats_rollup
    from recommender.models import Event, Impression, ImpressionStats

    if connection.vendor != "postgresql":
        print("bench.dashboard needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    # Django's test-database machinery gives the bench a database of its own.
    db = connection.settings_dict
    db.setdefault("TEST", {})["NAME"] = f"bench_{db['NAME']}"
    old_config = setup_databases(verbosity=0, interactive=False, keepdb=args.keepdb)
    try:
        now = timezone.now()
        seeded = (
            Impression.objects.count() >= args.impressions and Event.objects.count() >= args.events
        )
        timings: dict[str, float] = {}
        if not seeded:
            timings = seed(args, now)
        else:
            now = Impression.objects.order_by("-created_at").values_list("created_at", flat=True)[0]
        counts = {"impressions": Impression.objects.count(), "events": Event.objects.count()}

        t0 = time.perf_counter()
        ImpressionStats.objects.all().delete()
        buckets = stats_rollup(since=now - timedelta(days=args.days + 1), until=now)
        timings["rollup_backfill_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats_rollup(since=now - timedelta(hours=3), until=now)
        timings["rollup_last_3h_s"] = time.perf_counter() - t0

        client = Client()
        client.login(username="bench-admin", password="bench-pass")
        today = timezone.localdate(now)
        url = "/admin/recommender/dashboard/"
        days30 = f"?start={today - timedelta(days=29):%Y-%m-%d}&end={today:%Y-%m-%d}"
        scenarios = [
            ("dashboard, last 7 days (default, daily)", url, True),
            ("dashboard, 30 days, daily", url + days30, True),
            (
                "dashboard, 30 days, hourly, home slot",
                url + days30 + "&bucket=hour&slot=home",
                True,
            ),
            (
                "dashboard, today, hourly",
                url + f"?start={today:%Y-%m-%d}&end={today:%Y-%m-%d}",
                True,
            ),
            ("impression list (admin)", "/admin/recommender/impression/", False),
            ("event list (admin)", "/admin/recommender/event/", False),
        ]
        results = []
        for name, page, in_target in scenarios:
            results.append(
                {"scenario": name, "in_target": in_target, **time_page(client, page, args.runs)}
            )
        # What the roll-up buys: the same default page read from raw rows only.
        ImpressionStats.objects.all().delete()
        results.append(
            {
                "scenario": "dashboard, 7 days, without roll-up",
                "in_target": False,
                **time_page(client, url, args.runs),
            }
        )
        stats_rollup(since=now - timedelta(days=args.days + 1), until=now)
    finally:
        if not args.keepdb:
            teardown_databases(old_config, verbosity=0)

    target_met = all(r["p50_ms"] < TARGET_MS for r in results if r["in_target"])
    print(
        f"Dashboard render on PostgreSQL: {counts['impressions']:,} impressions, "
        f"{counts['events']:,} events, {buckets:,} hourly buckets"
    )
    for key, value in timings.items():
        print(f"  {key:<22} {value:8.2f}")
    print()
    width = max(len(r["scenario"]) for r in results)
    print(f"{'scenario':<{width}}  {'queries':>7}  {'p50 ms':>8}  {'max ms':>8}")
    print(f"{'-' * width}  {'-' * 7}  {'-' * 8}  {'-' * 8}")
    for r in results:
        mark = "" if r["in_target"] else "  (not in the target)"
        print(
            f"{r['scenario']:<{width}}  {r['queries']:>7}  {r['p50_ms']:>8.1f}  {r['max_ms']:>8.1f}{mark}"
        )
    print(f"\ntarget: dashboard p50 < {TARGET_MS:.0f} ms -> {'met' if target_met else 'NOT met'}")
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "dashboard",
                    **counts,
                    "buckets": buckets,
                    "runs": args.runs,
                    "timings_s": {k: round(v, 3) for k, v in timings.items()},
                    "results": [
                        {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
                        for r in results
                    ],
                    "target_ms": TARGET_MS,
                    "target_met": target_met,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
