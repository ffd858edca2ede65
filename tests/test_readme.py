"""The README is a front door: short, and its "Where does X live" table true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _where_table() -> list[str]:
    section = README.split("## Where does X live", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def test_the_readme_is_at_most_250_lines():
    assert len(README.splitlines()) <= 250


def test_every_path_in_the_where_does_x_live_table_exists():
    rows = _where_table()[1:]  # past the header
    assert len(rows) >= 20
    paths = [
        path
        for row in rows
        for path in re.findall(r"`([^`\s]+)`", row.split("|")[2])
        if "/" in path or path.endswith((".py", ".toml", ".md", ".yml")) or path == "Makefile"
    ]
    assert len(paths) >= 40
    missing = [path for path in paths if not (ROOT / path).exists()]
    assert not missing, missing


def test_every_setting_in_env_example_is_in_the_readme():
    example = (ROOT / ".env.example").read_text()
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    assert "RECOMMENDER_TRAIN_SEED" in names
    missing = sorted(name for name in names if f"`{name}`" not in README)
    assert not missing, missing
