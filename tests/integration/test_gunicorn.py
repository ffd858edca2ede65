"""The store under gunicorn as the Dockerfile starts it (config/gunicorn.py):
the application is loaded in the master and the workers are forked from it,
sharing torch's memory when the carousels are on. Forked workers still serve
carousels (a torch operation before the fork would leave them hung), and a
server with carousels off never imports torch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from recommender.models import Impression
from recommender.serving.checkpoints import checkpoint_activate
from tests.recommender.support import make_catalog, store_checkpoint, tiny_agent
from tests.services import database_url

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PROVIDER = "recommender.serving.carousels.carousel_provider"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torch_mapped(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@contextmanager
def _gunicorn(tmp_path: Path, *, provider: str):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
        "SHOP_CAROUSEL_PROVIDER": provider,
    }
    log = tmp_path / "gunicorn.log"
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "config/gunicorn.py",
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _get(url: str) -> str:
    # A hung worker would leave this waiting: the timeout turns that into a failure.
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.status == 200
        return response.read().decode()


def test_forked_workers_serve_carousels_with_torch_imported_before_the_fork(
    real_services, tmp_path
):
    products = make_catalog(products=12, stock=100)
    checkpoint_activate(checkpoint=store_checkpoint(tiny_agent(), version=1))

    with _gunicorn(tmp_path, provider=PROVIDER) as (base, master):
        # Whichever forked worker answers serves the learned policy's carousel.
        pages = [_get(f"{base}/p/{products[i].slug}/") for i in range(6)]
        workers = _workers(master)

        assert all('class="carousel"' in page for page in pages)
        assert _torch_mapped(master)  # imported before the fork, to be shared
        assert len(workers) == 2 and all(_torch_mapped(pid) for pid in workers)
    assert set(Impression.objects.values_list("policy_name", flat=True)) == {"dqn"}
    assert Impression.objects.count() == 6


def test_a_server_without_carousels_never_imports_torch(real_services, tmp_path):
    products = make_catalog(products=4)

    with _gunicorn(tmp_path, provider="") as (base, master):
        pages = [_get(f"{base}/p/{products[i % 4].slug}/") for i in range(4)] + [_get(f"{base}/")]
        workers = _workers(master)

        assert not any('class="carousel"' in page for page in pages)
        assert not _torch_mapped(master)
        assert workers and not any(_torch_mapped(pid) for pid in workers)
    assert not Impression.objects.exists()
