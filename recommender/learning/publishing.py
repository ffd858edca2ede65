"""Publishing a trained learner as a versioned checkpoint, behind guards:
finite weights, sane Q values, a ranking that depends on the shopper's state,
and an off-policy estimate on recent logged impressions that is not worse than
the active version's beyond a margin. Beside it, the evaluation keeps the
estimates of the classic baselines (popularity, same category, co-occurrence)
on the same kind of logged impressions, fitted on the events before them."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max

from recommender.evaluation.reports import GuardReport, OffPolicyEvaluation, finite_json
from recommender.models import Checkpoint, Event, Impression, TrainingRun
from recommender.models import Transition as TransitionRow
from recommender.rl import ope
from recommender.rl.agents import agent_kind, check_agent, load_agent, served_copy
from recommender.rl.baselines import (
    CooccurrencePolicy,
    LoggedSession,
    PopularityPolicy,
    SameCategoryPolicy,
    session_anchors,
    with_popularity_ties,
)
from recommender.rl.checkpoint import CheckpointError
from recommender.rl.diagnostics import personalisation_report
from recommender.rl.explain import session_items
from recommender.rl.learner import Learner
from recommender.rl.types import ItemCatalog, Observation
from recommender.serving import features
from recommender.serving.checkpoints import checkpoint_activate
from shop.models import Product

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
    created_at: list[datetime] = field(default_factory=list)  # newest first

    def __len__(self) -> int:
        return len(self.observations)

    def subset(self, rows: np.ndarray) -> LoggedSlates:
        """These rows only (indices into this one)."""
        return LoggedSlates(
            [self.observations[r] for r in rows],
            self.candidate_mask[rows],
            self.shown[rows],
            self.propensities[rows],
            self.rewards[rows],
            [self.created_at[r] for r in rows] if self.created_at else [],
        )


def logged_slates(*, catalog: ItemCatalog, limit: int) -> LoggedSlates:
    impressions = list(
        Impression.objects.filter(transitions_built=True)
        .order_by("-created_at")
        .values_list("id", "state", "sold_out__product_ids", "created_at")[:limit]
    )
    created = {pk: at for pk, _, _, at in impressions}
    impressions = [(pk, state, sold_out) for pk, state, sold_out, _ in impressions]
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
    return LoggedSlates(
        observations, mask, shown, propensities, rewards, [created[pk] for pk, _, _ in impressions]
    )


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


def catalog_groups(catalog: ItemCatalog) -> np.ndarray:
    """(N,) near-duplicate group of each catalog column, as serving forms them
    (``features.near_duplicate_key``); one query."""
    keys = {
        pk: features.near_duplicate_key(category_id=c, brand=b, name=n, colour=colour)
        for pk, c, b, n, colour in Product.objects.values_list(
            "pk", "category_id", "brand", "name", "colour"
        )
    }
    return features.near_duplicate_groups(
        keys.get(int(i), ("unknown", int(i))) for i in catalog.ids
    )


def _without_shown_groups(masks: np.ndarray, shown: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(n, K, C) slot masks where position k also leaves out the near-duplicates
    of the items shown before it, as a served slate does."""
    for position in range(1, shown.shape[1]):
        previous = shown[:, position - 1]
        rows = np.flatnonzero(previous >= 0)
        same = groups[None, :] == groups[previous[rows]][:, None]  # (rows, C)
        masks[rows, position:, :] &= ~same[:, None, :]
    return masks


