"""Run benchmarks and record what they printed in ``bench/RESULTS.md``.

    python -m bench.run [NAME ...] [-- ARGS]

Runs ``python -m bench.<NAME> ARGS`` for each name (default: every benchmark in
``BENCHMARKS``), streams its output, and replaces that benchmark's section of
``bench/RESULTS.md`` with the table it printed, the date, the machine and the
arguments. A benchmark that fails keeps its previous section and makes the
run exit non-zero. ``make bench`` calls this; the figures are measurements of
one machine on one day, never tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")

BENCHMARKS = (
    "serving",
    "training",
    "policy_quality",
    "store_learning",
    "offline",
    "dashboard",
    "load",
    "demo_startup",
)
"""Every benchmark ``make bench`` runs, in order."""

NEEDS_POSTGRES = {"dashboard", "load"}
"""Benchmarks that need DATABASE_URL to point at PostgreSQL; skipped (and their
sections kept) otherwise."""

HEADER = """# Benchmark results

Written by `make bench` (`python -m bench.run`): each section is the output of the
benchmark's latest recorded run, with its date, machine and arguments. These are
measurements, not tests; compare figures from the same run only (the machine's speed
varies from day to day).
"""


def machine() -> str:
    """CPU model, cores, memory, Python, torch and database of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    try:
        torch = f", torch {metadata.version('torch')}"
    except metadata.PackageNotFoundError:
        torch = ""
    database = os.environ.get("DATABASE_URL", "sqlite").split(":", 1)[0]
    return (
        f"{cpu} ({os.cpu_count()} cores{memory}), Python {platform.python_version()}{torch}, "
        f"database {database}"
    )


def section(name: str, output: str, args: list[str]) -> str:
    """The Markdown section of one run: when, where, how, then the printed output
    without its machine-readable JSON line."""
    lines = [line for line in output.rstrip().splitlines() if not line.startswith("{")]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m", f"bench.{name}", *args])
    body = "\n".join(lines)
    return (
        f"<!-- bench:{name} -->\n## bench.{name}\n\n"
        f"Measured {when} on {machine()}: `{command}`\n\n```text\n{body}\n```\n"
        f"<!-- /bench:{name} -->\n"
    )


def record(name: str, text: str, results: Path = RESULTS) -> None:
    """Replace (or append) benchmark ``name``'s section of ``results``."""
    current = results.read_text() if results.exists() else HEADER
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->\n", re.S
    )
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    results.write_text(updated)


def run(name: str, args: list[str]) -> str | None:
    """Run one benchmark, echoing its output; its output, or None when it failed."""
    command = [sys.executable, "-m", f"bench.{name}", *args]
    print(f"== {' '.join(command[1:])}", flush=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    captured = []
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        captured.append(line)
    return "".join(captured) if process.wait() == 0 else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    names = parser.parse_args(argv).names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark: {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    failed = []
    for name in names:
        if name in NEEDS_POSTGRES and not os.environ.get("DATABASE_URL", "").startswith("postgres"):
            print(f"== bench.{name} skipped: it needs DATABASE_URL=postgres://...", flush=True)
            continue
        output = run(name, extra)
        if output is None:
            failed.append(name)
        else:
            record(name, section(name, output, extra))
    if failed:
        print(f"failed (their sections in {RESULTS.name} were kept): {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
