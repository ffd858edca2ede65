"""Celery application: broker and schedules come from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("storefront")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _limit_torch_threads(**_kwargs) -> None:
    # Prefork children share the cores, so each gets one torch thread (more
    # oversubscribe them), and torch must not run in the parent before fork (OpenMP hangs):
    # configure it in each child only. Training runs here: keep freed memory for
    # reuse instead of faulting it in again on every replay step.
    from recommender.rl.runtime import configure_torch_threads, keep_freed_memory

    configure_torch_threads()
    keep_freed_memory()
