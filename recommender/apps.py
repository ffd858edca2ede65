from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_schedules(sender, **kwargs) -> None:
    from recommender.schedules import schedules_ensure

    schedules_ensure()


class RecommenderConfig(AppConfig):
    name = "recommender"
    verbose_name = "Recommender"

    def ready(self) -> None:
        from recommender import receivers  # noqa: F401  (connects the shop's signals)

        post_migrate.connect(_ensure_schedules, sender=self)
