"""Adam optimizers built on first use.

Web processes load checkpoints to serve them and never train. The first torch
optimizer a process builds imports ``torch._dynamo`` (1.2-1.4 s here), which a
web process would otherwise pay on its first carousel request. So an agent
builds its optimizer only when it trains or saves; a checkpoint's optimizer
state is checked when the checkpoint loads (a bad one is refused then, as
before) and applied when the optimizer is built.
"""

from __future__ import annotations

import torch
from torch import nn

from recommender.rl import checkpoint


class LazyAdam:
    """Adam over ``module``'s parameters, built by ``get``.

    ``fast`` parameters (the module's last ones) train at ``fast_lr`` in a second
    parameter group; keeping them last keeps the optimizer's parameter numbering
    the module's, which ``moments`` and the checkpoint checks rely on."""

    def __init__(
        self,
        module: nn.Module,
        lr: float,
        fast: list[nn.Parameter] | None = None,
        fast_lr: float | None = None,
    ) -> None:
        self.module = module
        self.lr = lr
        self.fast = list(fast or [])
        self.fast_lr = lr if fast_lr is None else fast_lr
        params = list(module.parameters())
        if self.fast and any(
            a is not b
            for a, b in zip(params[len(params) - len(self.fast) :], self.fast, strict=True)
        ):
            raise ValueError("LazyAdam's fast parameters must be the module's last ones")
        self._optimizer: torch.optim.Adam | None = None
        self._pending: dict | None = None  # a checkpoint's state, until built

    @property
    def built(self) -> bool:
        return self._optimizer is not None

    def get(self) -> torch.optim.Adam:
        if self._optimizer is None:
            params = list(self.module.parameters())
            groups = [{"params": params[: len(params) - len(self.fast)]}]
            if self.fast:
                groups.append({"params": self.fast, "lr": self.fast_lr})
            optimizer = torch.optim.Adam(groups, lr=self.lr, fused=True)
            if self._pending is not None:
                optimizer.load_state_dict(self._pending)
                self._pending = None
            self._optimizer = optimizer
        return self._optimizer

    def restore(self, state: dict) -> None:
        """Take a saved ``state_dict``: checked now (``checkpoint.CheckpointError``
        if its moments do not fit the parameters or are not finite), applied
        when the optimizer is built."""
        checkpoint.check_optimizer_state(list(self.module.parameters()), state)
        if self._optimizer is not None:
            self._optimizer.load_state_dict(state)
        else:
            self._pending = state

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
