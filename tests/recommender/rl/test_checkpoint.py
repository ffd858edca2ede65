import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recommender.rl.agent import DQNAgent
from recommender.rl.agents import check_agent, load_agent
from recommender.rl.checkpoint import CheckpointError
from recommender.rl.config import DQNConfig
from recommender.rl.replay import ReplayBuffer
from recommender.rl.types import EventType, Observation, Slot, Transition
from tests.recommender.rl.factories import item_catalog

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = DQNConfig(
    id_dim=4,
    category_dim=4,
    item_hidden=16,
    embed_dim=8,
    state_hidden=16,
    batch_size=16,
    target_update_interval=0,
)
ITEMS = item_catalog(8, max_price=80, attributes=np.eye(8, 3))
OBSERVATIONS = [
    Observation(slot=Slot.HOME),
    Observation(
        slot=Slot.PRODUCT,
        current_item=3,
        recent_items=(1, 3),
        recent_events=(EventType.VIEW, EventType.CLICK),
        recent_ages=(60.0, 5.0),
        cart_items=(2,),
        page_depth=2,
    ),
]


def trained_agent() -> DQNAgent:
    agent = DQNAgent(CONFIG, ITEMS)
    replay = ReplayBuffer(CONFIG)
    replay.add_many(
        [
            Transition(OBSERVATIONS[0], 3, 1.0, OBSERVATIONS[1], False, 0.5, (4, 5, 6)),
            Transition(OBSERVATIONS[1], 5, 0.0, None, True, 0.5),
        ],
        ITEMS,
    )
    agent.train_steps(replay, 5, np.random.default_rng(0))
    return agent


def tampered(data: bytes, edit) -> bytes:
    payload = torch.load(io.BytesIO(data), weights_only=True)
    edit(payload)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def test_round_trip_gives_identical_q_values_and_training_state():
    agent = trained_agent()
    loaded = DQNAgent.load(agent.save())
    for network in ("online", "target"):
        np.testing.assert_array_equal(
            agent.q_values_batch(OBSERVATIONS, ITEMS.ids, network),
            loaded.q_values_batch(OBSERVATIONS, ITEMS.ids, network),
        )
    assert loaded.step == agent.step == 5
    assert loaded.config == agent.config
    np.testing.assert_array_equal(loaded.catalog.ids, ITEMS.ids)
    # The optimizer state came along: the next steps are the same for both...
    replay = ReplayBuffer(CONFIG)
    replay.add_many([Transition(OBSERVATIONS[0], 2, 1.0, None, True)], ITEMS)
    fresh = DQNAgent.load(agent.save())
    first = agent.train_steps(replay, 3, np.random.default_rng(1))
    second = loaded.train_steps(replay, 3, np.random.default_rng(1))
    assert first.loss == second.loss
    np.testing.assert_array_equal(
        agent.q_values_batch(OBSERVATIONS, ITEMS.ids),
        loaded.q_values_batch(OBSERVATIONS, ITEMS.ids),
    )
    # ... and not those of the same weights under a new optimizer.
    fresh.adam._pending = None
    fresh.train_steps(replay, 3, np.random.default_rng(1))
    assert not np.array_equal(
        agent.q_values_batch(OBSERVATIONS, ITEMS.ids), fresh.q_values_batch(OBSERVATIONS, ITEMS.ids)
    )


