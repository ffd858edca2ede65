"""Policy quality in the shopper simulator, per shopper family: random,
popularity, same category, co-occurrence, myopic DQN (gamma = 0), DQN and the
full-information oracle, over several seeds.

    cd /work/main && .venv/bin/python -m bench.policy_quality [--quick] [--json] [--seeds N]
        [--families funnel,brand,...] [--training-sessions N] [--eval-sessions N]

Each shopper family (``recommender.rl.simulator.families``) is a population
whose taste is driven by something else (the premium funnel, the category,
the price band, the brand, bundles, novelty, no position bias); the
families the recommender's defaults are not tuned on are marked held out and
run and print last. For each family and seed the benchmark builds its own
synthetic catalog and simulated world (96 items in 6 categories, carousels of
3), logs uniformly random traffic to fit the popularity, same-category and
co-occurrence baselines, trains the per-item DQN the store serves
(``dqn_per_item``) from scratch, and evaluates every policy on the same
held-out shoppers (common random numbers). The full run also trains the
SlateQ agent (``dqn``, ``recommender.rl.slateq``) and its myopic twin
(gamma = 0) with the same budget and configuration. Each family's table reports, per policy, the mean over seeds of the
mean session return, the CTR (clicks per carousel) and the purchase rate
(sessions with a checkout), each with a 95% Student-t interval over seeds,
and the return as a share of the oracle's; a verdict line says whether the
store's DQN beats every baseline (popularity, same category, co-occurrence) with
disjoint intervals, and whether it is below popularity. A last line counts
the families where it beats them all.

``--quick`` trains each agent on 1200 simulated sessions, the full run on 3000
(``--training-sessions`` and ``--eval-sessions`` override either); both are
reported as measured. Work runs in ``--workers`` processes (default 2, one
torch thread each). ``--json`` prints one JSON object as the last line.
Nothing here is a test: the numbers are whatever this run measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass

POLICIES = (
    "random",
    "popularity",
    "same_category",
    "cooccurrence",
    "myopic",
    "dqn_per_item",
    "dqn",
    "oracle",
)
BASELINES = ("popularity", "same_category", "cooccurrence")
"""What the DQN must beat, with disjoint 95% intervals, in each family."""
TARGET_ORACLE_SHARE = 0.85


# Each seed's work is split into these parts so that the workers stay busy to the
# end; the longest parts are queued first.
PARTS = ("dqn", "dqn_per_item", "myopic", "baselines")


@dataclass(frozen=True)
class BenchSettings:
    """Everything one run of the benchmark depends on."""

    n_items: int
    n_categories: int
    n_attributes: int
    k: int  # items per carousel
    logged_sessions: int  # uniformly random sessions the log-based baselines are fitted on
    eval_sessions: int  # held-out sessions per policy and seed
    training_sessions: int  # sessions each agent is trained on
    sessions_per_round: int
    steps_per_round: int
    warmup_transitions: int
    sync_every_steps: int
    dqn: dict  # DQNConfig fields that differ from the defaults (gamma is the long-term agent's)
    parts: tuple[str, ...]  # which of PARTS run (the per-item agent only in the full run)


QUICK = BenchSettings(
    n_items=96,
    n_categories=6,
    n_attributes=8,
    k=3,
    logged_sessions=1000,
    eval_sessions=200,
    training_sessions=1200,
    sessions_per_round=20,
    steps_per_round=40,
    warmup_transitions=500,
    sync_every_steps=240,
    dqn={
        "gamma": 0.9,
        # Transition rewards reach ~30 (a premium purchase): a Huber threshold below
        # that fits medians rather than the expected rewards the ranking needs.
        "huber_delta": 30.0,
        # The shopper's interest follows the last product page it opened: let the
        # newest interactions dominate the pooled state.
        "recency_half_life_s": 30.0,
        "epsilon_decay_steps": 1000,
        # Target copies are the training loop's own (sync_every_steps), as in the store.
        "target_update_interval": 0,
    },
    parts=("dqn_per_item", "baselines"),
)
FULL = dataclasses.replace(
    QUICK,
    logged_sessions=2000,
    eval_sessions=500,
    training_sessions=3000,
    dqn={**QUICK.dqn, "epsilon_decay_steps": 2000},
    parts=PARTS,
)


def world(seed: int, settings: BenchSettings, family: str = "funnel"):
    """The seed's catalog and the family's simulated shoppers."""
    from recommender.rl.simulator import make_catalog
    from recommender.rl.simulator.families import family as shopper_family

    catalog = make_catalog(
        settings.n_items, settings.n_categories, settings.n_attributes, seed=seed
    )
    return shopper_family(family).simulator(catalog, seed=seed)


def run_part(family: str, seed: int, part: str, settings: BenchSettings) -> dict:
    """One part of one family and seed: train and evaluate an agent ("dqn",
    "myopic"), or fit and evaluate the baselines and the oracle ("baselines")."""
    from recommender.rl.runtime import configure_torch_threads, keep_freed_memory

    configure_torch_threads(1)
    keep_freed_memory()
    from recommender.rl.agents import served_copy
    from recommender.rl.baselines import (
        CooccurrencePolicy,
        DQNPolicy,
        OraclePolicy,
        PopularityPolicy,
        RandomPolicy,
        SameCategoryPolicy,
        myopic_config,
    )
    from recommender.rl.config import DQNConfig
    from recommender.rl.evaluation import (
        TrainingSchedule,
        collect_sessions,
        evaluate_policy,
        train_dqn,
    )

    started = time.perf_counter()
    simulator = world(seed, settings, family)
    k = settings.k
    training_seconds = 0.0
    if part == "baselines":
        # The log-based baselines learn from uniformly random traffic on shoppers
        # that are never evaluated.
        logs = collect_sessions(simulator, RandomPolicy(), settings.logged_sessions, seed, k=k)
        events = [log.events for log in logs]
        policies = {
            "random": RandomPolicy(),
            "popularity": PopularityPolicy().fit(events),
            "same_category": SameCategoryPolicy(simulator.catalog).fit(events),
            "cooccurrence": CooccurrencePolicy().fit(events),
            "oracle": OraclePolicy(),
        }
    else:
        config = DQNConfig(**{**settings.dqn, "seed": seed, "slate_size": k})
        if part == "myopic":
            config = myopic_config(config)
        schedule = TrainingSchedule(
            sessions=settings.training_sessions,
            sessions_per_round=settings.sessions_per_round,
            steps_per_round=settings.steps_per_round,
            warmup_transitions=settings.warmup_transitions,
            sync_every_steps=settings.sync_every_steps,
            k=k,
        )
        slateq = part != "dqn_per_item"
        result = train_dqn(simulator, config, schedule, seed, slateq=slateq)
        training_seconds = result.seconds
        # What a store would publish: the moving average of the weights.
        policies = {part: DQNPolicy(served_copy(result.agent), name=part)}

    results = {}
    for name, policy in policies.items():
        evaluation = evaluate_policy(simulator, policy, settings.eval_sessions, seed, k=k)
        results[name] = evaluation.metrics()
    return {
        "family": family,
        "seed": seed,
        "part": part,
        "policies": results,
        "training_seconds": training_seconds,
        "seconds": time.perf_counter() - started,
    }


def _run_part(job: tuple[str, int, str, BenchSettings]) -> dict:
    return run_part(*job)


def run_seeds(
    families: list[str], seeds: list[int], settings: BenchSettings, workers: int
) -> dict[str, list[dict]]:
    """Every part of every family and seed, merged back into one record per
    seed, by family. Families are queued in order (held-out ones last)."""
    jobs = [
        (family, seed, part, settings)
        for family in families
        for part in settings.parts
        for seed in seeds
    ]
    if workers > 1:
        # Spawned children: no torch state is inherited across a fork (it can hang OpenMP).
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            parts = list(pool.imap_unordered(_run_part, jobs))
    else:
        parts = [_run_part(job) for job in jobs]
    by_family: dict[str, list[dict]] = {}
    for family in families:
        per_seed = []
        for seed in seeds:
            mine = [p for p in parts if p["family"] == family and p["seed"] == seed]
            per_seed.append(
                {
                    "seed": seed,
                    "policies": {name: m for p in mine for name, m in p["policies"].items()},
                    "training_seconds": {
                        p["part"]: p["training_seconds"] for p in mine if p["part"] != "baselines"
                    },
                }
            )
        by_family[family] = per_seed
    return by_family


def aggregate(per_seed: list[dict]) -> dict:
    """Per policy and metric, the mean over seeds with its 95% interval."""
    from recommender.rl.evaluation import summarize_metrics

    return {
        name: {
            metric: interval.to_dict()
            for metric, interval in summarize_metrics(
                [r["policies"][name] for r in per_seed]
            ).items()
        }
        for name in POLICIES
        if name in per_seed[0]["policies"]
    }


def _above(a: dict, b: dict) -> bool:
    """a's 95% interval lies wholly above b's."""
    return a["ci95"][0] > b["ci95"][1]


def judged(summary: dict) -> str:
    """The DQN the targets judge: the per-item agent the store serves when it ran."""
    return "dqn_per_item" if "dqn_per_item" in summary else "dqn"


def targets(summary: dict) -> dict:
    """The quality targets of one family, as measured: the DQN's share of the
    oracle, above the myopic agent, above every baseline with disjoint 95%
    intervals, and whether it falls below popularity (its mean, and with
    disjoint intervals)."""
    dqn, oracle = summary[judged(summary)]["return"], summary["oracle"]["return"]
    popularity = summary["popularity"]["return"]
    share = dqn["mean"] / oracle["mean"] if oracle["mean"] else float("nan")
    beaten = {name: _above(dqn, summary[name]["return"]) for name in BASELINES}
    return {
        "dqn_share_of_oracle": share,
        "dqn_at_least_85pct_of_oracle": share >= TARGET_ORACLE_SHARE,
        "dqn_above_myopic_disjoint_ci95": (
            _above(dqn, summary["myopic"]["return"]) if "myopic" in summary else None
        ),
        "dqn_above_baseline_disjoint_ci95": beaten,
        "dqn_beats_all_baselines": all(beaten.values()),
        "dqn_below_popularity": dqn["mean"] < popularity["mean"],
        "dqn_below_popularity_disjoint_ci95": _above(popularity, dqn),
    }


def verdict(measured: dict) -> str:
    """One family's verdict line."""
    beaten = measured["dqn_above_baseline_disjoint_ci95"]
    if measured["dqn_beats_all_baselines"]:
        first = "DQN beats every baseline with disjoint 95% intervals: yes"
    else:
        missed = ", ".join(name for name in BASELINES if not beaten[name])
        first = f"DQN beats every baseline with disjoint 95% intervals: NO (not {missed})"
    if measured["dqn_below_popularity_disjoint_ci95"]:
        below = "BELOW popularity (disjoint intervals)"
    elif measured["dqn_below_popularity"]:
        below = "below popularity on the mean (intervals overlap)"
    else:
        below = "not below popularity"
    return (
        f"{first}; {below}; DQN / oracle {100 * measured['dqn_share_of_oracle']:.1f}% "
        f"(target >= {100 * TARGET_ORACLE_SHARE:.0f}%: "
        f"{'met' if measured['dqn_at_least_85pct_of_oracle'] else 'NOT met'})"
        + (
            ""
            if measured["dqn_above_myopic_disjoint_ci95"] is None
            else "; above myopic with disjoint intervals: "
            + ("yes" if measured["dqn_above_myopic_disjoint_ci95"] else "NO")
        )
    )


