"""manage.py demo_ready: the demo's narrator (a process in Procfile.demo).

Waits until the store answers, says where it is and how to log in, then
reports, once each, the first trained policy going live and the simulated
history finishing, and repeats the address as its last line. It then idles
until honcho stops it (an exiting process would stop the whole demo)."""

from __future__ import annotations

import signal
import sys
import time
import urllib.error
import urllib.request

from django.core.management.base import BaseCommand, CommandError

from recommender.models import Checkpoint, SimulatedHistory
from recommender.simulation.history import history_latest


class Command(BaseCommand):
    help = "Wait for the demo store to answer, then report its address and learning progress."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")
        parser.add_argument("--timeout", type=float, default=120.0, help="Seconds to wait for it.")
        parser.add_argument("--poll", type=float, default=2.0)
        parser.add_argument(
            "--exit", action="store_true", help="Exit after the first report (for scripts)."
        )

    def handle(self, *args, url: str, timeout: float, poll: float, exit: bool, **options) -> None:
        # honcho stops its processes with SIGTERM, a terminal's Ctrl-C sends
        # SIGINT to all of them: either way, leave quietly.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: sys.exit(0))
        url = url.rstrip("/") + "/"
        began = time.monotonic()
        while not self._answers(url + "healthz"):
            if time.monotonic() - began > timeout:
                raise CommandError(f"The store did not answer at {url} within {timeout:.0f} s.")
            time.sleep(poll)
        self.stdout.write(self._banner(url))
        if exit:
            return
        said_trained = said_history = False
        while not (said_trained and said_history):
            active = Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).first()
            if active is not None and not said_trained:
                said_trained = True
                self.stdout.write(f"A trained policy is live: v{active.version}.")
            history = history_latest()
            if history is None or history.status == SimulatedHistory.Status.FINISHED:
                if not said_history and history is not None:
                    self.stdout.write(
                        f"Simulated history written: {history.sessions_total} sessions of "
                        "simulated shoppers. Watch it learn from here: see the README."
                    )
                said_history = True
            time.sleep(poll)
        self.stdout.write(self._banner(url))
        while True:
            signal.pause()

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _banner(url: str) -> str:
        return (
            f"Store: {url}   Admin: {url}admin/ (login admin / admin)   "
            f"Dashboard: {url}admin/recommender/dashboard/"
        )
