"""What the recommender logs and learns from.

Impression: one carousel served (slot, state snapshot, policy, items with
propensities, the sold-out products it could not show: SoldOutSet). Event:
a shopper interaction, attributed to the impression that caused it.
Transition: (s, a, r, s', done) per shown item, built by a Celery task.
TrainerState: the learner between runs (TrainerLease: who may train, on
databases without session locks). Checkpoint: a published, versioned
policy the web processes serve. TrainingRun: one task run.
Hourly stats are pre-aggregated in ImpressionStats for the dashboard.
Imported logs (LoggedDataset, LoggedItem, LoggedRow) live in
recommender/models/datasets.py, apart from the live tables.
"""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class SlotName(models.TextChoices):
    HOME = "home", "Home"
    CART = "cart", "Cart"
    PRODUCT = "product", "Product page"


class SoldOutSet(models.Model):
    """Active products a web process could not recommend (out of stock) while it
    served a run of requests. Impressions point at it, so that training and
    off-policy evaluation know each request's real candidate set; one row per
    distinct set, shared until stock changes it."""

    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the sorted ids.")
    product_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{len(self.product_ids)} sold out ({self.digest[:8]})"


class Impression(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    # Indexed with created_at (Meta.indexes), which serves lookups by session alone.
    session_key = models.CharField(max_length=40)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    slot = models.CharField(max_length=16, choices=SlotName.choices)
    product = models.ForeignKey(
        "shop.Product",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The product on the page, for the product slot.",
    )
    state = models.JSONField(help_text="The Observation the policy saw (RL state snapshot).")
    # Not indexed: a handful of values, each a large share of the log.
    policy_name = models.CharField(max_length=40)
    policy_version = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    epsilon = models.FloatField(default=0.0)
    sold_out = models.ForeignKey(
        SoldOutSet,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Active products left out of the candidates for lack of stock "
        "(null: none recorded, as before this was logged).",
    )
    # Outcome, denormalised as rewards are attributed so that KPIs need no join.
    clicks = models.PositiveSmallIntegerField(default=0)
    add_to_carts = models.PositiveSmallIntegerField(default=0)
    purchases = models.PositiveSmallIntegerField(default=0)
    reward = models.FloatField(default=0.0)
    revenue = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    transitions_built = models.BooleanField(
        default=False, help_text="Set once build_transitions has turned it into transitions."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session_key", "created_at"]),
            models.Index(fields=["slot", "created_at"]),
            models.Index(
                fields=["created_at"],
                condition=Q(transitions_built=False),
                name="impression_pending_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.slot} impression {self.id}"


class ImpressionItem(models.Model):
    # The unique (impression, position) index serves lookups by impression.
    impression = models.ForeignKey(
        Impression, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    product = models.ForeignKey("shop.Product", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()
    propensity = models.FloatField(help_text="Exact probability this item was chosen for its slot.")
    score = models.FloatField(default=0.0)

    class Meta:
        ordering = ["impression", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["impression", "position"], name="unique_impression_position"
            ),
            models.UniqueConstraint(
                fields=["impression", "product"], name="unique_impression_product"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.position} product {self.product_id}"


class EventType(models.TextChoices):
    VIEW = "view", "View"
    CLICK = "click", "Click"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    PURCHASE = "purchase", "Purchase"


class Event(models.Model):
    class Source(models.TextChoices):
        CLIENT = "client", "Client (API)"
        SERVER = "server", "Server (shop)"

    event_id = models.UUIDField(unique=True, default=uuid.uuid4, help_text="Idempotency key.")
    created_at = models.DateTimeField(db_index=True)
    # Indexed with created_at (Meta.indexes), which serves lookups by session alone.
    session_key = models.CharField(max_length=40)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    type = models.CharField(max_length=16, choices=EventType.choices)
    product = models.ForeignKey("shop.Product", on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveIntegerField(default=1)
    value = models.DecimalField(
        max_digits=12, decimal_places=2, default=0, help_text="Revenue for purchases."
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.SERVER)
    # Attribution: the impression whose carousel showed this product to this
    # session within the attribution window. Each (impression, product, type)
    # earns reward once; later repeats are kept but unattributed.
    # Lookups by impression use the partial unique index below (its rows are
    # exactly the events that name one).
    impression = models.ForeignKey(
        Impression,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,
    )
    reward = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session_key", "created_at"]),
            models.Index(fields=["type", "created_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["impression", "product", "type"],
                condition=Q(impression__isnull=False),
                name="reward_once_per_impression_item_type",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.product_id} ({self.session_key[:8]})"


class Transition(models.Model):
    """(s, a, r, s', done) for one shown item; s and s' are the states stored
    on the impression and on the session's next impression."""

    # The unique (impression, product) index serves lookups by impression.
    impression = models.ForeignKey(
        Impression, on_delete=models.CASCADE, related_name="transitions", db_index=False
    )
    product = models.ForeignKey("shop.Product", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()
    propensity = models.FloatField()
    reward = models.FloatField()
    next_impression = models.ForeignKey(
        Impression, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    done = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["impression", "product"], name="unique_transition"),
        ]

    def __str__(self) -> str:
        return f"product {self.product_id} r={self.reward:g}{' (done)' if self.done else ''}"


class Checkpoint(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"

    version = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    activated_at = models.DateTimeField(null=True, blank=True)
    weights = models.BinaryField(
        help_text="recommender.rl checkpoint bytes (online+target, config)."
    )
    config = models.JSONField(default=dict)
    checks = models.JSONField(default=dict, help_text="Guard check results.")
    evaluation = models.JSONField(
        default=dict, help_text="Off-policy estimates (IPS/SNIPS/DR, 95% CI) vs the active version."
    )
    training_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="checkpoints"
    )
    note = models.CharField(max_length=200, blank=True)
    dataset = models.ForeignKey(
        "LoggedDataset",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="checkpoints",
        help_text="Trained offline on this imported log (train_offline); "
        "empty: trained by the store on its own traffic.",
    )

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="active"), name="one_active_checkpoint"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version} ({self.status})"

    @property
    def servable(self) -> bool:
        """Whether the store can serve it: trained on the store's own traffic, or
        offline on a log exported from this store (whose items are its products).
        One trained on another shop's log knows other items under the same ids."""
        return self.dataset_id is None or self.dataset.format == "store"


class TrainerState(models.Model):
    """The learner between training runs (online + target nets, optimizer,
    step). One row; train_policy and sync_target_network update it under a lock."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    weights = models.BinaryField()
    step = models.PositiveIntegerField(default=0)
    target_synced_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"learner at step {self.step}"


class TrainerLease(models.Model):
    """Who holds the trainer lock where the database has no session locks
    (SQLite): one row, renewed by its holder while it lives, free again once
    ``expires_at`` has passed. On PostgreSQL an advisory lock is used instead
    (recommender/learning/trainer_lock.py)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    holder = models.CharField(max_length=80, blank=True, help_text="host:pid:token; empty: free.")
    acquired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"trainer lease ({self.holder or 'free'})"


class ServingHeartbeat(models.Model):
    """What one web process serves: written by the process itself when it loads
    or fails to load a version, and every RECOMMENDER_HEARTBEAT_SECONDS, so the
    dashboard shows what shoppers get, not only what is marked active."""

    process = models.CharField(max_length=80, unique=True, help_text="host:pid")
    policy_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The version it serves; null: the fallback."
    )
    failed_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="A version it could not load."
    )
    error = models.CharField(max_length=300, blank=True)
    loaded_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        served = f"v{self.policy_version}" if self.policy_version else "fallback"
        return f"{self.process} serves {served}"


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        TRAIN = "train", "Train"
        SYNC_TARGET = "sync_target", "Sync target network"
        BUILD_TRANSITIONS = "build_transitions", "Build transitions"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    kind = models.CharField(max_length=24, choices=Kind.choices, default=Kind.TRAIN)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    triggered_by = models.CharField(max_length=40, default="schedule")
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    steps = models.PositiveIntegerField(default=0)
    loss = models.FloatField(null=True, blank=True)
    mean_q = models.FloatField(null=True, blank=True)
    epsilon = models.FloatField(null=True, blank=True)
    seed = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="The seed of the run's random draws (RECOMMENDER_TRAIN_SEED, or drawn).",
    )
    replay_size = models.PositiveIntegerField(default=0)
    duration_s = models.FloatField(null=True, blank=True)
    outcome = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # The dashboard's loss / mean-Q chart: finished train runs by time.
            models.Index(fields=["kind", "status", "started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} ({self.status})"


class ImpressionStats(models.Model):
    """Hourly roll-up per slot and policy version, rebuilt idempotently by a
    task so the dashboard never scans raw impressions and events."""

    hour = models.DateTimeField()
    slot = models.CharField(max_length=16, choices=SlotName.choices)
    policy_name = models.CharField(max_length=40)
    policy_version = models.PositiveIntegerField(default=0, help_text="0 for fallback policies.")
    impressions = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    add_to_carts = models.PositiveIntegerField(default=0)
    purchases = models.PositiveIntegerField(default=0)
    reward = models.FloatField(default=0.0)
    revenue = models.DecimalField(max_digits=14, decimal_places=2, default=0)

    class Meta:
        ordering = ["-hour"]
        verbose_name = "hourly impression stats"
        verbose_name_plural = "hourly impression stats"
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "slot", "policy_name", "policy_version"],
                name="unique_stats_bucket",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.slot} {self.policy_name} v{self.policy_version}"


class Dashboard(ImpressionStats):
    """The recommendation dashboard's entry in the admin. A proxy (no table)
    so the admin lists it under Recommender and serves it at
    /admin/recommender/dashboard/ (see recommender/admin/)."""

    class Meta:
        proxy = True
        verbose_name = "recommendation dashboard"
        verbose_name_plural = "recommendation dashboard"
        # Staff may view it; its buttons check recommender.change_checkpoint.
        default_permissions = ()

    def __str__(self) -> str:
        return "Recommendation dashboard"


class SimulatedHistory(models.Model):
    """A run of seed_history: simulated shoppers (not people) laid over past
    days with the clock moved back, so a new demo store has data, a learning
    curve and a trained policy. The worker updates ``sessions_done`` and
    ``heartbeat_at`` as it goes, which the dashboard shows; a run whose
    worker died is resumed from ``sessions_done`` by the next task."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Real times (the simulated clock never touches these).
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The simulated sessions are spread evenly over [period_start, period_end).
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    sessions_total = models.PositiveIntegerField()
    sessions_done = models.PositiveIntegerField(default=0)
    seed = models.IntegerField(default=0)
    family = models.CharField(
        max_length=32,
        default="funnel",
        help_text="The simulated shoppers' family (recommender.rl.simulator.families).",
    )
    first_train = models.PositiveIntegerField(
        help_text="Train for the first time after this many sessions."
    )
    train_every = models.PositiveIntegerField(help_text="Then train every this many sessions.")
    outcome = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "simulated history"
        verbose_name_plural = "simulated histories"

    def __str__(self) -> str:
        return f"{self.sessions_done}/{self.sessions_total} simulated sessions ({self.status})"

    @property
    def progress(self) -> float:
        return self.sessions_done / self.sessions_total if self.sessions_total else 1.0


# Imported logs: defined apart (recommender/models/datasets.py says why), part of this app.
from recommender.models.datasets import LoggedDataset, LoggedItem, LoggedRow  # noqa: E402, F401
