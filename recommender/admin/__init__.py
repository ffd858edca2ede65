"""The recommender in the Django admin: the recommendation dashboard, and
list views of what was logged and learned.

Impressions, events, transitions, training runs and roll-up buckets are
history: the admin shows them read-only, since editing one would silently
change rewards, training data or the numbers on the dashboard. Checkpoints
change status only through the activate / roll back actions (the services
keep exactly one active), and their weights are never shown.
"""

# Each module registers its models with the admin site.
from recommender.admin import checkpoints, dashboard, logs  # noqa: F401