def policy_value(
    agent: Learner | None,
    logged: LoggedSlates,
    *,
    epsilon: float,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict:
    """IPS, SNIPS and DR estimates (per shown slot) of serving ``agent`` with
    ε-greedy slates on the logged requests; ``agent=None`` evaluates the
    logging policy itself (its on-policy value). Each request is ranked as the
    agent would rank it for a slate of the logged length among its candidates
    (less, with ``groups`` (N,), the near-duplicates of the items before it),
    and each slot's candidates are those the logged slate left at it. DR's
    interval refits its reward model in every bootstrap replicate. ``agent``
    may be anything with a ``catalog`` and ``ranking_scores``."""
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
        if groups is not None:
            masks = _without_shown_groups(masks, logged.shown[start:stop], groups)
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


# ---------------------------------------------------------------------------
# Baselines: the classic shop recommenders, estimated beside each version
# ---------------------------------------------------------------------------

BASELINES = ("popularity", "same_category", "cooccurrence")
# Baselines learn from at least this many sessions before the impressions they
# are judged on; a younger store judges them on the newer half of its window.
MIN_FIT_SESSIONS = 50
# Events read to fit them: the newest before the cut-off.
MAX_FIT_EVENTS = 200_000


class BaselineRanker:
    """A baseline policy as ``policy_value`` ranks an agent: per request, the
    scores its ``slate`` would give that request's candidates (-inf elsewhere),
    computed here with catalog-wide arrays instead of its per-candidate loops
    (``session_anchors`` and ``with_popularity_ties`` are the policy's own)."""

    def __init__(self, policy, catalog: ItemCatalog) -> None:
        self.policy = policy
        self.catalog = catalog
        ids = np.asarray(catalog.ids, dtype=np.int64)
        self._column = {int(i): column for column, i in enumerate(ids)}
        popularity = policy if isinstance(policy, PopularityPolicy) else policy.popularity
        self._popularity = popularity.scores(ids)
        self._categories = None
        if isinstance(policy, SameCategoryPolicy):
            self._categories = np.array([policy.category_of.get(int(i), -1) for i in ids])

    def _related(self, obs: Observation) -> np.ndarray:
        """Each catalog item's relatedness to the request's anchors."""
        policy = self.policy
        related = np.zeros(len(self._popularity))
        anchors = session_anchors(obs, policy.event_weights, policy.half_life_s)
        if self._categories is not None:
            by_category: dict[int, float] = defaultdict(float)
            for item, weight in anchors.items():
                category = policy.category_of.get(item)
                if category is not None:
                    by_category[category] += weight
            for category, weight in by_category.items():
                related[self._categories == category] = weight
            return related
        by_item: dict[int, float] = defaultdict(float)
        for anchor, weight in anchors.items():
            for item, similarity in policy.neighbours.get(anchor, {}).items():
                by_item[item] += weight * similarity
        for item, value in by_item.items():
            column = self._column.get(item)
            if column is not None:
                related[column] = value
        return related

    def ranking_scores(
        self, observations: Sequence[Observation], candidate_mask: np.ndarray, k
    ) -> np.ndarray:
        mask = np.asarray(candidate_mask, dtype=bool)
        scores = np.full(mask.shape, -np.inf, dtype=np.float32)
        for row, obs in enumerate(observations):
            columns = mask[row]
            if isinstance(self.policy, PopularityPolicy):
                values = self._popularity[columns]
            else:
                values = with_popularity_ties(
                    self._related(obs)[columns], self._popularity[columns]
                )
            # float32, as the policy's slate scores are.
            scores[row, columns] = values.astype(np.float32)
        return scores


def logged_sessions(*, before: datetime, limit: int = MAX_FIT_EVENTS) -> list[LoggedSession]:
    """The sessions' events (item, RL event type) before ``before``, oldest first
    within each session: what the baselines learn from (the newest ``limit``)."""
    rows = list(
        Event.objects.filter(created_at__lt=before)
        .order_by("-created_at", "-id")
        .values_list("session_key", "product_id", "type")[:limit]
    )
    sessions: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for session_key, product_id, kind in reversed(rows):
        sessions[session_key].append((int(product_id), int(features.EVENT_CODE[kind])))
    return list(sessions.values())


def fit_baselines(catalog: ItemCatalog, sessions: list[LoggedSession], *, epsilon: float) -> dict:
    """The baselines by name, fitted on ``sessions``."""
    return {
        "popularity": PopularityPolicy(epsilon=epsilon).fit(sessions),
        "same_category": SameCategoryPolicy(catalog, epsilon=epsilon).fit(sessions),
        "cooccurrence": CooccurrencePolicy(epsilon=epsilon).fit(sessions),
    }


def baseline_comparison(
    agent: Learner,
    logged: LoggedSlates,
    catalog: ItemCatalog,
    *,
    epsilon: float,
    groups: np.ndarray | None,
    candidate_value: dict | None = None,
) -> dict:
    """Off-policy estimates of the baselines and of ``agent`` on the same logged
    impressions, the baselines fitted only on events before the oldest of them.
    With fewer than MIN_FIT_SESSIONS sessions before the window, the window is
    split in time: fitted on everything before its newer half, judged on that
    half. ``candidate_value`` is ``agent``'s estimate on all of ``logged``,
    reused when the rows are the same."""
    if not len(logged) or not logged.created_at:
        return {"n_impressions": 0, "reason": "no logged impressions with final rewards yet"}
    times = np.array(logged.created_at, dtype=object)
    cutoff = min(logged.created_at)
    sessions = logged_sessions(before=cutoff)
    rows = np.arange(len(logged))
    if len(sessions) < MIN_FIT_SESSIONS and len(logged) > 1:
        cutoff = sorted(logged.created_at)[len(logged) // 2]
        sessions = logged_sessions(before=cutoff)
        rows = np.flatnonzero(times >= cutoff)
    judged = logged if len(rows) == len(logged) else logged.subset(rows)
    candidate = (
        candidate_value
        if candidate_value is not None and len(rows) == len(logged)
        else policy_value(agent, judged, epsilon=epsilon, groups=groups)
    )
    policies = {
        name: policy_value(BaselineRanker(policy, catalog), judged, epsilon=epsilon, groups=groups)
        for name, policy in fit_baselines(catalog, sessions, epsilon=epsilon).items()
    }
    return {
        "n_impressions": len(judged),
        "fitted_before": cutoff.isoformat(),
        "fit_sessions": len(sessions),
        "candidate": candidate,
        **policies,
    }


# ---------------------------------------------------------------------------
# Personalisation: does the ranking depend on the shopper's state at all?
# ---------------------------------------------------------------------------


def personalisation_check(
    agent: Learner, observations: Sequence[Observation], *, k: int, max_jaccard: float
) -> dict:
    """``personalisation_report`` over the logged states that have a session
    item (the others are cold: they cannot tell), and whether the candidate's
    top-k differs from its no-context top-k enough: mean Jaccard with the cold
    top-k below ``max_jaccard``. With no such state yet there is nothing to judge."""
    with_context = [obs for obs in observations if session_items(obs)]
    if not with_context:
        return {
            "passed": True,
            "max_jaccard": max_jaccard,
            "reason": "no logged states with context yet: not judged",
        }
    report = personalisation_report(agent, with_context, k).to_dict()
    passed = report["jaccard_vs_cold"] < max_jaccard
    verb = "below" if passed else "not below"
    return {
        **finite_json(report),
        "passed": bool(passed),
        "max_jaccard": max_jaccard,
        "reason": (
            f"top-{k} Jaccard with the no-context top-{k} {report['jaccard_vs_cold']:.2f} "
            f"over {len(with_context)} logged states, {verb} {max_jaccard:g}"
        ),
    }


def checkpoint_publish(*, agent: Learner, catalog: ItemCatalog, run: TrainingRun) -> Checkpoint:
    """Store the learner as the next version; activate it if every guard passes
    (and RECOMMENDER_AUTO_ACTIVATE), otherwise keep it as rejected with the
    reasons, so an admin can still inspect or force-activate it."""
    agent = served_agent(agent)
    logged = logged_slates(catalog=catalog, limit=settings.RECOMMENDER_OPE_IMPRESSIONS)
    guard = guard_report(agent, logged.observations)
    evaluation = offpolicy_gate(agent, logged, catalog)
    return _store(agent, run=run, guard=guard, evaluation=evaluation)


def served_agent(agent: Learner) -> Learner:
    """What shoppers would get from the learner: its moving average of the weights
    (``DQNConfig.served_average``), the weights that are judged and stored."""
    try:
        return served_copy(agent)
    except CheckpointError:
        # Weights that went non-finite load nowhere: the learner as it is goes to
        # the guards, which reject it, and is stored for inspection.
        return agent


def guard_report(agent: Learner, observations: Sequence[Observation]) -> GuardReport:
    """Finite weights, finite and bounded Q values on logged states, and (when
    those hold: rankings of non-finite Q values mean nothing) personalisation."""
    checked = check_agent(
        agent, observations[:200], max_abs_reward=settings.RECOMMENDER_MAX_ABS_REWARD
    )
    sound = checked["finite_weights"] and checked["q_finite"] and checked["q_within_bound"]
    max_jaccard = settings.RECOMMENDER_PERSONALISATION_MAX_JACCARD
    if sound:
        personalisation = personalisation_check(
            agent,
            observations[: settings.RECOMMENDER_PERSONALISATION_STATES],
            k=settings.RECOMMENDER_DEFAULT_K,
            max_jaccard=max_jaccard,
        )
    else:
        reason = "not judged: the weights or Q values failed their checks"
        personalisation = {"passed": True, "max_jaccard": max_jaccard, "reason": reason}
    return GuardReport.from_agent_check(checked, personalisation)


def _comparison_agent(catalog: ItemCatalog) -> tuple[Checkpoint | None, Learner | None]:
    """The active version to compare with, loaded; (None, None) when there is
    none or it does not load (then the logged policy is the comparison)."""
    active = Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).first()
    if active is None:
        return None, None
    try:
        return active, load_agent(bytes(active.weights), catalog=catalog)
    except CheckpointError:
        # A corrupt active version (web processes already fall back from
        # it) must not block every new one: compare with the logged policy.
        logger.exception("Active checkpoint v%s cannot be loaded", active.version)
        return None, None


def _gate_verdict(candidate_value: dict, baseline_value: dict, n_logged: int) -> tuple[bool, str]:
    """Reject only on evidence: the candidate's whole 95% interval lies below the
    active version's estimate less the margin (importance-weighted estimates are
    noisy; a point comparison would reject good versions)."""
    candidate_high = candidate_value["snips"]["ci95"][1]
    candidate_ess = candidate_value["snips"]["ess"] or 0.0
    baseline_snips = baseline_value["snips"]["value"]
    min_ess, margin = settings.RECOMMENDER_OPE_MIN_ESS, settings.RECOMMENDER_OPE_MARGIN
    if n_logged == 0 or candidate_high is None or baseline_snips is None:
        return True, "no logged impressions with final rewards yet"
    if candidate_ess < min_ess:
        # The weights pile onto the few logged rows where the logger happened to
        # choose as the candidate would: a bootstrap over them is no evidence.
        return True, (
            f"SNIPS {candidate_value['snips']['value']:.4f} rests on {candidate_ess:.1f} "
            f"effective impressions, fewer than {min_ess:g}: too few to judge"
        )
    floor = baseline_snips - margin * abs(baseline_snips)
    return candidate_high >= floor, (
        f"SNIPS {candidate_value['snips']['value']:.4f} "
        f"(95% CI up to {candidate_high:.4f}) vs floor {floor:.4f}"
    )


def offpolicy_gate(
    agent: Learner, logged: LoggedSlates, catalog: ItemCatalog
) -> OffPolicyEvaluation:
    """The candidate's off-policy estimates beside the active version's (or the
    logging policy's) and the classic baselines', at the ε shoppers are served."""
    epsilon = settings.RECOMMENDER_EPSILON
    active, baseline_agent = _comparison_agent(catalog)
    groups = catalog_groups(catalog)
    candidate_value = policy_value(agent, logged, epsilon=epsilon, groups=groups)
    baseline_value = policy_value(baseline_agent, logged, epsilon=epsilon, groups=groups)
    passed, reason = _gate_verdict(candidate_value, baseline_value, len(logged))
    return OffPolicyEvaluation(
        estimates=candidate_value,
        # What it was compared with: the active version, or with none active
        # the logging policy itself (version null).
        active={
            "policy": f"v{active.version}" if active else "logged policy",
            "version": active.version if active else None,
            **baseline_value,
        },
        n_impressions=len(logged),
        epsilon=epsilon,
        margin=settings.RECOMMENDER_OPE_MARGIN,
        min_ess=settings.RECOMMENDER_OPE_MIN_ESS,
        passed=bool(passed),
        reason=reason,
        baselines=baseline_comparison(
            agent,
            logged,
            catalog,
            epsilon=epsilon,
            groups=groups,
            candidate_value=candidate_value,
        ),
    )


def _store(
    agent: Learner, *, run: TrainingRun, guard: GuardReport, evaluation: OffPolicyEvaluation
) -> Checkpoint:
    """The next version, a candidate (activated when auto-activation is on) or rejected."""
    passed = guard.passed and bool(evaluation.passed)
    with transaction.atomic():
        version = (Checkpoint.objects.aggregate(v=Max("version"))["v"] or 0) + 1
        checkpoint = Checkpoint.objects.create(
            version=version,
            weights=agent.save(),
            config={"agent": agent_kind(agent), **agent.config.to_dict()},
            checks=guard.to_dict(),
            evaluation=evaluation.to_dict(),
            training_run=run,
            status=Checkpoint.Status.CANDIDATE if passed else Checkpoint.Status.REJECTED,
            note="" if passed else _rejection_note(guard, evaluation),
        )
        if passed and settings.RECOMMENDER_AUTO_ACTIVATE:
            checkpoint = checkpoint_activate(checkpoint=checkpoint)
    return checkpoint


def _rejection_note(guard: GuardReport, evaluation: OffPolicyEvaluation) -> str:
    reasons = guard.failures
    if not evaluation.passed:
        reasons.append(f"off-policy estimate too low ({evaluation.reason})")
    note = "Rejected: " + ", ".join(reasons) + "."
    # Checkpoint.note holds 200 characters; the checks and evaluation keep the details.
    return note if len(note) <= 200 else note[:199] + "…"
