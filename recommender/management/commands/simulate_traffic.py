"""Drive a running store with simulated shoppers over real HTTP."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.simulation.traffic import (
    HttpShopClient,
    ShopperDriver,
    TrafficStats,
    shopper_seeds,
    store_simulator,
)


class Command(BaseCommand):
    help = (
        "Send simulated shoppers (the RL core's shopper model) through a running store's API: "
        "carousels, clicks, add-to-carts and checkouts, so the recommender has live data to learn from."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="The running store."
        )
        parser.add_argument("--sessions", type=int, default=200)
        parser.add_argument("--seed", type=int, default=0, help="Shopper population and draws.")
        parser.add_argument("--k", type=int, default=8, help="Carousel size to request.")
        parser.add_argument(
            "--family",
            default="funnel",
            help="Shopper family to simulate (recommender.rl.simulator.families; default funnel).",
        )

    def handle(
        self, *args, base_url: str, sessions: int, seed: int, k: int, family: str, **options
    ) -> None:
        import requests

        try:
            simulator = store_simulator(seed=seed, family=family)
        except (RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        total = TrafficStats()
        seeds = shopper_seeds(seed, sessions)
        progress = tqdm(seeds, desc="sessions", unit="session", disable=options["verbosity"] == 0)
        for number, shopper_seed in enumerate(progress):
            driver = ShopperDriver(HttpShopClient(base_url), k=k)
            try:
                total.merge(
                    driver.run(simulator.new_shopper(int(shopper_seed)), session_number=number)
                )
            except requests.ConnectionError as exc:
                raise CommandError(f"Cannot reach the store at {base_url}: {exc}") from exc
            progress.set_postfix(
                {name: f"{tally.ctr:.1%}" for name, tally in sorted(total.policies.items())[-3:]}
            )
        self.stdout.write(render_stats(total))
        fail_if_refused(total)


def fail_if_refused(stats: TrafficStats) -> None:
    """Exit non-zero when the store refused requests: the traffic did not reach it."""
    summary = stats.refusal_summary()
    if summary:
        raise CommandError(summary)


def render_stats(stats: TrafficStats) -> str:
    lines = [
        f"{stats.sessions} sessions, {stats.requests} requests ({stats.errors} refused), "
        f"{stats.add_to_carts} add-to-carts, {stats.orders} orders",
        f"{'policy':<16} {'carousels':>10} {'clicks':>8} {'CTR':>7}",
    ]
    for name, tally in sorted(stats.policies.items()):
        lines.append(f"{name:<16} {tally.carousels:>10} {tally.clicks:>8} {tally.ctr:>7.1%}")
    return "\n".join(lines)
