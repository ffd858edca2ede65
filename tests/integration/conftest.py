"""Fixtures for tests against the real PostgreSQL, Redis and a Celery worker.

They skip when those services are not configured (a laptop running
`make test` on SQLite), unless REQUIRE_SERVICES=1 (CI), where a missing
service fails the run instead of silently skipping it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.services import database_url, redis_reachable, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def real_services() -> None:
    missing = []
    if not settings.IS_POSTGRES:
        missing.append("PostgreSQL (DATABASE_URL=postgres://...)")
    if not redis_reachable(settings.REDIS_URL):
        missing.append("Redis (REDIS_URL=redis://...)")
    if missing:
        skip_or_fail("needs " + " and ".join(missing))


class Worker:
    """A running `celery worker` process (pool "solo": it runs each task itself)."""

    def __init__(self, process: subprocess.Popen, log: Path, queue: str) -> None:
        self.process, self.log, self.queue = process, log, queue

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost host would: no cleanup runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


@pytest.fixture
def celery_workers(real_services, transactional_db, tmp_path):
    """Starts real `celery worker` processes on the test database: call it with
    a queue name (a new one by default) and optional extra environment; every
    worker it started is stopped at the end and its log's tail printed."""
    started: list[Worker] = []

    def start(queue: str | None = None, **extra_env: str) -> Worker:
        queue = queue or f"integration-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url(),
            "REDIS_URL": settings.REDIS_URL,
            # The tests drive whole sessions before they train: every impression's
            # rewards are final and every session has ended.
            "RECOMMENDER_ATTRIBUTION_WINDOW": "0",
            "RECOMMENDER_SESSION_IDLE": "0",
            "RECOMMENDER_MIN_TRANSITIONS": "200",
            **extra_env,
        }
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--pool=solo",
                    "-Q",
                    queue,
                    "-n",
                    f"{queue}-{len(started)}@%h",
                    "--loglevel=INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log, queue)
        started.append(worker)
        _wait_until_ready(process, log)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()
            print(f"--- {worker.log.name} ---\n{worker.log.read_text()[-4000:]}")


@pytest.fixture
def celery_worker(celery_workers) -> str:
    """One real `celery worker` process on the test database and a queue of its
    own; yields the queue name to send tasks to."""
    return celery_workers().queue


def _wait_until_ready(process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited:\n{log.read_text()}")
        if " ready." in log.read_text():
            return
        time.sleep(0.5)
    raise RuntimeError(f"celery worker not ready after {timeout}s:\n{log.read_text()}")


def wait_for(predicate, *, timeout: float, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def train_and_publish(queue: str, *, transitions: int, steps: int, timeout: float = 300):
    """The learning loop's worker side, as the schedule runs it: the worker on
    ``queue`` builds transitions (waits for at least ``transitions``), then
    trains ``steps`` steps and publishes. Returns the training run and its
    checkpoint, failing with the run's reasons when it skipped or failed or
    the guards rejected the version, instead of a bare timeout."""
    from recommender.models import Checkpoint, TrainingRun, Transition
    from recommender.tasks import build_transitions, train_policy

    build_transitions.apply_async(queue=queue)
    wait_for(lambda: Transition.objects.count() >= transitions, timeout=timeout, what="transitions")
    train_policy.apply_async(
        kwargs={"triggered_by": "integration-test", "steps": steps}, queue=queue
    )
    run = wait_for(
        lambda: (
            TrainingRun.objects.filter(kind=TrainingRun.Kind.TRAIN)
            .exclude(status=TrainingRun.Status.RUNNING)
            .first()
        ),
        timeout=timeout,
        what="the training run",
    )
    assert run.status == TrainingRun.Status.SUCCEEDED, (run.status, run.outcome)
    active = Checkpoint.objects.get(training_run=run)
    assert active.status == Checkpoint.Status.ACTIVE, (
        active.note,
        active.checks,
        {k: active.evaluation.get(k) for k in ("reason", "snips", "active")},
    )
    return run, active
