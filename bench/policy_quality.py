"""Policy quality in the shopper simulator: random, popularity, co-occurrence,
myopic DQN (gamma = 0), DQN and the full-information oracle, over several seeds.

    cd /work/main && .venv/bin/python -m bench.policy_quality [--quick] [--json] [--seeds N]

Each seed builds its own synthetic catalog and simulated world
(``recommender.rl.simulator``), logs uniformly random traffic to fit the
popularity and co-occurrence baselines, trains the myopic and the long-term
DQN agents from scratch with the same budget and configuration (only gamma
differs), and evaluates every policy on the same held-out shoppers (common
random numbers). The table reports, per policy, the mean over seeds of the
mean session return, the CTR (clicks per carousel) and the purchase rate
(sessions with a checkout), each with a 95% Student-t interval over seeds,
and the return as a share of the oracle's.

Seeds run in separate processes (``--workers``, default 2, one torch thread
each). ``--json`` prints one JSON object as the last line. Nothing here is a
test: the numbers are whatever this run measured.
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

POLICIES = ("random", "popularity", "cooccurrence", "myopic", "dqn", "oracle")
TARGET_ORACLE_SHARE = 0.85


@dataclass(frozen=True)
class BenchSettings:
    """Everything one run of the benchmark depends on."""

    n_items: int
    n_categories: int
    n_attributes: int
    k: int
    logged_sessions: int  # uniformly random sessions the log-based baselines are fitted on
    eval_sessions: int  # held-out sessions per policy and seed
    training_sessions: int
    sessions_per_round: int
    steps_per_round: int
    warmup_transitions: int
    sync_every_steps: int
    dqn: dict  # DQNConfig fields that differ from the defaults (gamma is the DQN's)


QUICK = BenchSettings(
    n_items=96,
    n_categories=6,
    n_attributes=8,
    k=4,
    logged_sessions=1000,
    eval_sessions=200,
    training_sessions=1200,
    sessions_per_round=20,
    steps_per_round=40,
    warmup_transitions=1500,
    sync_every_steps=240,
    dqn={
        "gamma": 0.9,
        "huber_delta": 30.0,
        "recency_half_life_s": 120.0,
        "epsilon_decay_steps": 1500,
        "target_update_interval": 0,
    },
)
FULL = dataclasses.replace(
    QUICK,
    logged_sessions=2000,
    eval_sessions=600,
    training_sessions=3000,
    dqn={**QUICK.dqn, "epsilon_decay_steps": 2500},
)


def run_seed(seed: int, settings: BenchSettings) -> dict:
    """Train and evaluate every policy under one seed; plain numbers back."""
    from recommender.rl.runtime import configure_torch_threads

    configure_torch_threads(1)
    from recommender.rl.baselines import (
        CooccurrencePolicy,
        DQNPolicy,
        OraclePolicy,
        PopularityPolicy,
        RandomPolicy,
        myopic_config,
    )
    from recommender.rl.config import DQNConfig
    from recommender.rl.evaluation import (
        TrainingSchedule,
        collect_sessions,
        evaluate_policy,
        train_dqn,
    )
    from recommender.rl.simulator import ShopperSimulator, make_catalog

    started = time.perf_counter()
    catalog = make_catalog(settings.n_items, settings.n_categories, settings.n_attributes, seed=seed)
    simulator = ShopperSimulator(catalog, seed=seed)
    k = settings.k

    logs = collect_sessions(simulator, RandomPolicy(), settings.logged_sessions, seed, k=k)
    events = [log.events for log in logs]
    policies = {
        "random": RandomPolicy(),
        "popularity": PopularityPolicy().fit(events),
        "cooccurrence": CooccurrencePolicy().fit(events),
    }

    config = DQNConfig(**{**settings.dqn, "seed": seed})
    schedule = TrainingSchedule(
        sessions=settings.training_sessions,
        sessions_per_round=settings.sessions_per_round,
        steps_per_round=settings.steps_per_round,
        warmup_transitions=settings.warmup_transitions,
        sync_every_steps=settings.sync_every_steps,
        k=k,
    )
    training_seconds = {}
    for name, agent_config in (("myopic", myopic_config(config)), ("dqn", config)):
        result = train_dqn(simulator, agent_config, schedule, seed)
        training_seconds[name] = result.seconds
        policies[name] = DQNPolicy(result.agent, name=name)
    policies["oracle"] = OraclePolicy()

    results = {}
    for name in POLICIES:
        evaluation = evaluate_policy(simulator, policies[name], settings.eval_sessions, seed, k=k)
        results[name] = {
            "return": evaluation.mean_return,
            "ctr": evaluation.ctr,
            "purchase_rate": evaluation.purchase_rate,
        }
    return {
        "seed": seed,
        "policies": results,
        "training_seconds": training_seconds,
        "seconds": time.perf_counter() - started,
    }


def aggregate(per_seed: list[dict]) -> dict:
    """Per policy and metric, the mean over seeds with its 95% interval."""
    from recommender.rl.evaluation import mean_interval

    out = {}
    for name in POLICIES:
        out[name] = {
            metric: mean_interval([r["policies"][name][metric] for r in per_seed]).to_dict()
            for metric in ("return", "ctr", "purchase_rate")
        }
    return out


def format_table(summary: dict, seeds: int) -> str:
    oracle = summary["oracle"]["return"]["mean"]
    lines = [
        f"policy quality in the shopper simulator: mean over {seeds} seeds [95% t-interval]",
        f"{'policy':<13} {'return':>24} {'% oracle':>9} {'CTR/carousel':>24} {'purchase rate':>24}",
    ]
    for name in POLICIES:
        row = summary[name]

        def cell(metric: str, row: dict = row) -> str:
            m = row[metric]
            lo, hi = m["ci95"]
            return f"{m['mean']:.3f} [{lo:.3f}, {hi:.3f}]"

        share = row["return"]["mean"] / oracle if oracle else float("nan")
        lines.append(
            f"{name:<13} {cell('return'):>24} {100 * share:>8.1f}% {cell('ctr'):>24} {cell('purchase_rate'):>24}"
        )
    return "\n".join(lines)


def targets(summary: dict) -> dict:
    """The two quality targets, as measured."""
    dqn, myopic, oracle = (summary[n]["return"] for n in ("dqn", "myopic", "oracle"))
    share = dqn["mean"] / oracle["mean"] if oracle["mean"] else float("nan")
    separated = dqn["ci95"][0] > myopic["ci95"][1]
    return {
        "dqn_share_of_oracle": share,
        "dqn_at_least_85pct_of_oracle": share >= TARGET_ORACLE_SHARE,
        "dqn_above_myopic_disjoint_ci95": separated,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller budget (under 2 minutes on 2 cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.add_argument("--seeds", type=int, default=5, help="independent seeds (default 5)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 for an interval")
    settings = QUICK if args.quick else FULL

    started = time.perf_counter()
    seeds = list(range(args.seeds))
    if args.workers > 1:
        # Spawned children: no torch state is inherited across a fork (it can hang OpenMP).
        with multiprocessing.get_context("spawn").Pool(min(args.workers, len(seeds))) as pool:
            per_seed = pool.starmap(run_seed, [(seed, settings) for seed in seeds])
    else:
        per_seed = [run_seed(seed, settings) for seed in seeds]
    summary = aggregate(per_seed)
    measured = targets(summary)
    wall = time.perf_counter() - started

    print(format_table(summary, len(seeds)))
    mean_training = sum(sum(r["training_seconds"].values()) for r in per_seed) / len(per_seed)
    print(
        f"\nDQN / oracle: {100 * measured['dqn_share_of_oracle']:.1f}% "
        f"(target >= {100 * TARGET_ORACLE_SHARE:.0f}%: {'met' if measured['dqn_at_least_85pct_of_oracle'] else 'NOT met'}); "
        f"DQN above myopic with disjoint 95% intervals: {'yes' if measured['dqn_above_myopic_disjoint_ci95'] else 'NO'}"
    )
    print(
        f"{'quick' if args.quick else 'full'} run: {len(seeds)} seeds, {args.workers} workers, "
        f"{settings.training_sessions} training sessions per agent, {settings.eval_sessions} evaluation "
        f"sessions per policy and seed; training {mean_training:.1f}s per seed; wall {wall:.1f}s"
    )
    if args.json:
        print(json.dumps({"seeds": len(seeds), "policies": summary, "targets": measured, "seconds": wall}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
