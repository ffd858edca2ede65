from django.apps import AppConfig


class DashboardConfig(AppConfig):
    """The admin dashboard as an app of its own, so its template tags live beside
    its selectors and charts; its model (a proxy) stays in the recommender app."""

    name = "recommender.dashboard"
    label = "recommender_dashboard"
    verbose_name = "Recommender dashboard"
