"""What the carousels cost the store's pages, under gunicorn with production settings.

On a PostgreSQL database of its own (``bench_load_<NAME>`` beside the one in
DATABASE_URL, created and dropped with Django's test-database machinery, never
your data): a catalog of 1,000 products, a trained checkpoint made active, and
two gunicorn servers with production settings (the Dockerfile's command: sync
workers, access log), one with the carousels and one without
(``SHOP_CAROUSEL_PROVIDER=""``). A separate load-generating process
(``bench/_load_client.py``, aiohttp) drives both with virtual shoppers, each
with its own session and two products in its cart, alternating between the
servers page by page and round by round (on, off, then off, on), so that both
see the same machine. Then the catalog grows to 100,000 products, a model
trained over all of them is made active, the servers restart and the home
page is measured again.

Prints, per catalog size: per-endpoint throughput and p50/p99 latency, SQL
queries per request (the same requests replayed in this process under
CaptureQueriesContext), the CPU time per request of the web workers, the
database, the cache and the load generator, the throughput of each page with
its carousel divided by the same page without it (target: >= 0.9), the
resident memory of each worker and of the master that forks them (what of
it is private, the proportional share, whether torch is in it), what
refreshing the candidate list costs (per refresh and per request on
average), and where a carousel's time goes, part by part (one request at a
time in this process), with the model, with none (the popularity
fallback: what any policy's carousel costs) and at its floor (only the
impression's statement and the rendering: what a carousel that logs each
slate in the request cannot cost less than). Then what the run
logged: impressions and events sent vs stored (they must be equal), bytes per
logged row, and the time build_transitions and a training run took on them
(docs/scaling.md extrapolates from these).

    DATABASE_URL=postgres://... [REDIS_URL=redis://...] python -m bench.load [--quick] [--json]

Defaults take a few minutes; --quick (shorter phases, one round, 1,000
products only, no training run) about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.9
PAGES = ("home", "product", "cart")
CATEGORIES = 14
BRANDS = ("Northwind", "Fjallraven", "Patagonia", "Arcteryx", "Muji", "Uniqlo", "Barbour")
COLOURS = ("navy", "olive", "black", "white", "red", "grey", "sand")
MATERIALS = ("merino wool", "cotton", "linen", "nylon", "leather", "cashmere")
SOLD_OUT_SHARE = 0.03
SECRET_KEY = secrets.token_urlsafe(50)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a run of about a minute")
    parser.add_argument("--json", action="store_true", help="one JSON object as the last line")
    parser.add_argument("--products", type=int, default=1_000, help="first catalog size")
    parser.add_argument(
        "--large", type=int, default=None, help="second catalog size (0: none; --quick: none)"
    )
    parser.add_argument("--seconds", type=float, default=None, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=None, help="on/off rounds per page")
    parser.add_argument("--shoppers", type=int, default=8, help="concurrent virtual shoppers")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server")
    args = parser.parse_args(argv)
    if args.large is None:
        args.large = 0 if args.quick else 100_000
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    import django

    django.setup()
    warnings.filterwarnings("ignore", message="No directory at")


# ---------------------------------------------------------------------------
# The store: catalog and checkpoint
# ---------------------------------------------------------------------------


def seed_products(count: int, *, start: int, rng: random.Random) -> None:
    """``count`` products numbered from ``start`` (COPY), spread over the
    categories, a few sold out, popularity long-tailed."""
    from django.utils import timezone

    from bench.dashboard import copy_rows
    from shop.models import Category, Product

    if not Category.objects.exists():
        Category.objects.bulk_create(
            Category(name=f"Category {i}", slug=f"category-{i}", position=i)
            for i in range(CATEGORIES)
        )
    categories = list(Category.objects.values_list("pk", flat=True))
    now = timezone.now()

    def rows():
        for n in range(start, start + count):
            yield (
                categories[n % len(categories)],
                f"Bench product {n}",
                f"bench-product-{n}",
                f"BENCH-{n:07d}",
                "A product of the load benchmark, described in a sentence or two "
                "so that its page weighs what a real one does.",
                BRANDS[n % len(BRANDS)],
                COLOURS[(n * 3) % len(COLOURS)],
                MATERIALS[(n * 5) % len(MATERIALS)],
                Decimal(rng.randint(500, 20_000)) / 100,
                0 if rng.random() < SOLD_OUT_SHARE else 1_000_000,
                True,
                "products/bench.jpg",
                int(rng.paretovariate(1.2)) - 1,
                # Distinct creation times, as a real catalog has: the home
                # page's "new arrivals" reads the newest few by index.
                now - timedelta(minutes=start + count - n),
                now,
            )

    copy_rows(
        Product,
        [
            "category",
            "name",
            "slug",
            "sku",
            "description",
            "brand",
            "colour",
            "material",
            "price",
            "stock",
            "is_active",
            "image",
            "units_sold",
            "created_at",
            "updated_at",
        ],
        rows(),
    )
    with connection_cursor() as cursor:
        cursor.execute("ANALYZE shop_product")


def connection_quote(name: str) -> str:
    from django.db import connection

    return connection.ops.quote_name(name)


@contextmanager
def connection_cursor():
    from django.db import connection

    with connection.cursor() as cursor:
        yield cursor


def publish_checkpoint() -> int:
    """A per-item agent over the catalog, trained a few steps on made-up
    transitions (serving costs the same whatever it learned), made active
    as the next version."""
    import numpy as np
    from django.conf import settings
    from django.db.models import Max

    from recommender.conf import dqn_config
    from recommender.models import Checkpoint
    from recommender.rl.agents import agent_kind, make_agent
    from recommender.rl.types import Observation, Slot, Transition
    from recommender.serving import features
    from recommender.serving.checkpoints import checkpoint_activate

    catalog = features.build_catalog()
    n_categories = features.category_table_size(catalog)
    agent = make_agent(settings.RECOMMENDER_AGENT, dqn_config(), catalog, n_categories)
    rng = np.random.default_rng(0)
    ids = catalog.ids
    transitions = []
    for _ in range(512):
        a, b = (int(i) for i in rng.choice(ids, size=2, replace=False))
        state = Observation(
            slot=Slot.HOME, recent_items=(a,), recent_events=(1,), recent_ages=(5.0,)
        )
        following = Observation(slot=Slot.PRODUCT, current_item=b, page_depth=1)
        transitions.append(Transition(state, b, float(rng.random() < 0.3), following, False, 0.5))
    replay = agent.make_replay(capacity=len(transitions))
    replay.add_many(transitions, catalog)
    agent.train_steps(replay, 20, rng)
    checkpoint = Checkpoint.objects.create(
        version=(Checkpoint.objects.aggregate(Max("version"))["version__max"] or 0) + 1,
        weights=agent.save(),
        config={"agent": agent_kind(agent), **agent.config.to_dict()},
        checks={"passed": True},
    )
    checkpoint_activate(checkpoint=checkpoint)
    return checkpoint.version


# ---------------------------------------------------------------------------
# The servers
# ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return (
        f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


def server_env(static_root: str, *, carousels: bool) -> dict[str, str]:
    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        # Production settings refuse a weak key; a fresh one per run is never reused.
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_STATIC_ROOT": static_root,
        "DATABASE_URL": database_url(),
        "DJANGO_LOG_LEVEL": "WARNING",
        # Plain HTTP straight to gunicorn, as behind the TLS-terminating proxy,
        # but with no proxy to say so: no redirect to https, cookies over http.
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SECURE_COOKIES": "false",
        # Every virtual shopper comes from one address and clicks faster than a
        # person: lift the per-session and per-address limits.
        **{
            f"API_{scope}_THROTTLE": "1000000/min"
            for scope in (
                "EVENTS",
                "EVENTS_ADDRESS",
                "RECOMMENDATIONS",
                "RECOMMENDATIONS_ADDRESS",
                "CART",
                "CART_ADDRESS",
            )
        },
        "SHOP_CAROUSEL_PROVIDER": settings.SHOP_CAROUSEL_PROVIDER if carousels else "",
    }
    if settings.REDIS_URL:
        env["REDIS_URL"] = settings.REDIS_URL
    return env


def collect_static(static_root: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env=server_env(static_root, carousels=False),
        check=True,
    )


@contextmanager
def servers(static_root: str, workers: int, log_dir: str):
    """Two gunicorn servers on the bench database: "on" with carousels, "off" without."""
    started: dict[str, tuple[str, subprocess.Popen]] = {}
    try:
        for mode in ("on", "off"):
            port = free_port()
            log = open(Path(log_dir) / f"gunicorn-{mode}.log", "ab")  # noqa: SIM115
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "config/gunicorn.py",
                    "config.wsgi:application",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    str(workers),
                    "--timeout",
                    "60",
                    "--access-logfile",
                    "-",
                ],
                cwd=ROOT,
                env=server_env(static_root, carousels=mode == "on"),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            started[mode] = (f"http://127.0.0.1:{port}", process)
        for base, process in started.values():
            wait_until_up(base, process, workers)
        yield (
            {mode: base for mode, (base, _) in started.items()},
            {mode: process.pid for mode, (_, process) in started.items()},
        )
    finally:
        for _, process in started.values():
            process.send_signal(signal.SIGTERM)
        for _, process in started.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_up(base: str, process: subprocess.Popen, workers: int, timeout: float = 60) -> None:
    """Until the server answers and all its ``workers`` are forked: one
    answers before the master has forked the others, and the CPU and memory
    of each phase are read from the workers listed once it is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200 and len(workers_of(process.pid)) == workers:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn at {base} did not answer in {timeout:.0f} s")


