"""Every hyperparameter of the DQN slate recommender, in one dataclass.

The Django app builds a ``DQNConfig`` from its settings; nothing in the core
reads settings itself. Checkpoints store the config they were trained with.
``DQNConfig()`` is the store's configuration: the settings that fill it default
to these values (config/settings/base.py), so the core used on its own (a
notebook, the benchmarks) trains as the store does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of the two-tower Q-network, replay training and exploration."""

    # --- item tower: g(i), b(i) from features plus a learned id embedding ---
    id_dim: int = 16
    """width of the learned item-id embedding; ids outside the vocabulary get a zero vector"""
    category_dim: int = 8
    """width of the category embedding"""
    item_hidden: int = 64
    """hidden units of the item tower's MLP"""
    embed_dim: int = 32
    """width D of the state and item vectors whose dot product (plus biases) is Q(s, i)"""
    id_dropout: float = 0.2
    """probability of hiding an item's id embedding during training, so that the
    features alone carry signal and new items (cold start) are scored sensibly"""
    grow_vocabulary: bool = True
    """``set_catalog`` adds ids it has not seen as new zero-initialised id-embedding rows
    (they score from features until trained); False keeps the vocabulary of construction"""

    # --- state tower: f(s), c(s) from pooled item vectors and scalars ---
    state_hidden: int = 128
    """hidden units of the state tower's MLP"""
    max_recent: int = 16
    """most recent interactions kept per observation (older ones are dropped)"""
    max_cart: int = 16
    """cart items kept per observation"""
    max_history: int = 32
    """items of a signed-in shopper's longer history kept per observation"""
    recency_half_life_s: float = 900.0
    """seconds after which a recent interaction weighs half as much in its pool"""

    # --- learning ---
    gamma: float = 0.9
    """discount of the next recommendation request's value; 0 gives the myopic baseline"""
    lr: float = 3e-4
    """Adam learning rate (1e-3 made the bootstrapped targets noisier and returns lower
    in the simulator)"""
    context_lr: float = 1e-2
    """Adam learning rate of the context term <v(s), x(i)> (recommender.rl.network)
    but its per-pair affinities (``pair_lr``): u and the shared "same category" /
    "same attribute" weights start at zero and must reach reward units within the
    store's first training runs, which ``lr`` would take thousands of steps to do"""
    pair_lr: float = 1e-3
    """Adam learning rate of the context term's per-pair affinities (a category to
    each category, an attribute to itself, price to price). They are many next to
    a young store's clicks: at ``context_lr`` they chase whichever pairs happened to
    follow each other in the log, run after run, and the carousel drifts away from
    the page's category. Slower, the shared "same category" / "same attribute"
    weights lead until the clicks of a pair keep saying otherwise"""
    context_l2: float = 1e-3
    """L2 penalty on the context term's per-pair affinities (category to category,
    attribute to attribute, price to price): pulls each towards the shared
    same-category / same-attribute weights until its own clicks are many"""
    interaction_l2: float = 1.0
    """L2 penalty on the two towers' interaction <f(s), g(a)> (recommender.rl.network)
    of each minibatch transition, in squared reward units. The towers can fit
    anything: trained run after run on a store's few hundred sessions they learn
    the sessions themselves, and their part of Q drowns out the context term's,
    so the carousel drifts back to one ranking for everyone. The penalty leaves
    them what the context term cannot explain"""
    served_average: float = 0.995
    """the weights a published checkpoint serves are an exponential moving average
    of the online weights, with this decay per gradient step (0: the online weights
    themselves). Training goes on from the online weights; the average spares
    shoppers the step-to-step wander of the last iterate, which on a store's small
    log can swap a whole category in or out of a carousel from one version to the next"""
    batch_size: int = 256
    """transitions per gradient step"""
    replay_capacity: int = 100_000
    """transitions kept by the replay buffer (oldest overwritten first)"""
    max_next_candidates: int = 128
    """width of the stored next-state candidate set; larger sets are stored as their
    complement in the catalog when that fits, otherwise rejected"""
    huber_delta: float = 10.0
    """Huber loss threshold between its quadratic and linear parts, in reward units: a
    purchase earns about 10, and a threshold of 1 left Q values far below their targets"""
    max_grad_norm: float = 10.0
    """gradients are clipped to this global L2 norm"""
    target_update_interval: int = 0
    """gradient steps between target-network updates inside ``train_steps``; 0 (the
    store's way) leaves them to explicit ``sync_target`` / ``soft_update`` calls: the
    store syncs from its own task on its own schedule"""
    tau: float = 1.0
    """target update coefficient at each interval: 1 is a hard copy, below 1 Polyak averaging"""

    # --- exploration ---
    epsilon_start: float = 1.0
    """per-slot exploration probability at gradient step 0"""
    epsilon_end: float = 0.05
    """per-slot exploration probability after the decay"""
    epsilon_decay_steps: int = 10_000
    """gradient steps over which epsilon falls linearly from start to end"""

    # --- SlateQ (recommender.rl.slateq): click model and slate values ---
    slate_size: int = 8
    """items per carousel the bootstrap assumes the next request shows"""
    max_positions: int = 24
    """carousel positions the click model learns an attention for (a longer slate's
    later positions are not used to fit it)"""
    click_embed_dim: int = 4
    """width of the click model's state and item vectors; kept small because wider ones
    memorise the logged sessions (held-out log-loss 0.81 rising to 4.0 at width 32)"""
    click_hidden: int = 16
    """hidden units of the click model's item and state towers"""
    click_lr: float = 1e-3
    """Adam learning rate of the click model"""
    click_steps_per_step: float = 0.5
    """click-model gradient steps per Q gradient step (more overfit the click model)"""

    # --- checks ---
    max_abs_reward: float = 50.0
    """largest |reward| one transition can carry (the store caps each transition's
    reward at it); |Q| above max_abs_reward / (1 - gamma) fails the publication check"""

    seed: int = 0
    """seed of weight initialisation"""

    def __post_init__(self) -> None:
        positive = [
            "id_dim",
            "category_dim",
            "item_hidden",
            "embed_dim",
            "state_hidden",
            "batch_size",
            "replay_capacity",
            "max_next_candidates",
            "epsilon_decay_steps",
            "slate_size",
            "max_positions",
            "click_embed_dim",
            "click_hidden",
        ]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"DQNConfig.{name} must be at least 1")
        for name in ("max_recent", "max_cart", "max_history", "target_update_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"DQNConfig.{name} must not be negative")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError("DQNConfig.gamma must be in [0, 1)")
        if not 0.0 <= self.id_dropout < 1.0:
            raise ValueError("DQNConfig.id_dropout must be in [0, 1)")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError("DQNConfig.tau must be in (0, 1]")
        if not 0.0 <= self.served_average < 1.0:
            raise ValueError("DQNConfig.served_average must be in [0, 1)")
        for name in ("epsilon_start", "epsilon_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DQNConfig.{name} must be in [0, 1]")
        for name in ("click_steps_per_step", "context_l2", "interaction_l2"):
            if getattr(self, name) < 0:
                raise ValueError(f"DQNConfig.{name} must not be negative")
        for name in (
            "lr",
            "context_lr",
            "pair_lr",
            "huber_delta",
            "max_grad_norm",
            "recency_half_life_s",
            "max_abs_reward",
            "click_lr",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"DQNConfig.{name} must be positive")

    def to_dict(self) -> dict:
        """Plain values, as stored in checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DQNConfig:
        """Inverse of ``to_dict``; unknown keys are an error rather than silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown DQNConfig fields: {', '.join(unknown)}")
        return cls(**data)
