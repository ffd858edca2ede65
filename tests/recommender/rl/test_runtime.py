"""Process settings for training: freed memory stays in the process for reuse."""

import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Page faults per round of a training step's allocation pattern: several large
# temporaries of varied sizes alive at once, then freed.
FAULTS_PER_ROUND = """
import resource, sys
import numpy as np
from recommender.rl.runtime import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
rng = np.random.default_rng(0)
def round_():
    alive = [np.ones(int(n)) for n in rng.integers(40_000, 600_000, 8)]
    return sum(float(a[-1]) for a in alive)
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    round_()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def faults_per_round(mode: str) -> float:
    # A fresh interpreter each: the setting is process-wide.
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_ROUND, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
    reason="mallopt is glibc's",
)
def test_keep_freed_memory_stops_the_page_faults_of_repeated_large_temporaries():
    default, tuned = faults_per_round("default"), faults_per_round("tuned")
    assert default > 500  # glibc's defaults hand the blocks back and fault them in again
    assert tuned < default / 10
