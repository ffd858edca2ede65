"""Replay-training throughput: transitions per second of ``DQNAgent.train_steps``
(batch 256, the default DQNConfig, next-state candidate sets of 128 items) on
1 and 2 threads, beside a faithful port of the naive loop DQN articles teach,
run on the same network and data:

- the replay memory is a Python list of transitions, and each minibatch is
  turned into arrays from Python lists;
- ``predict`` is called separately for the target and the online network
  (each a full forward pass under no_grad, converted to numpy);
- targets are built in a Python loop over the minibatch;
- ``fit`` then runs one optimizer step.

The SlateQ agent (``recommender.rl.slateq``) is timed beside them on the same
transitions: its value steps (Double-DQN targets over each next candidate
set's best slate under the click model) with its click-model steps.

The "store sets" column times the per-item agent on the same transitions
with the candidate sets the store itself logs: every catalog item except the
next state's cart, its page product and 3% of the catalog sold out (stored as
what they leave out, and scored over the whole catalog).

Each rate is the median over five blocks of steps (two with ``--quick``), so
that a moment of contention on a shared machine moves it less.

    python -m bench.training [--quick] [--json]
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench._common import parser, print_json, print_table, synthetic_catalog, synthetic_observation
from recommender.rl.agent import DQNAgent
from recommender.rl.config import DQNConfig
from recommender.rl.encoding import EncodedStates
from recommender.rl.network import StateInputs, candidate_q, pair_q
from recommender.rl.replay import ReplayBuffer
from recommender.rl.runtime import keep_freed_memory
from recommender.rl.slateq import SlateQAgent, SlateReplay
from recommender.rl.types import ItemCatalog, Transition

N_ITEMS = 2_000
N_CANDIDATES = 128
TARGET_PER_S = 30_000


def synthetic_transitions(
    catalog: ItemCatalog, n: int, rng: np.random.Generator
) -> list[Transition]:
    """Sessions of varied length; next candidate sets of N_CANDIDATES items."""
    out = []
    for _ in range(n):
        state = synthetic_observation(
            catalog,
            rng,
            int(rng.integers(0, 17)),
            int(rng.integers(0, 5)),
            int(rng.integers(0, 33)),
        )
        done = bool(rng.random() < 0.1)
        next_state = None if done else synthetic_observation(catalog, rng, 16, 3, 32)
        candidates = (
            None
            if done
            else tuple(catalog.ids[rng.choice(len(catalog), N_CANDIDATES, replace=False)].tolist())
        )
        out.append(
            Transition(
                state=state,
                item=int(catalog.ids[rng.integers(len(catalog))]),
                reward=float(rng.random() < 0.05),
                next_state=next_state,
                done=done,
                propensity=0.1,
                next_candidates=candidates,
            )
        )
    return out


def store_candidate_sets(
    transitions: list[Transition], catalog: ItemCatalog, rng: np.random.Generator
) -> list[Transition]:
    """The same transitions with the store's next-candidate rule: all but the
    next state's cart and page product, and a sold-out 3% of the catalog."""
    sold_out = tuple(catalog.ids[rng.choice(len(catalog), len(catalog) * 3 // 100, replace=False)])
    return [
        t._replace(next_candidates=None, next_unavailable=() if t.done else sold_out)
        for t in transitions
    ]


class NaiveTrainer:
    """The article loop on the agent's networks: list memory, separate predict
    calls returning numpy, Python-built targets, then fit."""

    def __init__(self, agent: DQNAgent, replay: ReplayBuffer) -> None:
        self.agent = agent
        stored = replay.batch(np.arange(len(replay)))
        columns = [
            *stored.states,
            stored.actions,
            stored.rewards,
            *stored.next_states,
            stored.dones,
            stored.next_candidates,
        ]
        # The memory as the articles keep it: one Python tuple per transition.
        self.memory = [tuple(column[i] for column in columns) for i in range(len(replay))]

    def predict(
        self, network: nn.Module, states: EncodedStates, candidates: np.ndarray
    ) -> np.ndarray:
        """Q of each state's candidates: a full forward pass, returned as numpy."""
        with torch.no_grad():
            table = network.items(self.agent.features)
            state_out = network.states(table, StateInputs.from_encoded(states, states.rows))
            rows = torch.from_numpy(np.maximum(candidates, 0).astype(np.int64))
            return candidate_q(state_out, table[rows]).numpy()

    def fit(self, states: EncodedStates, actions: np.ndarray, targets: np.ndarray) -> float:
        """One optimizer step of the online network towards ``targets``."""
        agent, c = self.agent, self.agent.config
        with torch.no_grad():
            table = agent.online.items(agent.features)
        state_out = agent.online.states(table, StateInputs.from_encoded(states, states.rows))
        q = pair_q(state_out, agent.online.items(agent.features.take(torch.from_numpy(actions))))
        loss = F.huber_loss(q, torch.from_numpy(targets), delta=c.huber_delta)
        agent.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.online.parameters(), c.max_grad_norm)
        agent.optimizer.step()
        return float(loss.detach())

    def train_step(self, batch_size: int) -> float:
        minibatch = random.sample(self.memory, batch_size)
        columns = [np.array(column) for column in zip(*minibatch, strict=True)]
        width = len(EncodedStates._fields)
        states = EncodedStates(*columns[:width])
        actions, rewards = columns[width], columns[width + 1]
        next_states = EncodedStates(*columns[width + 2 : 2 * width + 2])
        dones, candidates = columns[2 * width + 2], columns[2 * width + 3]
        next_online = self.predict(self.agent.online, next_states, candidates)
        next_target = self.predict(self.agent.target, next_states, candidates)
        targets = np.empty(batch_size, dtype=np.float32)
        for i in range(batch_size):
            valid = np.flatnonzero(candidates[i] >= 0)
            if dones[i] or not len(valid):
                targets[i] = rewards[i]
            else:
                best = valid[np.argmax(next_online[i, valid])]
                targets[i] = rewards[i] + self.agent.config.gamma * next_target[i, best]
        return self.fit(states, actions, targets)


def timed_rate(train, steps: int, batch: int, blocks: int) -> float:
    """Median transitions/s over ``blocks`` runs of ``steps // blocks`` steps:
    one slow moment of a shared machine moves a median less than a total."""
    per_block = max(1, steps // blocks)
    rates = []
    for _ in range(blocks):
        start = time.perf_counter()
        train(per_block)
        rates.append(per_block * batch / (time.perf_counter() - start))
    return float(np.median(rates))


def measure(
    threads: int,
    steps: int,
    replay: ReplayBuffer,
    slate_replay: SlateReplay,
    store_replay: ReplayBuffer,
    catalog: ItemCatalog,
    config: DQNConfig,
    blocks: int,
) -> dict:
    torch.set_num_threads(threads)
    rng = np.random.default_rng(1)
    batch = config.batch_size
    agent = DQNAgent(config, catalog)
    agent.train_steps(replay, 10, rng)  # warm-up
    fast = timed_rate(lambda n: agent.train_steps(replay, n, rng), steps, batch, blocks)

    store = DQNAgent(config, catalog)
    store.train_steps(store_replay, 10, rng)  # warm-up
    store_rate = timed_rate(lambda n: store.train_steps(store_replay, n, rng), steps, batch, blocks)

    slateq = SlateQAgent(config, catalog)
    slateq.train_steps(slate_replay, 10, rng)  # warm-up
    slateq_rate = timed_rate(
        lambda n: slateq.train_steps(slate_replay, n, rng), steps, batch, blocks
    )

    naive = NaiveTrainer(DQNAgent(config, catalog), replay)
    random.seed(1)
    naive.train_step(batch)

    def naive_steps(n: int) -> None:
        for _ in range(n):
            naive.train_step(batch)

    slow = timed_rate(naive_steps, max(blocks, steps // 10), batch, blocks)
    return {
        "transitions_per_s": fast,
        "naive_transitions_per_s": slow,
        "ratio": fast / slow,
        "slateq_transitions_per_s": slateq_rate,
        "store_sets_transitions_per_s": store_rate,
    }


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    keep_freed_memory()  # as the Celery worker that trains does
    config = DQNConfig()
    rng = np.random.default_rng(0)
    catalog = synthetic_catalog(N_ITEMS, rng)
    transitions = synthetic_transitions(catalog, 2_000 if args.quick else 20_000, rng)
    replay = ReplayBuffer(config)
    replay.add_many(transitions, catalog)
    slate_replay = SlateQAgent(config, catalog).make_replay()
    slate_replay.add_many(transitions, catalog)
    store_replay = ReplayBuffer(config)
    store_replay.add_many(store_candidate_sets(transitions, catalog, rng), catalog)
    steps, blocks = (20, 2) if args.quick else (400, 5)
    results = {
        str(t): measure(t, steps, replay, slate_replay, store_replay, catalog, config, blocks)
        for t in (1, 2)
    }
    print_table(
        f"Replay training, batch {config.batch_size}, {N_ITEMS:,} items, next-candidate sets of "
        f"{N_CANDIDATES}, default DQNConfig",
        [
            "threads",
            "transitions/s",
            "naive transitions/s",
            "ratio",
            "target",
            "SlateQ /s",
            "store sets /s",
        ],
        [
            [
                t,
                f"{r['transitions_per_s']:,.0f}",
                f"{r['naive_transitions_per_s']:,.0f}",
                f"{r['ratio']:.1f}x",
                f">= {TARGET_PER_S:,}" if t == "2" else "-",
                f"{r['slateq_transitions_per_s']:,.0f}",
                f"{r['store_sets_transitions_per_s']:,.0f}",
            ]
            for t, r in results.items()
        ],
    )
    if args.json:
        print_json({"batch": config.batch_size, "results": results})


if __name__ == "__main__":
    main()
