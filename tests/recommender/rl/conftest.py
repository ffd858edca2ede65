"""Fixtures of the RL core's tests (no Django here)."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny networks: a second thread's hand-offs cost more than the math it takes on."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
