"""What learning from a log buys, judged off-policy on real and synthetic logs.

Real: the Open Bandit sample in data/open_bandit_dataset (ZOZOTOWN, 80 items,
3 positions, 10,000 rows per logging policy). For each log, the store's
learner (the per-item DQN agent with DQNConfig(), what ``train_offline``
trains) learns from the earlier 70% of the rows, with importance-weighted
sampling ("dqn") and without ("dqn-plain"); then it, uniform, the logging
policy and the three baselines (fitted on the same 70%) are judged on the
held-out 30% by SNIPS and DR with 95% bootstrap intervals and the effective
sample size. A third block trains on the whole Thompson-sampling log and
judges on the whole uniform-random one (the same items; a uniform logger's
rows are the fairest test).

Synthetic: a log with known click rates whose logger favours some items
regardless of their appeal; the true click rate per position of the learnt
greedy slate, with and without importance weighting, over seeds, beside the
best slate's and uniform's.

No database: the files are read with recommender.datasets.formats.

    python -m bench.offline [--quick] [--json]
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bench._common import parser, print_json, print_table

DATA = Path(__file__).resolve().parent.parent / "data" / "open_bandit_dataset"
STEPS = 2000
TEST_FRACTION = 0.3


def load(folder: Path):
    from recommender.datasets import arrays, formats

    files = formats.locate(folder, "obd")
    items = formats.read_items(files)
    rows = list(formats.read_rows(files, {i.item_id for i in items}))
    return arrays.feedback_from_records("obd", items, rows)


def train(log, rows, *, steps: int, weighted: bool, seed: int = 0):
    from recommender.rl import offline
    from recommender.rl.agent import DQNAgent
    from recommender.rl.config import DQNConfig
    from recommender.rl.core import category_count

    agent = DQNAgent(DQNConfig(seed=seed), log.catalog, category_count(log.catalog))
    offline.train(
        agent, log, rows, steps=steps, rng=np.random.default_rng(seed), importance_weighted=weighted
    )
    return agent


def judge(log, rows, targets: dict, bootstrap: int) -> list[dict]:
    from recommender.rl import offline

    out = []
    for name, target in targets.items():
        result = offline.evaluate(
            log, rows, target, estimators=["snips", "dr"], n_bootstrap=bootstrap
        )
        snips, dr = result.estimates["snips"], result.estimates["dr"]
        out.append(
            {
                "policy": name,
                "snips": [snips.value, snips.ci_low, snips.ci_high],
                "dr": [dr.value, dr.ci_low, dr.ci_high],
                "ess": snips.ess,
                "rows": len(rows),
                "logged_rate": result.logged_value,
            }
        )
    return out


def real_blocks(steps: int, bootstrap: int) -> dict[str, list[dict]]:
    from recommender.rl import offline

    blocks = {}
    logs = {name: load(DATA / name / "all") for name in ("random", "bts")}
    for name, log in logs.items():
        fit_rows, test_rows = offline.time_split(len(log), TEST_FRACTION)
        targets = {"uniform": "uniform", "logged": "logged"}
        for baseline in offline.BASELINES:
            targets[baseline] = offline.baseline_scorer(baseline, log, test_rows, fit_rows=fit_rows)
        for label, weighted in (("dqn", True), ("dqn-plain", False)):
            agent = train(log, fit_rows, steps=steps, weighted=weighted)
            targets[label] = offline.policy_scorer(agent, log)
        blocks[f"{name}: earlier 70% -> held-out 30%"] = judge(log, test_rows, targets, bootstrap)
    bts, uniform_log = logs["bts"], logs["random"]
    rows = np.arange(len(uniform_log))
    targets = {"uniform": "uniform", "logged": "logged"}
    for baseline in offline.BASELINES:
        fitted = offline.make_baseline(baseline, bts.catalog).fit(
            bts.sessions_for_fitting(np.arange(len(bts)))
        )
        targets[baseline] = offline.policy_scorer(fitted, uniform_log)
    for label, weighted in (("dqn", True), ("dqn-plain", False)):
        agent = train(bts, np.arange(len(bts)), steps=steps, weighted=weighted)
        targets[label] = offline.policy_scorer(agent, uniform_log)
    blocks["bts (all) -> random (all)"] = judge(uniform_log, rows, targets, bootstrap)
    return blocks


# --- synthetic ------------------------------------------------------------------------------

N_ITEMS, POSITION_EFFECT = 30, np.array([1.0, 0.7, 0.5])


def synthetic(seed: int, n: int):
    """A skewed logger (by item index, unrelated to appeal) over 30 items."""
    from recommender.rl import offline
    from recommender.rl.types import ItemCatalog

    rng = np.random.default_rng(seed)
    appeal = rng.uniform(0.01, 0.3, N_ITEMS)
    logging = np.exp(-0.15 * np.arange(N_ITEMS))
    logging /= logging.sum()
    positions = rng.integers(0, 3, n)
    actions = rng.choice(N_ITEMS, size=n, p=logging)
    rewards = (rng.random(n) < appeal[actions] * POSITION_EFFECT[positions]).astype(float)
    catalog = ItemCatalog(
        ids=np.arange(N_ITEMS),
        categories=np.arange(N_ITEMS) % 5,
        prices=np.full(N_ITEMS, 10.0, dtype=np.float32),
        attributes=np.zeros((N_ITEMS, 0), dtype=np.float32),
    )
    observation = offline.observation_from_clicks({})
    log = offline.LoggedFeedback(
        catalog=catalog,
        observations=[observation] * n,
        actions=actions,
        positions=positions,
        propensities=logging[actions],
        rewards=rewards,
        n_positions=3,
    )
    return log, appeal


def slate_value(appeal: np.ndarray, order: np.ndarray) -> float:
    return float(np.mean([appeal[order[k]] * POSITION_EFFECT[k] for k in range(3)]))


def synthetic_block(seeds: list[int], steps: int, n: int) -> list[list[str]]:
    from recommender.rl.types import Observation, Slot

    values: dict[str, list[float]] = {"dqn": [], "dqn-plain": [], "best": [], "uniform": []}
    for seed in seeds:
        log, appeal = synthetic(seed, n)
        rows = np.arange(n)
        for label, weighted in (("dqn", True), ("dqn-plain", False)):
            agent = train(log, rows, steps=steps, weighted=weighted, seed=seed)
            q = agent.q_table([Observation(slot=Slot.HOME)])[0]
            values[label].append(slate_value(appeal, np.argsort(-q, kind="stable")))
        values["best"].append(slate_value(appeal, np.argsort(-appeal)))
        values["uniform"].append(float(appeal.mean() * POSITION_EFFECT.mean()))
    return [
        [name, f"{np.mean(v):.4f}", f"{min(v):.4f}", f"{max(v):.4f}"] for name, v in values.items()
    ]


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    from recommender.rl.runtime import configure_torch_threads, keep_freed_memory

    configure_torch_threads(1)
    keep_freed_memory()
    steps = 300 if args.quick else STEPS
    bootstrap = 200 if args.quick else 1000
    start = time.perf_counter()
    blocks = real_blocks(steps, bootstrap)

    def interval(v: list[float]) -> str:
        return f"{v[0]:.4f} [{v[1] + 0.0:.4f}, {v[2] + 0.0:.4f}]"

    for title, results in blocks.items():
        rows = [
            [r["policy"], interval(r["snips"]), interval(r["dr"]), f"{r['ess']:,.0f}"]
            for r in results
        ]
        logged = results[0]
        print_table(
            f"Open Bandit sample, {title}: {logged['rows']:,} rows judged, logged click "
            f"rate {logged['logged_rate']:.4f} per position ({steps} training steps)",
            ["policy", "SNIPS [95% CI]", "DR [95% CI]", "ESS"],
            rows,
        )
        print()
    seeds = [0, 1, 2] if args.quick else [0, 1, 2, 3, 4]
    n = 6000
    synthetic_rows = synthetic_block(seeds, steps, n)
    print_table(
        f"Synthetic skewed log ({n:,} rows, {N_ITEMS} items, {len(seeds)} seeds): true click "
        "rate per position of the learnt greedy slate",
        ["policy", "mean", "min", "max"],
        synthetic_rows,
    )
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        print_json({"real": blocks, "synthetic": synthetic_rows, "steps": steps})


if __name__ == "__main__":
    main()
