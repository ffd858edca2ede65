"""The load generator of ``bench.load``: a separate process that drives the
store over HTTP with virtual shoppers (aiohttp, asyncio), so that its own work
is not counted in the web workers' time.

Reads a plan (JSON) on stdin and prints its results (JSON) on stdout::

    {"servers": {"on": URL, "off": URL}, "shoppers": 8, "seed": 1,
     "products": [[id, slug], ...], "cart_products": [id, ...],
     "phases": [{"endpoint": "home", "server": "on", "seconds": 5}, ...],
     "workers": {"on": [pid, ...], "off": [pid, ...]}}

Each shopper keeps its own cookies (one session, shared by both servers: they
serve the same database) and puts two products in its cart first. Endpoints:

- ``home``, ``product``, ``cart``: the HTML pages (a random product's page);
- ``api``: GET /api/v1/recommendations/?slot=home;
- ``journey``: the HTML home page, then its first carousel link (the server
  records the click), then a client view event and a client click event on an
  API recommendation, as a shopper's browser would send them.

For every phase: completed requests, errors, wall time and latencies, and the
CPU time the phase took by role (``CPU_ROLES``, from /proc where there is
one): what the requests cost the whole machine, not only the web workers.
Totals of what the servers should have stored (impressions, events by kind)
let the benchmark check that nothing was lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
import time
import uuid

import aiohttp

# Who spent the machine's CPU in a phase: the phase's web workers, the
# database and cache servers (every process of that name on the machine: only
# the benchmark loads them), and this process.
CPU_ROLES = ("web", "database", "cache", "load generator")
_SERVER_ROLES = {"postgres": "database", "redis-server": "cache"}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

CAROUSEL_LINK = re.compile(rb'href="(/p/[^"?]+/\?imp=[0-9a-f-]+)"')
PAGES = ("home", "product", "cart")


class Shopper:
    def __init__(self, connector: aiohttp.BaseConnector, plan: dict, rng: random.Random) -> None:
        self.session = aiohttp.ClientSession(
            connector=connector,
            connector_owner=False,
            # unsafe: keep cookies of an IP address host (127.0.0.1)
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.plan = plan
        self.rng = rng
        self.sent_event_ids: list[str] = []

    def csrf(self) -> dict[str, str]:
        token = next((c.value for c in self.session.cookie_jar if c.key == "csrftoken"), "")
        return {"X-CSRFToken": token}

    async def setup(self, base: str, expected: dict) -> None:
        """A session, a CSRF cookie and two products in the cart."""
        await self.get(base, "/api/v1/cart/")
        for product_id in self.rng.sample(self.plan["cart_products"], 2):
            async with self.session.post(
                base + "/api/v1/cart/items/",
                json={"product_id": product_id, "quantity": 1},
                headers=self.csrf(),
            ) as response:
                await response.read()
                if response.status == 201:
                    expected["add_to_cart"] += 1

    async def get(self, base: str, path: str) -> tuple[int, bytes]:
        async with self.session.get(base + path) as response:
            return response.status, await response.read()

    async def post_event(self, base: str, payload: dict) -> int:
        async with self.session.post(
            base + "/api/v1/events/", json=payload, headers=self.csrf()
        ) as response:
            await response.read()
            return response.status

    async def one(self, endpoint: str, server: str, base: str, expected: dict) -> bool:
        """One request (or journey) of ``endpoint``; whether it succeeded."""
        carousel = server == "on"
        if endpoint in PAGES:
            if endpoint == "home":
                path = "/"
            elif endpoint == "cart":
                path = "/cart/"
            else:
                path = f"/p/{self.rng.choice(self.plan['products'])[1]}/"
            status, _ = await self.get(base, path)
            if status == 200 and carousel:
                expected["impressions"] += 1
                expected["server_views"] += endpoint == "product"
            return status == 200
        if endpoint == "api":
            status, _ = await self.get(base, "/api/v1/recommendations/?slot=home")
            expected["impressions"] += status == 200
            return status == 200
        # journey: home page, its first carousel link, then client events
        status, body = await self.get(base, "/")
        if status != 200:
            return False
        expected["impressions"] += carousel
        link = CAROUSEL_LINK.search(body)
        if link:
            status, _ = await self.get(base, link.group(1).decode())
            if status != 200:
                return False
            expected["impressions"] += carousel
            expected["server_views"] += carousel
            expected["server_clicks"] += carousel
        status, body = await self.get(base, "/api/v1/recommendations/?slot=home")
        if status != 200:
            return False
        expected["impressions"] += 1
        items = json.loads(body)["items"]
        if not items:
            return True
        product_id = items[0]["product"]["id"]
        for payload in (
            {"type": "view", "product_id": product_id},
            {
                "type": "click",
                "product_id": product_id,
                "impression_id": json.loads(body)["impression_id"],
            },
        ):
            event_id = str(uuid.uuid4())
            status = await self.post_event(base, {"event_id": event_id, **payload})
            if status != 201:
                return False
            self.sent_event_ids.append(event_id)
            expected["client_events"] += 1
        return True


def cpu_seconds(web: list[int]) -> dict[str, float] | None:
    """CPU seconds (user + system) each role has used so far; None without
    /proc. A process's count includes its children that have exited: a
    database backend that ends during a phase leaves its time to the
    postmaster, so the sum never goes back."""
    if not os.path.isdir("/proc/self"):
        return None
    spent = dict.fromkeys(CPU_ROLES, 0.0)
    roles = {pid: "web" for pid in web} | {os.getpid(): "load generator"}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                text = stat.read().decode()
        except OSError:  # gone meanwhile
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :]
        role = roles.get(int(entry.name)) or _SERVER_ROLES.get(name)
        if role is not None:
            # stat fields 14 to 17: utime, stime, and those of reaped children
            spent[role] += sum(map(int, fields.split()[11:15])) / _CLOCK_TICKS
    return spent


async def run_phase(
    shoppers: list[Shopper], phase: dict, base: str, expected: dict, web: list[int]
) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + phase["seconds"]
    latencies: list[float] = []
    errors = 0

    async def drive(shopper: Shopper) -> None:
        nonlocal errors
        while loop.time() < deadline:
            started = time.perf_counter()
            try:
                ok = await shopper.one(phase["endpoint"], phase["server"], base, expected)
            except aiohttp.ClientError:
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    cpu_before = cpu_seconds(web)
    started = time.perf_counter()
    await asyncio.gather(*(drive(s) for s in shoppers))
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(web)
    return {
        **phase,
        "elapsed": elapsed,
        "cpu_s": cpu_after and {role: cpu_after[role] - cpu_before[role] for role in CPU_ROLES},
        "requests": len(latencies),
        "errors": errors,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
    }


async def main(plan: dict) -> dict:
    rng = random.Random(plan.get("seed", 1))
    expected = dict.fromkeys(
        ("impressions", "server_views", "server_clicks", "client_events", "add_to_cart"), 0
    )
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    shoppers = [
        Shopper(connector, plan, random.Random(rng.random())) for _ in range(plan["shoppers"])
    ]
    try:
        on = plan["servers"]["on"]
        await asyncio.gather(*(s.setup(on, expected) for s in shoppers))
        phases = []
        for phase in plan["phases"]:
            base = plan["servers"][phase["server"]]
            web = plan.get("workers", {}).get(phase["server"], [])
            phases.append(await run_phase(shoppers, phase, base, expected, web))
    finally:
        for shopper in shoppers:
            await shopper.session.close()
        await connector.close()
    return {
        "phases": phases,
        "expected": expected,
        "event_ids": [e for s in shoppers for e in s.sent_event_ids],
    }


if __name__ == "__main__":
    json.dump(asyncio.run(main(json.load(sys.stdin))), sys.stdout)
