"""Process-level settings, applied in serving and worker processes."""

import ctypes
import ctypes.util
import os
from functools import cache

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


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


def configure_training_process() -> None:
    """Once per process, before it trains: one torch thread (RL_TORCH_THREADS)
    and freed memory kept for reuse (``keep_freed_memory``). Celery workers of
    every pool and the commands that train in their own process call it."""
    global _configured_pid
    if _configured_pid == os.getpid():
        return
    configure_torch_threads()
    keep_freed_memory()
    _configured_pid = os.getpid()


_configured_pid: int | None = None


def keep_freed_memory(mmap_threshold_mb: int = 32, trim_threshold_mb: int = 256) -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of handing them
    back to the kernel, in a process that trains.

    A training step allocates and frees megabytes of temporaries (score
    matrices over the catalog, activations, gradients). With glibc's default
    thresholds a good share of them are fresh pages from the kernel on every
    step: a SlateQ step took 1,000 to 4,000 page faults, a fifth or more of
    its time; with blocks up to ``mmap_threshold_mb`` served from the heap and
    up to ``trim_threshold_mb`` of free heap kept, it takes almost none. The
    price is that the process holds on to its peak heap.

    Returns False, changing nothing, where the C library is not glibc.
    """
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Setting either threshold turns off glibc's adaptive ones, so set both.
    return bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold_mb << 20)
        and mallopt(_M_TRIM_THRESHOLD, trim_threshold_mb << 20)
    )


def return_freed_memory() -> None:
    """Hand back to the kernel the free heap memory glibc's malloc keeps, in
    a process that serves: after loading a checkpoint or a catalog, which
    builds and drops large temporaries, a web worker would otherwise stay at
    its loading peak for as long as it lives. A no-op where the C library is
    not glibc."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


@cache
def _glibc(function: str):
    """``function`` of the C library, None where it has none (not glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), function)
    except (OSError, AttributeError):
        return None