def workers_of(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def process_memory(pid: int) -> dict:
    """A process's resident memory (RSS), the part of it no other process
    shares (private: what another worker would add) and its proportional
    share (PSS: shared pages divided among the processes mapping them), in
    MB, and whether torch is mapped into it."""
    kb = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        kb[name.rstrip(":")] = int(value)
    return {
        "pid": pid,
        "rss_mb": kb["Rss"] / 1024,
        "pss_mb": kb["Pss"] / 1024,
        "private_mb": (kb["Private_Clean"] + kb["Private_Dirty"]) / 1024,
        "torch": "libtorch" in Path(f"/proc/{pid}/maps").read_text(),
    }


def server_memory(master: int) -> dict:
    """``process_memory`` of a gunicorn server's workers and of its master,
    which loads the application before forking them (config/gunicorn.py)."""
    return {
        "workers": [process_memory(pid) for pid in workers_of(master)],
        "master": process_memory(master),
    }


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------


def drive(plan: dict) -> dict:
    """Run the load generator in its own process."""
    result = subprocess.run(
        [sys.executable, "-m", "bench._load_client"],
        cwd=ROOT,
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the load generator failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def plan_phases(args: argparse.Namespace, pages: tuple[str, ...], *, warmup: float) -> list[dict]:
    phases = [
        {"endpoint": endpoint, "server": server, "seconds": warmup, "warmup": True}
        for endpoint in pages
        for server in ("on", "off")
    ]
    for round_ in range(args.rounds):
        for endpoint in pages:
            order = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            phases += [
                {"endpoint": endpoint, "server": s, "seconds": args.seconds, "round": round_}
                for s in order
            ]
    return phases


def summarize(phases: list[dict]) -> dict:
    """Throughput and latency per (endpoint, server), and per-round ratios."""
    measured = [p for p in phases if not p.get("warmup")]
    stats: dict[str, dict] = {}
    for key in sorted({(p["endpoint"], p["server"]) for p in measured}):
        group = [p for p in measured if (p["endpoint"], p["server"]) == key]
        latencies = sorted(x for p in group for x in p["latencies_ms"])
        requests = sum(p["requests"] for p in group)
        stats[f"{key[0]}/{key[1]}"] = {
            "endpoint": key[0],
            "server": key[1],
            "requests": requests,
            "errors": sum(p["errors"] for p in group),
            "rps": requests / sum(p["elapsed"] for p in group),
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "cpu_ms": cpu_per_request(group, requests),
        }
    ratios = {}
    for endpoint in {p["endpoint"] for p in measured}:
        on, off = stats.get(f"{endpoint}/on"), stats.get(f"{endpoint}/off")
        if not (on and off):
            continue
        rounds = []
        for round_ in sorted({p["round"] for p in measured if p["endpoint"] == endpoint}):
            rps = {
                p["server"]: p["requests"] / p["elapsed"]
                for p in measured
                if p["endpoint"] == endpoint and p["round"] == round_
            }
            rounds.append(rps["on"] / rps["off"])
        ratios[endpoint] = {"ratio": on["rps"] / off["rps"], "rounds": rounds}
        if on["cpu_ms"] and off["cpu_ms"]:
            # What the ratio would be if the web workers had cores of their own.
            ratios[endpoint]["web_cpu"] = off["cpu_ms"]["web"] / on["cpu_ms"]["web"]
    return {"stats": stats, "ratios": ratios}


def cpu_per_request(phases: list[dict], requests: int) -> dict[str, float] | None:
    """Mean CPU milliseconds per request by role (the load generator's
    ``CPU_ROLES``) over ``phases``; None where the machine has no /proc."""
    if not requests or any(p.get("cpu_s") is None for p in phases):
        return None
    return {
        role: sum(p["cpu_s"][role] for p in phases) * 1000 / requests for role in phases[0]["cpu_s"]
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


# ---------------------------------------------------------------------------
# In-process measurements
# ---------------------------------------------------------------------------


def shopper_in_process(address: str, cart_products: list[int]):
    """A test client with a session of its own, from ``address``, with two of
    ``cart_products`` in its cart (as each virtual shopper has)."""
    from django.test import Client

    client = Client(REMOTE_ADDR=address)
    client.get("/api/v1/cart/")
    for product_id in cart_products[:2]:
        client.post(
            "/api/v1/cart/items/",
            {"product_id": product_id, "quantity": 1},
            content_type="application/json",
        )
    return client


def queries_per_request(product_slug: str, cart_products: list[int]) -> dict[str, int]:
    """SQL queries of one steady-state request per endpoint, carousels on and off."""
    from django.conf import settings
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext, override_settings

    from recommender.serving.server import policy_server

    # An address of its own (TEST-NET): the servers' traffic from 127.0.0.1
    # has just spent that address's budgets in the shared cache.
    client = shopper_in_process("192.0.2.1", cart_products)
    paths = {
        "home": "/",
        "product": f"/p/{product_slug}/",
        "cart": "/cart/",
        "api": "/api/v1/recommendations/?slot=home",
    }
    counts: dict[str, int] = {}
    for server, provider in (("on", settings.SHOP_CAROUSEL_PROVIDER), ("off", "")):
        with override_settings(SHOP_CAROUSEL_PROVIDER=provider):
            for endpoint, path in paths.items():
                if endpoint == "api" and server == "off":
                    continue
                client.get(path)  # warm: policy loaded, candidates cached
                reset_queries()
                with CaptureQueriesContext(connection) as queries:
                    response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)
                counts[f"{endpoint}/{server}"] = len(queries)
    policy_server.refresh()
    return counts


# What ``carousel_parts`` times, by the name it prints: the module attribute a
# carousel request looks each part up by.
CAROUSEL_PARTS = {
    "throttle": ("recommender.serving.carousels", "allows"),
    # On a product page, with the page's view it records.
    "state": ("recommender.serving.features", "session_state"),
    "policy": ("recommender.serving.server", "policy_server.recommend"),
    "log": ("recommender.serving.recommendations", "impression_log"),
}


def carousel_parts(
    product_slugs: list[str],
    cart_products: list[int],
    requests: int,
    *,
    model: bool = True,
    floor: bool = False,
) -> dict:
    """Where a carousel's time goes, in this process: per page, the mean wall
    time of a request without and with the carousel, and of each part of the
    carousel (CAROUSEL_PARTS); "other" is the rest of the difference (building
    its items, rendering them, ``recommend``'s own code). One client, one
    request at a time, so these are costs, not throughput.

    ``model=False``: the carousels serve the popularity fallback, as with no
    checkpoint active: what a carousel costs whatever its policy (the state
    read, the logged impression, the throttle, its items).

    ``floor=True``: the least a carousel can cost while every slate it serves
    is logged in the request with its propensities, in one statement: no
    budget counted, no state read (nor the product page's view), no policy
    (the first eligible candidates, each logged with propensity 1), only the
    impression's statement and the items' rendering."""
    import importlib
    from contextlib import ExitStack
    from unittest import mock

    from django.conf import settings
    from django.test.utils import override_settings

    from recommender.serving.server import policy_server

    client = shopper_in_process("192.0.2.2", cart_products)
    spent = dict.fromkeys(CAROUSEL_PARTS, 0.0)

    def timed(name, function):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return call

    def page_path(page: str, i: int) -> str:
        if page == "product":
            return f"/p/{product_slugs[i % len(product_slugs)]}/"
        return {"home": "/", "cart": "/cart/"}[page]

    # One client sends every request: lift the per-visit and per-address budgets
    # (the throttle still makes its round trip, as it does for every carousel).
    framework = dict(settings.REST_FRAMEWORK)
    framework["DEFAULT_THROTTLE_RATES"] = dict.fromkeys(
        framework["DEFAULT_THROTTLE_RATES"], "1000000/min"
    )
    providers = {"off": "", "on": settings.SHOP_CAROUSEL_PROVIDER}
    block = 10  # requests per server in turn, on and off alternating, as the load phases do
    results = {}
    with ExitStack() as patches:
        if not model:
            patches.enter_context(mock.patch.object(policy_server, "active_policy", lambda _: None))
        if floor:
            _patch_to_floor(patches)
        for name, (module, attribute) in CAROUSEL_PARTS.items():
            owner = importlib.import_module(module)
            *path, leaf = attribute.split(".")
            for step in path:
                owner = getattr(owner, step)
            patches.enter_context(mock.patch.object(owner, leaf, timed(name, getattr(owner, leaf))))
        for page in PAGES:
            elapsed = dict.fromkeys(providers, 0.0)

            def run(server: str, first: int, page: str = page) -> float:
                with override_settings(
                    SHOP_CAROUSEL_PROVIDER=providers[server], REST_FRAMEWORK=framework
                ):
                    started = time.perf_counter()
                    for i in range(first, first + block):
                        response = client.get(page_path(page, i))
                        assert response.status_code == 200, (page, response.status_code)
                    return time.perf_counter() - started

            for server in providers:  # warm: policy loaded, candidates cached
                run(server, 0)
            spent.update(dict.fromkeys(spent, 0.0))
            rounds = max(1, requests // block)
            for round_ in range(rounds):
                for server in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                    elapsed[server] += run(server, round_ * block)
            measured = rounds * block
            row = {server: seconds * 1000 / measured for server, seconds in elapsed.items()}
            row.update({name: seconds * 1000 / measured for name, seconds in spent.items()})
            row["other"] = row["on"] - row["off"] - sum(row[name] for name in spent)
            results[page] = row
    return results


def _patch_to_floor(patches) -> None:
    """``carousel_parts(floor=True)``: every part but the impression's
    statement and the rendering replaced by what costs next to nothing."""
    from unittest import mock

    import numpy as np

    from recommender.rl.types import Observation, Slate
    from recommender.serving import carousels, features
    from recommender.serving.server import POLICY_POPULARITY, ServedSlate, policy_server

    def fixed_slate(observation, *, k, exclude, rng, fresh=False) -> ServedSlate:
        candidates = policy_server.candidates(reload_catalog=fresh)
        items = [int(i) for i in candidates.ids[: k + len(exclude)] if int(i) not in exclude][:k]
        slate = Slate(
            items=np.asarray(items, dtype=np.int64),
            propensities=np.ones(len(items)),
            scores=np.zeros(len(items), dtype=np.float32),
        )
        return ServedSlate(slate, POLICY_POPULARITY, None, 0.0, candidates.sold_out_id)

    def empty_state(*, slot, product_id=None, **kwargs) -> features.SessionState:
        return features.SessionState(
            Observation(slot=features.SLOT_BY_NAME[slot], current_item=product_id)
        )

    patches.enter_context(mock.patch.object(carousels, "allows", lambda request, budget: True))
    patches.enter_context(mock.patch.object(carousels, "record_page_view", lambda *a, **k: None))
    patches.enter_context(mock.patch.object(features, "session_state", empty_state))
    patches.enter_context(mock.patch.object(policy_server, "recommend", fixed_slate))


def refresh_costs(runs: int = 10) -> dict[str, float]:
    """What keeping the candidate list fresh costs a web process: a refresh
    every RECOMMENDER_ELIGIBILITY_TTL seconds (the catalog unchanged), the
    whole catalog's reload (when products are added or retired), and for
    comparison reading every product's stock (what each refresh did before)."""
    from django.test.utils import override_settings

    from recommender.serving.server import PolicyServer
    from shop.models import Product

    server = PolicyServer()
    started = time.perf_counter()
    server.candidates()
    reload_ms = (time.perf_counter() - started) * 1000
    timings = []
    with override_settings(RECOMMENDER_ELIGIBILITY_TTL=0):
        for _ in range(runs):
            started = time.perf_counter()
            server.candidates()
            timings.append((time.perf_counter() - started) * 1000)
    full = []
    for _ in range(3):
        started = time.perf_counter()
        list(
            Product.objects.filter(is_active=True)
            .order_by("pk")
            .values_list("pk", "units_sold", "stock")
        )
        full.append((time.perf_counter() - started) * 1000)
    return {
        "refresh_ms": statistics.median(timings),
        "catalog_reload_ms": reload_ms,
        "read_every_product_ms": statistics.median(full),
    }


def logged_rows(expected: dict, event_ids: list[str]) -> dict:
    """What the servers stored against what the load generator was answered."""
    from recommender.models import Event, EventType, Impression, ImpressionItem

    server = Event.objects.filter(source=Event.Source.SERVER)
    impressions = Impression.objects.count()
    return {
        "impressions": (expected["impressions"], impressions),
        "impressions_with_items": (
            impressions,
            ImpressionItem.objects.values("impression_id").distinct().count(),
        ),
        "server views": (expected["server_views"], server.filter(type=EventType.VIEW).count()),
        "server clicks": (expected["server_clicks"], server.filter(type=EventType.CLICK).count()),
        "client events": (
            expected["client_events"],
            Event.objects.filter(event_id__in=event_ids, source=Event.Source.CLIENT).count(),
        ),
        "add-to-carts": (
            expected["add_to_cart"],
            server.filter(type=EventType.ADD_TO_CART).count(),
        ),
    }


def log_costs(*, train: bool) -> dict:
    """Bytes per logged row, and build_transitions (and a training run) on the run's logs."""
    from django.test.utils import override_settings
    from django.utils import timezone

    from recommender.learning.training import policy_train, transitions_build
    from recommender.models import Event, Impression, ImpressionItem, Transition

    tables = {
        "impression": Impression,
        "impression item": ImpressionItem,
        "event": Event,
        "transition": Transition,
    }
    started = time.perf_counter()
    built = transitions_build(now=timezone.now() + timedelta(hours=2))
    build_s = time.perf_counter() - started
    costs: dict = {
        "build_transitions": {
            "impressions": built.impressions,
            "transitions": built.created,
            "seconds": build_s,
        }
    }
    sizes = {}
    with connection_cursor() as cursor:
        for name, model in tables.items():
            table = connection_quote(model._meta.db_table)
            cursor.execute(
                f"SELECT count(*), avg(pg_column_size(t.*)), pg_total_relation_size(%s) "
                f"FROM {table} t",
                [model._meta.db_table],
            )
            rows, tuple_bytes, total = cursor.fetchone()
            sizes[name] = {
                "rows": rows,
                # The row's own data (independent of the volume) ...
                "tuple_bytes": float(tuple_bytes or 0),
                # ... and the table with its indexes per row (at small volumes
                # inflated by pages every index has however few rows it holds).
                "bytes_per_row": total / rows if rows else float("nan"),
            }
    costs["storage"] = sizes
    if train:
        with override_settings(RECOMMENDER_MIN_TRANSITIONS=1, RECOMMENDER_AUTO_ACTIVATE=False):
            started = time.perf_counter()
            run = policy_train(triggered_by="bench")
            costs["training"] = {
                "seconds": time.perf_counter() - started,
                "steps": run.steps,
                "replay": run.replay_size,
                "status": run.status,
            }
    return costs


# ---------------------------------------------------------------------------
# One catalog size
# ---------------------------------------------------------------------------


def measure(
    args: argparse.Namespace, size: int, static_root: str, log_dir: str, *, pages, warmup
) -> dict:
    from shop.models import Product

    sample = list(
        Product.objects.filter(is_active=True, stock__gt=0)
        .order_by("?")
        .values_list("pk", "slug")[:300]
    )
    plan = {
        "shoppers": args.shoppers,
        "seed": size,
        "products": sample,
        "cart_products": [pk for pk, _ in sample[:40]],
        "phases": plan_phases(args, pages, warmup=warmup),
    }
    if pages == PAGES:
        # The endpoints that exist only with the recommender: the API, and a
        # shopper's journey that clicks a carousel and sends client events.
        plan["phases"] += [
            {"endpoint": endpoint, "server": "on", "seconds": args.seconds, "round": 0}
            for endpoint in ("api", "journey")
        ]
    with servers(static_root, args.workers, log_dir) as (urls, masters):
        plan["servers"] = urls
        plan["workers"] = {mode: workers_of(pid) for mode, pid in masters.items()}
        result = drive(plan)
        memory = {mode: server_memory(pid) for mode, pid in masters.items()}
    summary = summarize(result["phases"])
    return {
        "products": size,
        **summary,
        "memory": memory,
        "expected": result["expected"],
        "event_ids": result["event_ids"],
        "sample": sample,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_django()
    from django.conf import settings
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    from recommender.serving.server import policy_server

    if connection.vendor != "postgresql":
        print("bench.load needs PostgreSQL: set DATABASE_URL=postgres://...", file=sys.stderr)
        return 2
    began = time.perf_counter()
    stages: dict[str, float] = {}

    def stage(name: str) -> None:
        stages[name] = time.perf_counter() - began - sum(stages.values())

    db = connection.settings_dict
    db.setdefault("TEST", {})["NAME"] = f"bench_load_{db['NAME']}"
    old_config = setup_databases(verbosity=0, interactive=False)
    rng = random.Random(1)
    sizes = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            static_root = str(Path(tmp) / "static")
            collect_static(static_root)
            seed_products(args.products, start=1, rng=rng)
            publish_checkpoint()
            stage("setup")
            small = measure(
                args,
                args.products,
                static_root,
                tmp,
                pages=PAGES,
                warmup=0.5 if args.quick else 1.0,
            )
            # Before anything in this process logs rows of its own.
            small["logged"] = logged_rows(small["expected"], small["event_ids"])
            small["queries"] = queries_per_request(
                small["sample"][0][1], [pk for pk, _ in small["sample"][:2]]
            )
            small["refresh"] = refresh_costs()
            slugs = [slug for _, slug in small["sample"][:50]]
            in_cart = [pk for pk, _ in small["sample"][2:4]]
            requests = 50 if args.quick else 200
            small["parts"] = carousel_parts(slugs, in_cart, requests)
            small["parts_without_model"] = carousel_parts(slugs, in_cart, requests, model=False)
            small["parts_floor"] = carousel_parts(slugs, in_cart, requests, floor=True)
            stage(f"{args.products:,} products")
            costs = log_costs(train=not args.quick)
            stage("log costs")
            sizes.append(small)

            if args.large > args.products:
                seed_products(args.large - args.products, start=args.products + 1, rng=rng)
                # A model that knows every product, as a store's would after its
                # next training run: its checkpoint, and what a worker holds, grow
                # with the catalog.
                publish_checkpoint()
                policy_server.refresh()
                large = measure(args, args.large, static_root, tmp, pages=("home",), warmup=5.0)
                large["refresh"] = refresh_costs()
                sizes.append(large)
                stage(f"{args.large:,} products")
    finally:
        teardown_databases(old_config, verbosity=0)
    stage("teardown")
    report(args, sizes, costs, stages, settings)
    return 0


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def report(args, sizes: list[dict], costs: dict, stages: dict[str, float], settings) -> None:
    ttl = settings.RECOMMENDER_ELIGIBILITY_TTL
    print(
        f"Store pages under gunicorn (production settings, {args.workers} sync workers per "
        f"server), {args.shoppers} virtual shoppers, {args.rounds} round(s) of "
        f"{args.seconds:g} s per page and server, interleaved"
    )
    met = True
    for size in sizes:
        print(f"\n{size['products']:,} products")
        queries = size.get("queries", {})
        print(
            f"  {'endpoint':<9} {'server':<7} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'queries':>7}"
        )
        for key, s in size["stats"].items():
            print(
                f"  {s['endpoint']:<9} {s['server']:<7} {s['rps']:>7.1f} {s['p50_ms']:>7.1f} "
                f"{s['p99_ms']:>7.1f} {s['errors']:>6} {queries.get(key, ''):>7}"
            )
        for endpoint, r in size["ratios"].items():
            rounds = ", ".join(f"{x:.2f}" for x in r["rounds"])
            ok = r["ratio"] >= TARGET_RATIO
            met &= ok
            print(
                f"  {endpoint} with carousel / without: {r['ratio']:.2f} (rounds: {rounds}) "
                f"-> {'met' if ok else 'NOT met'} (target >= {TARGET_RATIO})"
            )
        cpu = {key: s["cpu_ms"] for key, s in size["stats"].items() if s["cpu_ms"]}
        if cpu:
            roles = list(next(iter(cpu.values())))
            print(
                "  CPU per request by role (ms; the load generator, database and cache "
                "share this machine's cores with the web workers):"
            )
            print(
                f"  {'endpoint':<9} {'server':<7} "
                + " ".join(f"{role:>14}" for role in roles)
                + f" {'all':>7}"
            )
            for key, row in cpu.items():
                endpoint, server = key.split("/")
                print(
                    f"  {endpoint:<9} {server:<7} "
                    + " ".join(f"{row[role]:>14.2f}" for role in roles)
                    + f" {sum(row.values()):>7.2f}"
                )
            for endpoint, r in size["ratios"].items():
                if "web_cpu" in r:
                    print(
                        f"  {endpoint}: web workers' CPU per request without the carousel / "
                        f"with it: {r['web_cpu']:.2f} (the ratio a web tier with cores of "
                        "its own would see)"
                    )
        for mode, server in size["memory"].items():
            workers = ", ".join(
                f"{w['rss_mb']:.0f} MB ({w['private_mb']:.0f} private, PSS {w['pss_mb']:.0f}"
                f"{', torch' if w['torch'] else ''})"
                for w in server["workers"]
            )
            master = server["master"]
            print(
                f"  memory, carousels {mode}: workers' RSS {workers}; master's RSS "
                f"{master['rss_mb']:.0f} MB ({master['private_mb']:.0f} private"
                f"{', torch imported' if master['torch'] else ''})"
            )
        for key, title in (
            ("parts", "where a carousel's time goes"),
            ("parts_without_model", "the same with no model (the popularity fallback)"),
            (
                "parts_floor",
                "the floor: no budget, state or policy, only a fixed slate logged in one "
                "statement and rendered",
            ),
        ):
            if key not in size:
                continue
            names = [*CAROUSEL_PARTS, "other"]
            print(
                f"  {title}, one request at a time in the benchmark's process "
                "(mean ms per request; ratio: without / with):"
            )
            print(
                f"  {'page':<9} {'without':>7} {'with':>7} {'ratio':>6} "
                + " ".join(f"{name:>8}" for name in names)
            )
            for page, row in size[key].items():
                print(
                    f"  {page:<9} {row['off']:>7.2f} {row['on']:>7.2f} "
                    f"{row['off'] / row['on']:>6.2f} "
                    + " ".join(f"{row[name]:>8.2f}" for name in names)
                )
        refresh = size["refresh"]
        home = size["stats"].get("home/on")
        per_worker = home["rps"] / args.workers if home else float("nan")
        per_request = refresh["refresh_ms"] / (ttl * per_worker) if ttl else float("nan")
        size["refresh"]["per_request_ms"] = per_request
        print(
            f"  candidate refresh: {refresh['refresh_ms']:.2f} ms every {ttl:g} s per worker "
            f"= {per_request:.3f} ms per request on average at {per_worker:.0f} req/s per worker; "
            f"catalog reload {refresh['catalog_reload_ms']:.0f} ms (when products are added or "
            f"retired); reading every product's stock {refresh['read_every_product_ms']:.1f} ms"
        )
    logged = sizes[0]["logged"]
    lossless = all(sent == stored for sent, stored in logged.values())
    print(f"\nLogged by the {sizes[0]['products']:,}-product run (answered -> stored):")
    for name, (sent, stored) in logged.items():
        print(f"  {name:<24} {sent:>7} -> {stored:>7}{'' if sent == stored else '  MISMATCH'}")
    print(f"  nothing lost: {'yes' if lossless else 'NO'}")
    build = costs["build_transitions"]
    print(
        f"build_transitions: {build['impressions']:,} impressions -> {build['transitions']:,} "
        f"transitions in {build['seconds']:.2f} s"
    )
    for name, s in costs["storage"].items():
        print(
            f"  {name:<16} {s['rows']:>8,} rows  {s['tuple_bytes']:>6.0f} bytes/row of data, "
            f"{s['bytes_per_row']:>6.0f} with its indexes"
        )
    if "training" in costs:
        t = costs["training"]
        print(
            f"training run: {t['steps']} steps over {t['replay']:,} transitions in "
            f"{t['seconds']:.1f} s ({t['status']})"
        )
    print(
        f"\ntarget: every page >= {TARGET_RATIO} of itself without the carousel -> {'met' if met else 'NOT met'}"
    )
    print(
        f"({sum(stages.values()):.0f} s: "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items())
        + ")"
    )
    if args.json:
        for size in sizes:
            size.pop("event_ids", None)
            size.pop("sample", None)
        print(
            json.dumps(
                {
                    "benchmark": "load",
                    "sizes": sizes,
                    "log_costs": costs,
                    "target_ratio": TARGET_RATIO,
                    "target_met": met,
                    "nothing_lost": lossless,
                    "stages_s": stages,
                },
                default=str,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
