"""How long a newcomer waits after ``make demo``: to the first page, and to the
first trained policy serving the carousels.

Copies the project's files (tracked and untracked, not ignored: what a clone
plus your changes would have) into a throwaway folder that is made a git
repository, links the installed ``.venv`` into it (the goal is measured with
the venv already installed), and runs ``make demo`` there with the embedded
defaults (SQLite, filesystem broker: DATABASE_URL and REDIS_URL are removed
from its environment). It polls ``GET /`` until the store answers, then the
recommendations API until the policy serving the home carousel is a trained
``dqn`` version, and optionally until the simulated history is finished.
Then it stops everything it started (SIGINT to make's process group, as
Ctrl-C would) and reports whether ``git status`` in the copy is clean.

    python -m bench.demo_startup [--port 8180] [--quick] [--json]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench._common import parser, print_json, print_table

ROOT = Path(__file__).resolve().parent.parent
FIRST_PAGE_GOAL = 120.0
TRAINED_GOAL = 300.0


def project_copy(target: Path) -> None:
    """The project's files as a fresh clone with your changes would have them."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if not source.is_file():
            continue  # deleted in the work tree
        destination = target / os.fsdecode(name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
    (target / ".venv").symlink_to(ROOT / ".venv")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run(["git", "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "copy"], cwd=target, check=True)


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def serving_policy(base: str) -> str | None:
    """The policy behind the home carousel, as the API names it ("dqn v2")."""
    import json

    status, body = fetch(f"{base}api/v1/recommendations/?slot=home&k=8")
    if status != 200:
        return None
    policy = json.loads(body)["policy"]
    return f"{policy['name']} v{policy['version']}" if policy.get("version") else policy["name"]


def history_state(copy: Path) -> tuple[str, int, int] | None:
    """(status, done, total) of the simulated history, read from the copy's SQLite."""
    try:
        with sqlite3.connect(f"file:{copy / 'db.sqlite3'}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(
                "SELECT status, sessions_done, sessions_total FROM recommender_simulatedhistory "
                "ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
    except sqlite3.Error:
        return None
    return tuple(row) if row else None


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C for make's whole process group; then harder if it lingers."""
    for signum, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # Anything of the group still alive (a worker child) goes too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def measure(port: int, *, wait_history: bool, limit: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="demo-startup-") as folder:
        copy = Path(folder)
        project_copy(copy)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")
            and not k.startswith("CELERY_")
        }
        log = (copy / "var").joinpath("demo.log")
        log.parent.mkdir(exist_ok=True)
        base = f"http://127.0.0.1:{port}/"
        started = time.monotonic()
        with log.open("wb") as output:
            process = subprocess.Popen(
                ["make", "demo", f"PORT={port}"],
                cwd=copy,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        result: dict = {"first_page_s": None, "trained_s": None, "history_s": None}
        try:
            while time.monotonic() - started < limit and process.poll() is None:
                elapsed = time.monotonic() - started
                if result["first_page_s"] is None and fetch(base)[0] == 200:
                    result["first_page_s"] = elapsed
                if result["first_page_s"] is not None and result["trained_s"] is None:
                    policy = serving_policy(base)
                    if policy and policy.startswith("dqn"):
                        result["trained_s"] = elapsed
                        result["trained_policy"] = policy
                if result["trained_s"] is not None and result["history_s"] is None:
                    state = history_state(copy)
                    if state and state[0] == "finished":
                        result["history_s"] = elapsed
                        result["history_sessions"] = state[2]
                done = result["trained_s"] is not None and (
                    result["history_s"] is not None or not wait_history
                )
                if done:
                    break
                time.sleep(1.0)
            result["exited_early"] = process.poll() is not None
        finally:
            stop(process)
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=copy, capture_output=True, text=True
        ).stdout
        result["git_status"] = "; ".join(status.split("\n")).strip("; ") or "clean"
        if result["first_page_s"] is None or result["exited_early"]:
            result["log_tail"] = log.read_text(errors="replace")[-3000:]
        return result


def main() -> None:
    arguments = parser(__doc__.splitlines()[0])
    arguments.add_argument("--port", type=int, default=8180)
    arguments.add_argument(
        "--limit", type=float, default=1200.0, help="give up after this many seconds"
    )
    args = arguments.parse_args()
    result = measure(args.port, wait_history=not args.quick, limit=args.limit)

    def seconds(key: str) -> str:
        return "not reached" if result[key] is None else f"{result[key]:.0f} s"

    rows = [
        ["first page (GET / answers 200)", seconds("first_page_s"), f"≤ {FIRST_PAGE_GOAL:.0f} s"],
        [
            f"first trained policy serving ({result.get('trained_policy', '-')})",
            seconds("trained_s"),
            f"≤ {TRAINED_GOAL:.0f} s",
        ],
    ]
    if not args.quick:
        rows.append(
            [
                f"simulated history finished ({result.get('history_sessions', '-')} sessions)",
                seconds("history_s"),
                "-",
            ]
        )
    rows.append(["git status after stopping", result["git_status"], "clean"])
    print_table(
        "make demo (venv installed, SQLite, filesystem broker) -> time since `make demo`",
        ["milestone", "measured", "goal"],
        rows,
    )
    if "log_tail" in result:
        print(result["log_tail"])
    if args.json:
        print_json({k: v for k, v in result.items() if k != "log_tail"})


if __name__ == "__main__":
    main()
