"""Imported logs of feedback: a named dataset, its items with their features
and its logged rows (one shown item each, with position, propensity, reward
and the context the logging policy saw).

They are kept apart from the store's live ``Impression`` / ``Event`` /
``Transition`` tables on purpose. Another shop's log has its own item ids (the
Open Bandit Dataset's 0..79 would collide with product ids) and no sessions,
carts or events; mixed into the live tables it would be served from, trained
on by the store's own loop and counted on the dashboard. A dataset is also
replaced or deleted as a whole, which the live tables must never be. The
store's own impressions reach a dataset through the ``store`` file format
(``export_logged_feedback``), which keeps everything the off-policy tools
need.
"""

from django.db import models


class LoggedDataset(models.Model):
    class Format(models.TextChoices):
        OBD = "obd", "Open Bandit Dataset"
        STORE = "store", "This store's export"

    name = models.SlugField(max_length=64, unique=True)
    format = models.CharField(max_length=16, choices=Format.choices)
    source = models.CharField(max_length=500, help_text="The folder or file it was read from.")
    digest = models.CharField(
        max_length=64, help_text="SHA-256 of the files: importing them again changes nothing."
    )
    imported_at = models.DateTimeField(auto_now=True)
    n_rows = models.PositiveIntegerField(default=0)
    n_items = models.PositiveIntegerField(default=0)
    n_positions = models.PositiveSmallIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    meta = models.JSONField(
        default=dict, help_text="How it was read (files, the feature used as category)."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.format}, {self.n_rows} rows)"


class LoggedItem(models.Model):
    dataset = models.ForeignKey(LoggedDataset, on_delete=models.CASCADE, related_name="items")
    item_id = models.BigIntegerField(help_text="The log's own item id.")
    category = models.PositiveIntegerField()
    price = models.FloatField(default=0.0)
    attributes = models.JSONField(
        default=list, help_text="Dense numeric features, as the Q-network's item tower reads them."
    )
    features = models.JSONField(default=dict, help_text="The file's own values.")

    class Meta:
        ordering = ["dataset", "item_id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "item_id"], name="unique_logged_item"),
        ]

    def __str__(self) -> str:
        return f"item {self.item_id} of {self.dataset_id}"


class LoggedRow(models.Model):
    dataset = models.ForeignKey(LoggedDataset, on_delete=models.CASCADE, related_name="rows")
    key = models.CharField(
        max_length=80,
        help_text="Unique within the dataset (the file's row id or impression:position).",
    )
    timestamp = models.DateTimeField()
    impression = models.CharField(
        max_length=64, blank=True, help_text="Groups one carousel's rows, where the log keeps it."
    )
    session = models.CharField(max_length=64, blank=True)
    position = models.PositiveSmallIntegerField(help_text="0-based.")
    item_id = models.BigIntegerField()
    propensity = models.FloatField(
        help_text="The logging policy's probability of showing this item at this position."
    )
    click = models.BooleanField()
    reward = models.FloatField()
    next_impression = models.CharField(max_length=64, blank=True)
    done = models.BooleanField(default=True)
    context = models.JSONField(
        default=dict, help_text="What the policy knew (see docs/offline.md)."
    )

    class Meta:
        ordering = ["dataset", "timestamp", "key"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "key"], name="unique_logged_row"),
        ]
        indexes = [models.Index(fields=["dataset", "timestamp", "key"])]

    def __str__(self) -> str:
        return f"{self.dataset_id}:{self.key}"
