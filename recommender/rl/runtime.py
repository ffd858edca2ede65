"""Process-level torch settings, applied in serving and worker processes."""

import os


def configure_torch_threads(n: int | None = None) -> int:
    """Limit torch's intra-op threads (default 1, or RL_TORCH_THREADS).

    Several threads per web or worker process made a recommendation endpoint
    ~20x slower on 2 cores; call this in each child process, never in a
    parent that forks afterwards.
    """
    import torch

    threads = n if n is not None else int(os.environ.get("RL_TORCH_THREADS", "1"))
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()