def test_a_learner_saved_before_the_affinities_had_their_own_rate_trains_on():
    """Older learners' optimizer state has two groups (the per-pair affinities
    with the context term's shared weights): loading keeps every moment and
    trains each group at today's rates."""
    agent = trained_agent()

    def two_groups(payload):
        base, pairs, shared = payload["optimizer"]["param_groups"]
        payload["optimizer"]["param_groups"] = [
            base,
            {**shared, "params": pairs["params"] + shared["params"]},
        ]

    loaded = DQNAgent.load(tampered(agent.save(), two_groups))
    groups = loaded.optimizer.param_groups
    assert [g["lr"] for g in groups] == [CONFIG.lr, CONFIG.pair_lr, CONFIG.context_lr]
    weight = loaded.online.states.context.weight
    assert groups[1]["params"] == [weight]
    before = agent.adam.moments(agent.online.states.context.weight)
    assert torch.equal(loaded.adam.moments(weight)["exp_avg"], before["exp_avg"])
    # It trains on as a learner saved today does.
    replay = ReplayBuffer(CONFIG)
    replay.add_many([Transition(OBSERVATIONS[1], 2, 1.0, None, True)], ITEMS)
    today = DQNAgent.load(agent.save())
    loaded.train_steps(replay, 3, np.random.default_rng(1))
    today.train_steps(replay, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(
        loaded.q_values_batch(OBSERVATIONS, ITEMS.ids),
        today.q_values_batch(OBSERVATIONS, ITEMS.ids),
    )


def test_serving_a_loaded_checkpoint_builds_no_optimizer(tmp_path):
    """A web process loads checkpoints to serve them: building a process's first
    optimizer imports torch._dynamo (over a second), which the first shopper
    would wait for. Checked in a fresh interpreter, where nothing else has."""
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(trained_agent().save())
    script = f"""
import sys
import numpy as np
from recommender.rl.agents import load_agent
from recommender.rl.types import Observation, Slot
agent = load_agent(open({str(path)!r}, "rb").read())
slate = agent.act(Observation(slot=Slot.HOME), agent.catalog.ids, 3, np.random.default_rng(0))
assert len(slate.items) == 3
print(agent.adam.built, "torch._dynamo" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.stdout.split() == ["False", "False"]


def test_an_agent_loaded_to_act_serves_the_same_slates_and_refuses_to_learn():
    """What a web process loads: the online network alone. It serves exactly
    what the whole agent serves, over a grown catalog too, and training or
    saving it fails loudly instead of learning from a network it lacks."""
    agent = trained_agent()
    newer = item_catalog(10, max_price=80, attributes=np.eye(10, 3))
    whole = load_agent(agent.save(), catalog=newer)
    acting = load_agent(agent.save(), catalog=newer, act_only=True)

    np.testing.assert_array_equal(
        acting.q_values_batch(OBSERVATIONS, newer.ids),
        whole.q_values_batch(OBSERVATIONS, newer.ids),
    )
    for obs in OBSERVATIONS:
        served = [
            a.act_explained(
                obs, newer.ids, 4, np.random.default_rng(3), 0.3, reference_ids=newer.ids
            )
            for a in (whole, acting)
        ]
        for whole_part, acting_part in zip(served[0].slate, served[1].slate, strict=True):
            np.testing.assert_array_equal(acting_part, whole_part)
        assert served[1].reasons() == served[0].reasons()
    replay = ReplayBuffer(CONFIG)
    replay.add_many([Transition(OBSERVATIONS[0], 10, 1.0, OBSERVATIONS[1], False, 0.5)], newer)
    for learn in (
        lambda: acting.train_steps(replay, 1, np.random.default_rng(0)),
        acting.sync_target,
        acting.save,
    ):
        with pytest.raises(RuntimeError, match="loaded only to act"):
            learn()


def test_a_checkpoint_loaded_for_a_grown_catalog_keeps_its_optimizer_moments():
    """New products get id rows and zero moments whether the optimizer was built
    before the catalog grew (a trainer) or is built after (a loaded checkpoint)."""
    newer = item_catalog(10, max_price=80, attributes=np.eye(10, 3))
    agent = trained_agent()
    loaded = DQNAgent.load(agent.save(), catalog=newer)
    agent.set_catalog(newer)
    replay = ReplayBuffer(CONFIG)
    replay.add_many([Transition(OBSERVATIONS[0], 10, 1.0, OBSERVATIONS[1], False, 0.5)], newer)
    agent.train_steps(replay, 3, np.random.default_rng(1))
    loaded.train_steps(replay, 3, np.random.default_rng(1))
    np.testing.assert_allclose(
        loaded.q_values_batch(OBSERVATIONS, newer.ids),
        agent.q_values_batch(OBSERVATIONS, newer.ids),
        rtol=1e-6,
    )


def test_load_refuses_non_finite_optimizer_moments():
    def poison(payload):
        moments = next(iter(payload["optimizer"]["state"].values()))
        moments["exp_avg"].view(-1)[0] = float("inf")

    with pytest.raises(
        CheckpointError, match=r"optimizer tensor 'exp_avg' of parameter \d+ is non-finite"
    ):
        DQNAgent.load(tampered(trained_agent().save(), poison))


def test_load_can_serve_a_newer_catalog():
    newer = item_catalog(10, max_price=80, n_attributes=3)
    loaded = DQNAgent.load(trained_agent().save(), catalog=newer)
    assert loaded.q_values(OBSERVATIONS[1], newer.ids).shape == (10,)


def test_load_refuses_non_finite_weights_naming_the_tensor():
    def poison(payload):
        payload["online"]["states.mlp.0.weight"][0, 0] = float("nan")

    with pytest.raises(
        CheckpointError, match=r"online tensor 'states\.mlp\.0\.weight' has non-finite"
    ):
        DQNAgent.load(tampered(trained_agent().save(), poison))


def test_load_refuses_mismatched_shapes_naming_the_tensor():
    def reshape(payload):
        payload["target"]["items.mlp.2.weight"] = torch.zeros(3, 3)

    with pytest.raises(
        CheckpointError, match=r"target tensor 'items\.mlp\.2\.weight' has shape \(3, 3\)"
    ):
        DQNAgent.load(tampered(trained_agent().save(), reshape))

    def other_config(payload):
        payload["config"]["embed_dim"] = 12

    with pytest.raises(CheckpointError, match="has shape"):
        DQNAgent.load(tampered(trained_agent().save(), other_config))


def test_load_refuses_bytes_that_are_not_a_checkpoint():
    with pytest.raises(CheckpointError, match="unreadable"):
        DQNAgent.load(b"not a checkpoint")
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(2)}, buffer)
    with pytest.raises(CheckpointError, match="not a storefront DQN checkpoint"):
        DQNAgent.load(buffer.getvalue())


def test_check_agent_passes_a_healthy_agent_and_flags_bad_q():
    agent = trained_agent()
    report = check_agent(agent, OBSERVATIONS)
    assert (
        report["ok"]
        and report["finite_weights"]
        and report["q_finite"]
        and report["q_within_bound"]
    )
    assert report["n_items"] == 8 and report["n_observations"] == 2
    assert report["q_bound"] == pytest.approx(CONFIG.max_abs_reward / (1 - CONFIG.gamma))
    tight = check_agent(agent, OBSERVATIONS, max_abs_reward=1e-6)
    assert not tight["ok"] and not tight["q_within_bound"]


def test_check_agent_flags_non_finite_weights():
    agent = trained_agent()
    with torch.no_grad():
        agent.target.items.mlp[0].bias[0] = float("inf")
    report = check_agent(agent, OBSERVATIONS)
    assert not report["ok"] and report["non_finite_tensors"] == ["target.items.mlp.0.bias"]
