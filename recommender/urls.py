from django.urls import path

from recommender.serving.api import EventsApi, RecommendationsApi

urlpatterns = [
    path("recommendations/", RecommendationsApi.as_view(), name="api-recommendations"),
    path("events/", EventsApi.as_view(), name="api-events"),
]
