from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


def _ensure_schedules(sender, using="default", **kwargs) -> None:
    from django.db import connections
    from django_celery_beat.models import PeriodicTask

    from recommender.learning.schedules import schedules_ensure

    # Migrating only this app on a new database gets here before
    # django-celery-beat's tables exist; a later full migrate creates the rows.
    if PeriodicTask._meta.db_table not in connections[using].introspection.table_names():
        return
    schedules_ensure()


class RecommenderConfig(AppConfig):
    name = "recommender"
    verbose_name = "Recommender"

    def ready(self) -> None:
        from recommender.conf import check_settings
        from recommender.feedback import receivers  # noqa: F401  (connects the shop's signals)

        checks.register(check_settings)

        post_migrate.connect(_ensure_schedules, sender=self)
