"""Celery application: broker and schedules come from Django settings (CELERY_*)."""

import os

from celery import Celery
from celery.signals import task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("storefront")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _configure_forked_child(**_kwargs) -> None:
    # Prefork children share the cores, so each gets one torch thread (more
    # oversubscribe them), and torch must not run in the parent before fork (OpenMP hangs):
    # configure it in each child, before its first task.
    from recommender.rl.runtime import configure_training_process

    configure_training_process()


@task_prerun.connect
def _configure_before_first_task(**_kwargs) -> None:
    # The solo and threads pools run tasks in the worker's own process, where
    # worker_process_init never fires: configure it before the first task there.
    from recommender.rl.runtime import configure_training_process

    configure_training_process()
