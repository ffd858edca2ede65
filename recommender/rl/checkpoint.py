"""Checkpoint bytes and the checks a checkpoint's tensors pass before they load.

A checkpoint is ``torch.save`` of plain tensors and dicts, read back with
``torch.load(weights_only=True)`` so that loading never runs pickled code.
Every tensor is checked against the shapes the saved config and schema imply,
and for finiteness, before anything is loaded.

The format only: this module knows tensors and catalogs, not agents, so that
everything that saves or loads can depend on it. The checks of a whole agent
before the store publishes it are ``recommender.rl.agents.check_agent``.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from recommender.rl.types import ItemCatalog

FORMAT = "storefront-dqn"
# 2: the Q-network gained the context term (recommender.rl.network).
VERSION = 2
_REQUIRED = (
    "config",
    "n_categories",
    "n_attributes",
    "vocabulary",
    "catalog",
    "step",
    "online",
    "target",
    "optimizer",
)


class CheckpointError(ValueError):
    """A checkpoint that must not be loaded: unreadable, non-finite or mismatched."""


def dumps(payload: dict) -> bytes:
    """Serialise a checkpoint payload (tensors, dicts, lists and scalars only)."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buffer)
    return buffer.getvalue()


def loads(data: bytes) -> dict:
    """Read checkpoint bytes without executing code; checks format and fields."""
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"unreadable checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not a storefront DQN checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {payload.get('version')} is not {VERSION}")
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint lacks {', '.join(missing)}")
    return payload


def restore_module(module: nn.Module, state: Mapping[str, Tensor], name: str) -> None:
    """Load ``state`` into ``module`` after checking every tensor's presence, shape
    and finiteness, naming the first offending one."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{name} weights do not match the model: missing {missing}, unexpected {unexpected}"
        )
    for key, reference in expected.items():
        tensor = state[key]
        if not isinstance(tensor, Tensor) or tensor.shape != reference.shape:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
            raise CheckpointError(
                f"{name} tensor '{key}' has shape {shape}, the config and schema give "
                f"{tuple(reference.shape)}"
            )
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{name} tensor '{key}' has non-finite values")
    module.load_state_dict(state)


def check_optimizer_state(params: list[Tensor], state: dict) -> None:
    """Check that a saved optimizer ``state_dict`` covers ``params`` with
    moments of their shapes and finite values."""
    try:
        per_param = state["state"]
        groups = state["param_groups"]
    except (KeyError, TypeError) as exc:
        raise CheckpointError("optimizer state is malformed") from exc
    if sum(len(group["params"]) for group in groups) != len(params):
        raise CheckpointError("optimizer state covers a different number of parameters")
    for index, moments in per_param.items():
        for key, tensor in moments.items():
            if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
                continue
            if key != "step" and tensor.shape != params[index].shape:
                raise CheckpointError(
                    f"optimizer tensor '{key}' of parameter {index} has shape "
                    f"{tuple(tensor.shape)}, the model {tuple(params[index].shape)}"
                )
            if not torch.isfinite(tensor).all():
                raise CheckpointError(
                    f"optimizer tensor '{key}' of parameter {index} is non-finite"
                )


def catalog_to_tensors(catalog: ItemCatalog) -> dict[str, Tensor]:
    return {
        "ids": torch.from_numpy(np.asarray(catalog.ids, dtype=np.int64).copy()),
        "categories": torch.from_numpy(np.asarray(catalog.categories, dtype=np.int64).copy()),
        "prices": torch.from_numpy(np.asarray(catalog.prices, dtype=np.float32).copy()),
        "attributes": torch.from_numpy(np.asarray(catalog.attributes, dtype=np.float32).copy()),
    }


def catalog_from_tensors(tensors: Mapping[str, Tensor]) -> ItemCatalog:
    try:
        return ItemCatalog(
            ids=tensors["ids"].numpy(),
            categories=tensors["categories"].numpy(),
            prices=tensors["prices"].numpy(),
            attributes=tensors["attributes"].numpy(),
        )
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"invalid catalog in checkpoint: {exc}") from exc
