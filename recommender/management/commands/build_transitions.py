from django.core.management.base import BaseCommand

from recommender.learning.training import transitions_build


class Command(BaseCommand):
    help = "Turn finished parts of shopper sessions into (s, a, r, s', done) transitions."

    def handle(self, *args, **options) -> None:
        result = transitions_build()
        self.stdout.write(f"{result.created} transitions from {result.impressions} impressions.")
