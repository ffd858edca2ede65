from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


def _ensure_schedules(sender, **kwargs) -> None:
    from recommender.learning.schedules import schedules_ensure

    schedules_ensure()


class RecommenderConfig(AppConfig):
    name = "recommender"
    verbose_name = "Recommender"

    def ready(self) -> None:
        from recommender.conf import check_settings
        from recommender.feedback import receivers  # noqa: F401  (connects the shop's signals)

        checks.register(check_settings)

        post_migrate.connect(_ensure_schedules, sender=self)
