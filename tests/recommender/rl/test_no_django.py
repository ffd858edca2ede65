"""The RL core is a library: importing any of its modules must not import Django."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import recommender.rl

ROOT = Path(__file__).resolve().parents[3]


def test_no_module_of_the_rl_core_imports_django():
    modules = ["recommender.rl"] + [
        f"recommender.rl.{info.name}" for info in pkgutil.iter_modules(recommender.rl.__path__)
    ]
    assert "recommender.rl.agent" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'django' not in sys.modules, name + ' imported django'\n"
    )
    # A clean interpreter: pytest-django may already have imported Django in this one.
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
