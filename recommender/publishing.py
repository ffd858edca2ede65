"""Publishing a trained learner as a versioned checkpoint, behind guards:
finite weights, sane Q values, and an off-policy estimate on recent logged
impressions that is not worse than the active version's beyond a margin."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from recommender.models import Checkpoint, Impression, TrainingRun
from recommender.models import Transition as TransitionRow
from recommender.rl import ope
from recommender.rl.agents import Agent, agent_kind, load_agent
from recommender.rl.checkpoint import CheckpointError, check_agent
from recommender.rl.types import ItemCatalog, Observation
from recommender.services import checkpoint_activate

logger = logging.getLogger(__name__)

# Impressions scored per batch: bounds the (impressions x catalog) score matrix.
_CHUNK = 256
_BOOTSTRAP = 500


@dataclass(frozen=True)
class LoggedSlates:
    """Recent impressions whose rewards are final, as arrays for OPE.

    ``shown`` holds catalog columns by position (-1 where the item left the
    catalog); rows of the per-slot arrays are (impression, position) pairs.
    """

    observations: list[Observation]
    candidate_mask: (
        np.ndarray
    )  # (n, C) bool: eligible at request time (cart, page, sold out excluded)
    shown: np.ndarray  # (n, K) int64
    propensities: np.ndarray  # (n, K) float64, 0 past a slate's end
    rewards: np.ndarray  # (n, K) float64

    def __len__(self) -> int:
        return len(self.observations)


def logged_slates(*, catalog: ItemCatalog, limit: int) -> LoggedSlates:
    impressions = list(
        Impression.objects.filter(transitions_built=True)
        .order_by("-created_at")
        .values_list("id", "state", "sold_out__product_ids")[:limit]
    )
    ids = [pk for pk, _, _ in impressions]
    rows: dict = defaultdict(list)
    for start in range(0, len(ids), 5000):
        for imp, product, position, propensity, reward in TransitionRow.objects.filter(
            impression_id__in=ids[start : start + 5000]
        ).values_list("impression_id", "product_id", "position", "propensity", "reward"):
            rows[imp].append((position, product, propensity, reward))
    impressions = [impression for impression in impressions if rows[impression[0]]]
    k = max((len(rows[pk]) for pk, _, _ in impressions), default=0)
    n, c = len(impressions), len(catalog)
    shown = np.full((n, k), -1, dtype=np.int64)
    propensities = np.zeros((n, k))
    rewards = np.zeros((n, k))
    mask = np.ones((n, c), dtype=bool)
    observations = []
    for i, (pk, state, sold_out) in enumerate(impressions):
        observation = Observation.from_dict(state)
        observations.append(observation)
        # The request's candidates: the catalog less its cart's and page's
        # products and those then sold out.
        excluded = [*observation.cart_items, *(sold_out or ())]
        if observation.current_item is not None:
            excluded.append(observation.current_item)
        columns = catalog.index_of(excluded)
        mask[i, columns[columns >= 0]] = False
        items = sorted(rows[pk])
        columns = catalog.index_of([product for _, product, _, _ in items])
        for j, ((_, _, propensity, reward), column) in enumerate(zip(items, columns, strict=True)):
            shown[i, j] = column
            propensities[i, j] = propensity
            rewards[i, j] = reward
    # An item shown then may have left the catalog since: it stays out of the
    # estimate but keeps its place, so later positions' candidate sets are right.
    return LoggedSlates(observations, mask, shown, propensities, rewards)


def _estimates(
    rewards, propensities, target, r_hat, direct, refit: ope.RewardRefit | None, seed: int
) -> dict:
    kwargs = {"n_bootstrap": _BOOTSTRAP, "seed": seed}
    return {
        "ips": ope.ips(rewards, propensities, target, **kwargs).to_dict(),
        "snips": ope.snips(rewards, propensities, target, **kwargs).to_dict(),
        "dr": ope.doubly_robust(
            rewards, propensities, target, r_hat, direct, refit=refit, **kwargs
        ).to_dict(),
    }


def _reward_model(logged: LoggedSlates, n_items: int) -> tuple[ope.RewardModel, tuple]:
    """The off-policy tools' reward model (``ope.RewardModel``: r̂ per item and
    position) fitted on the logged slates, and the (rows, positions) index of
    the slots it was fitted on: shown items still in the catalog."""
    valid = (logged.shown >= 0) & (logged.propensities > 0)
    index = np.nonzero(valid)
    model = ope.RewardModel.fit(
        logged.shown[index],
        index[1],
        logged.rewards[index],
        n_actions=max(n_items, 1),
        n_positions=max(logged.shown.shape[1], 1),
    )
    return model, index


def policy_value(
    agent: Agent | None, logged: LoggedSlates, *, epsilon: float, seed: int = 0
) -> dict:
    """IPS, SNIPS and DR estimates (per shown slot) of serving ``agent`` with
    ε-greedy slates on the logged requests; ``agent=None`` evaluates the
    logging policy itself (its on-policy value). Each request is ranked as the
    agent would rank it for a slate of the logged length among its candidates,
    and each slot's candidates are those the logged slate left at it. DR's
    interval refits its reward model in every bootstrap replicate."""
    n_items = logged.candidate_mask.shape[1] if agent is None else len(agent.catalog)
    model, (rows, positions) = _reward_model(logged, n_items)
    shown = logged.shown[rows, positions]
    rewards = logged.rewards[rows, positions]
    propensities = logged.propensities[rows, positions]
    predicted = model.predict(shown, positions)
    cells = ope.cell_index(shown, positions, model.n_actions, model.n_positions)
    if agent is None:
        refit = ope.RewardRefit(model, cells, None)
        return _estimates(rewards, propensities, propensities, predicted, predicted, refit, seed)

    target = np.zeros(len(rows))
    direct = np.zeros(len(rows))
    mass = np.zeros_like(model.table)
    for start in range(0, len(logged), _CHUNK):
        stop = start + _CHUNK
        lengths = np.count_nonzero(logged.propensities[start:stop] > 0, axis=1)
        scores = agent.ranking_scores(
            logged.observations[start:stop], logged.candidate_mask[start:stop], lengths
        )
        masks = ope.slot_candidate_masks(
            logged.candidate_mask[start:stop], logged.shown[start:stop]
        )
        in_chunk = (rows >= start) & (rows < stop)
        for position in range(logged.shown.shape[1]):
            slots = np.flatnonzero(in_chunk & (positions == position))
            if not len(slots):
                continue
            local = rows[slots] - start
            distribution = ope.epsilon_greedy_distribution(
                scores[local], masks[local, position], epsilon
            )
            target[slots] = distribution[np.arange(len(slots)), shown[slots]]
            at = np.full(len(slots), position)
            direct[slots] = model.expected(distribution, at)
            mass += ope.target_mass(distribution, at, model.n_positions)
    refit = ope.RewardRefit(model, cells, mass)
    return _estimates(rewards, propensities, target, predicted, direct, refit, seed)


def checkpoint_publish(*, agent: Agent, catalog: ItemCatalog, run: TrainingRun) -> Checkpoint:
    """Store the learner as the next version; activate it if every guard passes
    (and RECOMMENDER_AUTO_ACTIVATE), otherwise keep it as rejected with the
    reasons, so an admin can still inspect or force-activate it."""
    margin = settings.RECOMMENDER_OPE_MARGIN
    epsilon = settings.RECOMMENDER_EPSILON
    logged = logged_slates(catalog=catalog, limit=settings.RECOMMENDER_OPE_IMPRESSIONS)
    checks = _jsonable_dict(
        check_agent(
            agent,
            logged.observations[:200],
            max_abs_reward=settings.RECOMMENDER_MAX_ABS_REWARD,
        )
    )
    checks["passed"] = bool(checks.get("ok"))

    active = Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).first()
    baseline_agent = None
    if active is not None:
        try:
            baseline_agent = load_agent(bytes(active.weights), catalog=catalog)
        except CheckpointError:
            # A corrupt active version (web processes already fall back from
            # it) must not block every new one: compare with the logged policy.
            logger.exception("Active checkpoint v%s cannot be loaded", active.version)
            active = None
    candidate_value = policy_value(agent, logged, epsilon=epsilon)
    baseline_value = policy_value(baseline_agent, logged, epsilon=epsilon)
    candidate_high = candidate_value["snips"]["ci95"][1]
    candidate_ess = candidate_value["snips"]["ess"] or 0.0
    baseline_snips = baseline_value["snips"]["value"]
    min_ess = settings.RECOMMENDER_OPE_MIN_ESS
    if len(logged) == 0 or candidate_high is None or baseline_snips is None:
        ope_passed, reason = True, "no logged impressions with final rewards yet"
    elif candidate_ess < min_ess:
        # The weights pile onto the few logged rows where the logger happened to
        # choose as the candidate would: a bootstrap over them is no evidence.
        ope_passed = True
        reason = (
            f"SNIPS {candidate_value['snips']['value']:.4f} rests on {candidate_ess:.1f} "
            f"effective impressions, fewer than {min_ess:g}: too few to judge"
        )
    else:
        # Reject only on evidence: the candidate's whole 95% interval lies below
        # the active version's estimate less the margin. Importance-weighted
        # estimates are noisy; a point comparison would reject good versions.
        floor = baseline_snips - margin * abs(baseline_snips)
        ope_passed = candidate_high >= floor
        reason = (
            f"SNIPS {candidate_value['snips']['value']:.4f} "
            f"(95% CI up to {candidate_high:.4f}) vs floor {floor:.4f}"
        )
    evaluation = {
        **candidate_value,
        # What it was compared with: the active version, or with none active
        # the logging policy itself (version null).
        "active": {
            "policy": f"v{active.version}" if active else "logged policy",
            "version": active.version if active else None,
            **baseline_value,
        },
        "n_impressions": len(logged),
        "epsilon": epsilon,
        "margin": margin,
        "min_ess": min_ess,
        "passed": bool(ope_passed),
        "reason": reason,
    }
    passed = checks["passed"] and ope_passed
    with transaction.atomic():
        version = (Checkpoint.objects.aggregate(v=Max("version"))["v"] or 0) + 1
        checkpoint = Checkpoint.objects.create(
            version=version,
            weights=agent.save(),
            config={"agent": agent_kind(agent), **agent.config.to_dict()},
            checks=checks,
            evaluation=evaluation,
            training_run=run,
            status=Checkpoint.Status.CANDIDATE if passed else Checkpoint.Status.REJECTED,
            note="" if passed else _rejection_note(checks, evaluation),
        )
        if passed and settings.RECOMMENDER_AUTO_ACTIVATE:
            checkpoint = checkpoint_activate(checkpoint=checkpoint)
    return checkpoint


def _rejection_note(checks: dict, evaluation: dict) -> str:
    reasons = []
    if not checks.get("finite_weights"):
        reasons.append("non-finite weights")
    if not checks.get("q_finite") or not checks.get("q_within_bound"):
        reasons.append("Q values out of bounds")
    if not evaluation["passed"]:
        reasons.append(f"off-policy estimate too low ({evaluation['reason']})")
    return "Rejected: " + ", ".join(reasons) + "."


def _jsonable_dict(report: dict) -> dict:
    """JSON columns reject NaN: store missing numbers as null."""
    return {
        key: (None if isinstance(value, float) and math.isnan(value) else value)
        for key, value in report.items()
    }
