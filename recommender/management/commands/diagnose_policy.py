"""How much a stored policy's carousels depend on the shopper (read-only)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from recommender.evaluation.diagnosis import PolicyDiagnosis, diagnose
from recommender.models import Checkpoint
from recommender.rl.checkpoint import CheckpointError


class Command(BaseCommand):
    help = (
        "Measure how much the active (or a given) policy version personalises: over the "
        "states of recent impressions, and for new shoppers who each viewed three products "
        "of one category. Writes nothing."
    )

    def add_arguments(self, parser) -> None:
        # Not --version: every management command has that (Django's own version).
        parser.add_argument(
            "--checkpoint", type=int, metavar="VERSION", help="Version (default: the active one)."
        )
        parser.add_argument(
            "--states", type=int, default=500, help="Recent impressions whose states are used."
        )
        parser.add_argument("--k", type=int, default=8, help="Carousel size.")
        parser.add_argument("--seed", type=int, default=0, help="Picks the probe's products.")
        parser.add_argument("--json", action="store_true", help="One JSON object instead.")

    def handle(self, *args, checkpoint, states, k, seed, json: bool, **options) -> None:
        version = checkpoint
        if states < 1 or k < 1:
            raise CommandError("--states and --k must be at least 1.")
        checkpoints = Checkpoint.objects.all()
        checkpoint = (
            checkpoints.filter(version=version).first()
            if version is not None
            else checkpoints.filter(status=Checkpoint.Status.ACTIVE).first()
        )
        if checkpoint is None:
            raise CommandError(
                f"No checkpoint v{version}." if version is not None else "No active checkpoint."
            )
        try:
            diagnosis = diagnose(checkpoint=checkpoint, states=states, k=k, seed=seed)
        except CheckpointError as exc:
            raise CommandError(f"v{checkpoint.version} cannot be loaded: {exc}") from exc
        if json:
            self.stdout.write(_json(diagnosis.to_dict()))
        else:
            self.stdout.write(render(diagnosis))


def _json(data: dict) -> str:
    return json.dumps(data, indent=None, separators=(",", ":"))


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render(diagnosis: PolicyDiagnosis) -> str:
    k = diagnosis.k
    lines = [
        f"Policy v{diagnosis.version} ({diagnosis.agent}), top-{k}.",
        "",
        "Over logged states (with context: states holding a viewed, clicked, carted or bought item)",
        f"{'states':<24}{'n':>6}{'pairwise J':>12}{'J vs cold':>11}{'same cat.':>11}"
        f"{'chance':>8}{'state var':>11}{'b(i) var':>10}{'<f,g> var':>11}{'<v,x> var':>11}"
        f"{'cold b(i)':>11}{'cold <f,g>':>12}{'cold <v,x>':>12}",
    ]
    groups = [("", diagnosis.logged), (" with context", diagnosis.with_context)]
    if diagnosis.without_context is not None:
        groups.append(("", {"all without context": diagnosis.without_context}))
    for label, reports in groups:
        for name, r in reports.items():
            share = r.variance_share or {}
            cold = r.variance_share_cold or {}
            lines.append(
                f"{name + label:<24}{r.n_states:>6}{_num(r.mean_jaccard):>12}"
                f"{_num(r.jaccard_vs_cold):>11}{_num(r.related_share):>11}"
                f"{_num(r.related_chance):>8}{_num(r.state_share):>11}"
                f"{_num(share.get('item_bias')):>10}{_num(share.get('interaction')):>11}"
                f"{_num(share.get('context')):>11}"
                f"{_num(cold.get('item_bias')):>11}{_num(cold.get('interaction')):>12}"
                f"{_num(cold.get('context')):>12}"
            )
    lines += [
        "",
        "pairwise J: mean Jaccard of the top-k between states (1: everyone alike); J vs cold:",
        "with the same request with no context (1: the state changes nothing); same cat.: share",
        "of the top-k in the newest session item's category, beside chance (that category's",
        "share of the candidates); state var: share of Q's variance across items explained by",
        "Q(s, i) - Q(cold, i); b(i) / <f,g> / <v,x> var: shares explained by the item bias, the",
        "two towers' interaction and the context term, with the state as logged and zeroed (cold).",
        "",
    ]
    probe = diagnosis.probe
    if probe is None:
        lines.append("Category probe: no category has three products in stock.")
    else:
        lines += [
            f"Category probe: {probe.shoppers} new shoppers, each viewed 3 products of one category",
            f"  home carousels: mean Jaccard between shoppers {_num(probe.home_jaccard)}, "
            f"same-category share {_num(probe.home_related_share)} "
            f"(chance {_num(probe.home_related_chance)}), "
            f"items explained by a viewed product {_num(probe.home_explained_share)}",
            f"  product pages:  same-category share {_num(probe.product_related_share)} "
            f"(chance {_num(probe.product_related_chance)})",
        ]
    return "\n".join(lines)
