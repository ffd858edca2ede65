"""config.celery_app: a worker process of any pool trains on one torch thread.

A worker's own process runs the tasks with ``--pool=solo`` (as the integration
tests and small deployments start it), and there Celery never sends
``worker_process_init``. Two torch threads per worker made training several
times slower as soon as another process used a core."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# A fresh interpreter: torch's thread count is process-wide.
SIGNAL_THEN_THREADS = """
import sys
import django
django.setup()
import torch
from celery import signals
from config.celery_app import app
torch.set_num_threads(2)
getattr(signals, sys.argv[1]).send(sender=None)
print(torch.get_num_threads())
"""


@pytest.mark.parametrize("signal", ["worker_process_init", "task_prerun"])
def test_a_worker_process_configures_one_torch_thread_before_its_first_task(signal):
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_THEN_THREADS, signal],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RL_TORCH_THREADS": "1"},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"
