"""Threads and memory for the data stages' kernels (features, normalize): how many threads, and output
arrays whose pages are mapped up front."""

from __future__ import annotations

import mmap
import os

import numpy as np


def threads(n_threads: int | None) -> int:
    """Threads for the data stages' kernels: ``n_threads``, else ``$ALPHAGRAPH_THREADS``, else the usable cores (at most 8)."""
    if n_threads:
        return max(1, int(n_threads))
    env = os.environ.get("ALPHAGRAPH_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, min(8, os.cpu_count() or 1))


def prefaulted(n: int, dtype) -> np.ndarray:
    """An uninitialised array whose pages are mapped up front (one MAP_POPULATE mmap).

    Faulting fresh pages in one by one while chunks write their results cost more
    than the writes themselves on small VMs; populating in the kernel is ~2x cheaper.
    Falls back to ``np.empty`` where MAP_POPULATE is unavailable.
    """
    nbytes = int(n) * np.dtype(dtype).itemsize
    flag = getattr(mmap, "MAP_POPULATE", 0)
    if not flag or nbytes == 0:
        return np.empty(n, dtype=dtype)
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | flag)
    except (OSError, ValueError):  # pragma: no cover
        return np.empty(n, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype)