def overall(measured: dict[str, dict]) -> dict:
    """Across families: where the DQN beats every baseline, where it is below
    popularity (on the mean; and with disjoint intervals)."""
    return {
        "families": len(measured),
        "beats_all_baselines": [n for n, m in measured.items() if m["dqn_beats_all_baselines"]],
        "below_popularity": [n for n, m in measured.items() if m["dqn_below_popularity"]],
        "below_popularity_disjoint_ci95": [
            n for n, m in measured.items() if m["dqn_below_popularity_disjoint_ci95"]
        ],
    }


def summary_line(result: dict, held_out: set[str]) -> str:
    def label(name: str) -> str:
        notes = ["held out"] if name in held_out else []
        if name not in result["below_popularity_disjoint_ci95"]:
            notes.append("intervals overlap")
        return f"{name} ({', '.join(notes)})" if notes else name

    below = ", ".join(label(n) for n in result["below_popularity"])
    return (
        f"DQN beats all baselines on {len(result['beats_all_baselines'])} of "
        f"{result['families']} families; below popularity on: {below or 'none'}"
    )


def format_table(summary: dict, per_seed: list[dict], title: str = "") -> str:
    oracle = summary["oracle"]["return"]["mean"]
    lines = [
        f"policy quality in the shopper simulator{title}: mean over {len(per_seed)} seeds "
        "[95% t-interval]",
        f"{'policy':<13} {'session return':>25} {'% oracle':>9} {'CTR (clicks/carousel)':>24} {'purchase rate':>22}",
    ]
    for name in (n for n in POLICIES if n in summary):
        row = summary[name]

        def cell(metric: str, digits: int, row: dict = row) -> str:
            m = row[metric]
            lo, hi = m["ci95"]
            return f"{m['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

        share = row["return"]["mean"] / oracle if oracle else float("nan")
        lines.append(
            f"{name:<13} {cell('return', 1):>25} {100 * share:>8.1f}% "
            f"{cell('ctr', 3):>24} {cell('purchase_rate', 3):>22}"
        )
    lines.append("")
    lines.append(
        "per seed, session return: "
        + "; ".join(
            f"seed {r['seed']}: "
            + " ".join(
                f"{n}={r['policies'][n]['return']:.1f}"
                for n in ("myopic", "dqn", "dqn_per_item", "oracle")
                if n in r["policies"]
            )
            for r in per_seed
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from recommender.rl.simulator.families import families as shopper_families

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller training budget (about 2 minutes per family on 2 cores)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object as the last line"
    )
    parser.add_argument("--seeds", type=int, default=5, help="independent seeds (default 5)")
    parser.add_argument(
        "--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)"
    )
    parser.add_argument(
        "--families",
        default="",
        help="comma-separated shopper families (default: all; held-out ones run last)",
    )
    parser.add_argument(
        "--training-sessions", type=int, help="sessions each agent trains on (overrides the preset)"
    )
    parser.add_argument(
        "--eval-sessions",
        type=int,
        help="evaluation sessions per policy, family and seed (overrides the preset)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 for an interval")
    try:
        chosen = shopper_families(args.families)
    except ValueError as exc:
        parser.error(str(exc))
    settings = QUICK if args.quick else FULL
    for flag, field in (
        ("--training-sessions", "training_sessions"),
        ("--eval-sessions", "eval_sessions"),
    ):
        value = getattr(args, field)
        if value is not None:
            if value < 1:
                parser.error(f"{flag} must be at least 1")
            settings = dataclasses.replace(settings, **{field: value})

    started = time.perf_counter()
    seeds = list(range(args.seeds))
    by_family = run_seeds([f.name for f in chosen], seeds, settings, args.workers)
    wall = time.perf_counter() - started

    held_out = {f.name for f in chosen if f.held_out}
    report: dict[str, dict] = {}
    for shopper in chosen:
        per_seed = by_family[shopper.name]
        summary = aggregate(per_seed)
        measured = targets(summary)
        report[shopper.name] = {
            "held_out": shopper.held_out,
            "policies": summary,
            "targets": measured,
        }
        mark = " (held out: the defaults were not tuned on it)" if shopper.held_out else ""
        print(f"== family {shopper.name}{mark}: {shopper.description}")
        print(format_table(summary, per_seed, title=f", family {shopper.name}"))
        print(verdict(measured))
        print()
    result = overall({name: r["targets"] for name, r in report.items()})
    print(summary_line(result, held_out))
    training = [
        s
        for per_seed in by_family.values()
        for r in per_seed
        for s in r["training_seconds"].values()
    ]
    print(
        f"{'quick' if args.quick else 'full'} run: {len(chosen)} families, {len(seeds)} seeds, "
        f"{args.workers} workers, {settings.training_sessions} training sessions per agent "
        f"({sum(training) / max(len(training), 1):.1f}s each on average), "
        f"{settings.eval_sessions} evaluation sessions per policy, family and seed; "
        f"wall {wall:.1f}s"
    )
    if args.json:
        print(
            json.dumps(
                {"seeds": len(seeds), "families": report, "summary": result, "seconds": wall}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
