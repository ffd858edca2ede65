"""Celery application: broker and schedules come from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("storefront")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
@task_prerun.connect
def _configure_worker_process(**_kwargs) -> None:
    # One torch thread per worker process (more oversubscribe the cores) and
    # freed memory kept for the next replay step. Prefork children do it on
    # worker_process_init, never in the parent before fork (OpenMP hangs); the
    # solo and threads pools run tasks in the worker's own process, where that
    # signal never fires, so each process also does it before its first task.
    from recommender.rl.runtime import configure_training_process

    configure_training_process()
