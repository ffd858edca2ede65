"""Lay a simulated shopping history over the past days and train on it, so a
fresh demo store starts with data, a learning curve and an active policy."""

from datetime import timedelta

import time_machine
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from recommender.management.commands.simulate_traffic import fail_if_refused, render_stats
from recommender.models import Impression
from recommender.serving import policy_server
from recommender.stats import stats_rollup
from recommender.traffic import (
    InProcessShopClient,
    ShopperDriver,
    TrafficStats,
    shopper_seeds,
    store_simulator,
)
from recommender.training import TrainerBusy, policy_train, target_sync, transitions_build


class Command(BaseCommand):
    help = (
        "Simulate shopper sessions spread over the past days through the store's full request "
        "stack (clock moved back), training the policy every --train-every sessions."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--sessions", type=int, default=1000)
        parser.add_argument("--days", type=float, default=3.0)
        parser.add_argument("--train-every", type=int, default=250)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--force", action="store_true", help="Add history even if some exists.")

    def handle(self, *args, sessions, days, train_every, seed, force, **options) -> None:
        if Impression.objects.exists() and not force:
            self.stdout.write("History already present; nothing to do (use --force to add more).")
            return
        try:
            simulator = store_simulator(seed=seed)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        # Thousands of in-process requests: don't keep every SQL query in memory.
        settings.DEBUG = False
        end = timezone.now()
        start = end - timedelta(days=days)
        spacing = (end - start) / max(sessions, 1)
        total = TrafficStats()
        seeds = shopper_seeds(seed, sessions)
        quiet = options["verbosity"] == 0
        with time_machine.travel(start, tick=False) as traveller:
            # The clock is moved back, so tqdm's rates would be nonsense: counts only.
            progress = tqdm(
                seeds,
                desc="simulated sessions",
                disable=quiet,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {postfix}",
            )
            for number, shopper_seed in enumerate(progress):
                traveller.move_to(start + spacing * number)
                driver = ShopperDriver(InProcessShopClient(), on_clock=traveller.shift)
                total.merge(
                    driver.run(simulator.new_shopper(int(shopper_seed)), session_number=number)
                )
                if (number + 1) % train_every == 0:
                    progress.set_postfix_str(self._train())
            traveller.move_to(end)
            self._train()
        stats_rollup(since=start - timedelta(hours=1), until=timezone.now())
        self.stdout.write(render_stats(total))
        fail_if_refused(total)

    def _train(self) -> str:
        transitions_build()
        try:
            run = policy_train(triggered_by="seed_history")
            target_sync(triggered_by="seed_history")
        except TrainerBusy:
            return "trainer busy"
        policy_server.refresh()
        return run.outcome
