"""The device a fit runs on and what makes a run repeatable there: seeds, threads and
deterministic kernels."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from alphagraph.runtime.config import check_device


def resolve_device(device: str) -> torch.device:
    """The torch device of the ``device`` param; ``cuda`` without a GPU is the user's error (:func:`check_device`)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (call before building a model)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The day-shuffling generator of one epoch: a function of (seed, epoch) only."""
    state = np.random.SeedSequence([seed % 2**32, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@contextlib.contextmanager
def deterministic_torch(enabled: bool, num_threads: int, device: torch.device) -> Iterator[None]:
    """Fixed threads and deterministic algorithms for the duration of a fit; restored afterwards."""
    old_threads = torch.get_num_threads()
    old_det, old_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to(batch: Any, device: torch.device) -> Any:
    """Move a batch to ``device`` (a no-op on CPU: ``Data.to`` walks every attribute)."""
    return batch if device.type == "cpu" else batch.to(device)

