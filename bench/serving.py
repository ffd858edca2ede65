"""Latency of one recommendation: encode the session, score the candidates,
fill a K=8 slate with ε-greedy exploration, on one thread, with the item
vectors precomputed as the serving cache holds them. Beside it, the bare limit
measured in the same run: a dot product of one vector with the candidates'
precomputed vectors plus a top-8 argpartition. The same requests are also
timed with the SlateQ agent (``recommender.rl.slateq``: the value and click
towers, then the exact best slate under the click model).

    python -m bench.serving [--quick] [--json]
"""

from __future__ import annotations

import os

# One thread for numpy's BLAS as well as torch's; must precede the numpy import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._common import parser, print_json, print_table, synthetic_catalog, synthetic_observation  # noqa: E402
from recommender.rl.agent import DQNAgent  # noqa: E402
from recommender.rl.config import DQNConfig  # noqa: E402
from recommender.rl.slateq import SlateQAgent  # noqa: E402

K = 8
EPSILON = 0.1
SIZES = (1_000, 10_000, 100_000)
TARGET_P99_MS = {10_000: 2.0, 100_000: 10.0}


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples) * 1e3, [50, 99])
    return float(p50), float(p99)


def measure(n_candidates: int, repeats: int, n_sessions: int, rng: np.random.Generator) -> dict:
    catalog = synthetic_catalog(n_candidates, rng)
    agent = DQNAgent(DQNConfig(), catalog)
    agent.item_table()  # the per-checkpoint item vectors, as the serving cache holds them
    observations = [synthetic_observation(catalog, rng) for _ in range(n_sessions)]
    # Eligible: every product but the cart's and the one on the page.
    candidates = [
        np.setdiff1d(catalog.ids, [*obs.cart_items, obs.current_item], assume_unique=False)
        for obs in observations
    ]
    vectors = agent.item_table().numpy()
    candidate_vectors = [np.ascontiguousarray(vectors[agent.index.rows(c)]) for c in candidates]
    query = np.append(rng.standard_normal(vectors.shape[1] - 1), 1.0).astype(np.float32)

    # One untimed slate, as a web process serves one when it loads a checkpoint
    # (serving.server.load_servable): what is built on first use is built.
    agent.act(observations[0], candidates[0], K, rng, epsilon=EPSILON)
    latencies, limits = [], []
    for i in range(repeats):
        obs, ids = observations[i % n_sessions], candidates[i % n_sessions]
        start = time.perf_counter()
        slate = agent.act(obs, ids, K, rng, epsilon=EPSILON)
        latencies.append(time.perf_counter() - start)
        assert len(slate.items) == K

        matrix = candidate_vectors[i % n_sessions]
        start = time.perf_counter()
        scores = matrix @ query
        np.argpartition(-scores, K - 1)[:K]
        limits.append(time.perf_counter() - start)
    p50, p99 = percentiles_ms(latencies)
    limit_p50, limit_p99 = percentiles_ms(limits)

    slateq = SlateQAgent(DQNConfig(slate_size=K), catalog)
    slateq.core.item_table()
    slateq.slates([observations[0]], [candidates[0]], K, [rng], epsilon=EPSILON)
    slateq_latencies = []
    for i in range(repeats):
        obs, ids = observations[i % n_sessions], candidates[i % n_sessions]
        start = time.perf_counter()
        (slate,) = slateq.slates([obs], [ids], K, [rng], epsilon=EPSILON)
        slateq_latencies.append(time.perf_counter() - start)
        assert len(slate.items) == K
    slateq_p50, slateq_p99 = percentiles_ms(slateq_latencies)
    return {
        "p50_ms": p50,
        "p99_ms": p99,
        "limit_p50_ms": limit_p50,
        "limit_p99_ms": limit_p99,
        "slateq_p50_ms": slateq_p50,
        "slateq_p99_ms": slateq_p99,
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    results = {}
    for size in SIZES:
        repeats = (
            (200 if size < 100_000 else 50) if args.quick else (3000 if size < 100_000 else 600)
        )
        results[str(size)] = measure(size, repeats, 8 if args.quick else 64, rng)
    rows = []
    for size in SIZES:
        r = results[str(size)]
        target = TARGET_P99_MS.get(size)
        rows.append(
            [
                f"{size:,}",
                f"{r['p50_ms']:.3f}",
                f"{r['p99_ms']:.3f}",
                f"<= {target:g}" if target else "-",
                f"{r['limit_p50_ms']:.3f}",
                f"{r['limit_p99_ms']:.3f}",
                f"{r['slateq_p50_ms']:.3f}",
                f"{r['slateq_p99_ms']:.3f}",
            ]
        )
    print_table(
        f"Slate latency, K={K}, epsilon={EPSILON}, 1 thread (encode + state tower + scoring + slate)",
        [
            "candidates",
            "p50 ms",
            "p99 ms",
            "p99 target",
            "limit p50 ms",
            "limit p99 ms",
            "SlateQ p50 ms",
            "SlateQ p99 ms",
        ],
        rows,
    )
    if args.json:
        print_json({"k": K, "threads": 1, "results": results})


if __name__ == "__main__":
    main()
