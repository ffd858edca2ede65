"""Adam optimizers built on first use.

Web processes load checkpoints to serve them and never train. The first torch
optimizer a process builds imports ``torch._dynamo`` (1.2-1.4 s here), which a
web process would otherwise pay on its first carousel request. So an agent
builds its optimizer only when it trains or saves; a checkpoint's optimizer
state is checked when the checkpoint loads (a bad one is refused then, as
before) and applied when the optimizer is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from recommender.rl import checkpoint


class LazyAdam:
    """Adam over ``module``'s parameters, built by ``get``.

    ``groups``, (parameters, learning rate) pairs, are the module's last
    parameters in order, each trained at its own rate in a parameter group of
    its own; the others train at ``lr``. Keeping them last keeps the optimizer's
    parameter numbering the module's, which ``moments`` and the checkpoint
    checks rely on."""

    def __init__(
        self,
        module: nn.Module,
        lr: float,
        groups: Sequence[tuple[list[nn.Parameter], float]] = (),
    ) -> None:
        self.module = module
        self.lr = lr
        self.groups = [(list(params), float(group_lr)) for params, group_lr in groups]
        tail = [p for params, _ in self.groups for p in params]
        params = list(module.parameters())
        if tail and (
            len(tail) > len(params)
            or any(a is not b for a, b in zip(params[len(params) - len(tail) :], tail, strict=True))
        ):
            raise ValueError("LazyAdam's groups must be the module's last parameters, in order")
        self._sizes = [len(params) - len(tail), *(len(params) for params, _ in self.groups)]
        self._optimizer: torch.optim.Adam | None = None
        self._pending: dict | None = None  # a checkpoint's state, until built

    @property
    def built(self) -> bool:
        return self._optimizer is not None

    def get(self) -> torch.optim.Adam:
        if self._optimizer is None:
            params = list(self.module.parameters())
            groups = [{"params": params[: self._sizes[0]]}]
            groups += [{"params": group, "lr": group_lr} for group, group_lr in self.groups]
            optimizer = torch.optim.Adam(groups, lr=self.lr, fused=True)
            if self._pending is not None:
                optimizer.load_state_dict(self._regrouped(self._pending, optimizer))
                self._pending = None
            self._optimizer = optimizer
        return self._optimizer

    def restore(self, state: dict) -> None:
        """Take a saved ``state_dict``: checked now (``checkpoint.CheckpointError``
        if its moments do not fit the parameters or are not finite), applied
        when the optimizer is built."""
        checkpoint.check_optimizer_state(list(self.module.parameters()), state)
        if self._optimizer is not None:
            self._optimizer.load_state_dict(self._regrouped(state, self._optimizer))
        else:
            self._pending = state

    def _regrouped(self, state: dict, optimizer: torch.optim.Adam) -> dict:
        """``state`` as ``optimizer``'s groups hold the parameters. A state saved
        when the groups were cut elsewhere (a checkpoint from before a group was
        split off) keeps every parameter's moments and takes the groups, with
        their learning rates, from ``optimizer``; otherwise it is unchanged."""
        sizes = [len(group["params"]) for group in state["param_groups"]]
        if sizes == self._sizes:
            return state
        groups, start = [], 0
        for group in optimizer.state_dict()["param_groups"]:
            size = len(group["params"])
            groups.append({**group, "params": list(range(start, start + size))})
            start += size
        return {"state": state["state"], "param_groups": groups}

    def state_dict(self) -> dict:
        return self.get().state_dict()

    def moments(self, parameter: nn.Parameter) -> dict:
        """The Adam state of ``parameter`` (empty before its first step, or when it
        is not one of the module's), held by the optimizer or, before it is
        built, by the pending checkpoint state. Changes to it are kept."""
        if self._optimizer is not None:
            return self._optimizer.state.get(parameter, {})
        if self._pending is None:
            return {}
        for index, candidate in enumerate(self.module.parameters()):
            if candidate is parameter:
                return self._pending["state"].get(index, {})
        return {}
