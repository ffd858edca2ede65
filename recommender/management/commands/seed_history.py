"""Lay a simulated shopping history over the past days and train on it, so a
fresh demo store starts with data, a learning curve and an active policy.

Inline by default (one progress bar); with --background it only plans the
history and queues it for a Celery worker, which is what `make demo` does so
that the store serves while the history is written."""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.rl.runtime import configure_training_process
from recommender.simulation.history import HistoryBusy, history_plan, history_run


class Command(BaseCommand):
    help = (
        "Simulate shopper sessions spread over the past days through the store's full request "
        "stack (clock moved back), training the policy after --first-train sessions and then "
        "every --train-every sessions. Resumes an unfinished history; a no-op once one finished."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--sessions", type=int, default=1000)
        parser.add_argument("--days", type=float, default=3.0)
        parser.add_argument(
            "--first-train",
            type=int,
            default=60,
            help="Sessions before the first training run (default 60: a trained policy early).",
        )
        parser.add_argument("--train-every", type=int, default=250)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--family",
            default="funnel",
            help="Shopper family to simulate (recommender.rl.simulator.families; default funnel).",
        )
        parser.add_argument(
            "--force", action="store_true", help="Add a history even if the store has traffic."
        )
        parser.add_argument(
            "--background",
            action="store_true",
            help="Queue the history for a Celery worker instead of writing it here.",
        )

    def handle(
        self,
        *args,
        sessions,
        days,
        first_train,
        train_every,
        seed,
        family,
        force,
        background,
        **options,
    ):
        try:
            history = history_plan(
                sessions=sessions,
                days=days,
                first_train=first_train,
                train_every=train_every,
                seed=seed,
                family=family,
                force=force,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if history is None:
            self.stdout.write("History already present; nothing to do (use --force to add more).")
            return
        if history.family != family:
            self.stdout.write(
                f"Resuming the unfinished history of {history.family} shoppers "
                f"(not {family}): a history keeps the family it was planned with."
            )
        if background:
            self._queue(history)
            return
        # It trains here, as a worker would: one torch thread, freed memory kept.
        configure_training_process()
        with tqdm(
            total=history.sessions_total,
            initial=history.sessions_done,
            desc="Simulated shoppers",
            unit="session",
            disable=options["verbosity"] < 1,
            file=sys.stderr,
            # The clock is moved back while it runs: counts only, no rates.
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}",
        ) as bar:

            def progress(done: int, total: int, note: str) -> None:
                # tqdm times its redraws with the clock, which the history moves
                # back: redraw explicitly.
                bar.n = done
                bar.refresh()

            try:
                run = history_run(history_id=history.pk, on_progress=progress)
            except HistoryBusy as exc:
                raise CommandError(f"{exc} Wait for it, or stop that worker.") from exc
            except RuntimeError as exc:
                raise CommandError(str(exc)) from exc
        from recommender.management.commands.simulate_traffic import fail_if_refused, render_stats

        self.stdout.write(render_stats(run.traffic))
        self.stdout.write(run.history.outcome)
        fail_if_refused(run.traffic)

    def _queue(self, history) -> None:
        from kombu.exceptions import OperationalError

        from recommender.tasks import seed_history

        try:
            seed_history.delay(history.pk)
        except (OperationalError, OSError) as exc:
            raise CommandError(
                f"Could not queue the simulated history: the Celery broker is not reachable ({exc})."
            ) from exc
        done = f", resuming after {history.sessions_done}" if history.sessions_done else ""
        self.stdout.write(
            f"Simulated history queued: {history.sessions_total} sessions of simulated shoppers "
            f"over the past days{done}; a Celery worker writes it while the store serves."
        )
