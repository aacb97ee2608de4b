"""Data-parallel training with torch.distributed, launched by torchrun.

A stage with ``distributed.nproc_per_node > 1`` relaunches itself under
``torchrun --standalone`` (so ``dvc repro`` starts it); on several machines
the user runs ``torchrun --nnodes ... --rdzv-endpoint ...`` on each, and the
stage finds torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).
Every rank loads the data and builds the same model; the training loop
shards each batch's days across ranks and DistributedDataParallel all-reduces
the gradients (:func:`alphagraph.train.loop.fit`). Only rank 0 writes
artifacts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import ModuleType
from typing import Any

from alphagraph.runtime.config import DistributedConfig
from alphagraph.runtime.log import get_logger

log = get_logger("distributed")


def under_torchrun() -> bool:
    """True in a process started by torchrun (its environment is set)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(cfg: DistributedConfig, script: str, argv: list[str]) -> None:
    """Replace this process with ``torchrun --standalone --nproc_per_node N script argv`` when N > 1.

    Returns (does nothing) when N is 1 or the process is already under torchrun.
    ``exec`` rather than a child: torchrun then receives the signals DVC or the
    user send (SIGTERM, Ctrl-C) and forwards them to every rank.
    """
    if cfg.nproc_per_node <= 1 or under_torchrun():
        return
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc_per_node}", script, *argv]
    log.info("relaunching under torchrun: %s", " ".join(cmd[1:]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)


def _dist() -> ModuleType:
    import torch.distributed as dist

    return dist


def is_initialized() -> bool:
    # A process group needs torch.distributed imported first: a stage that never imports torch (LightGBM's,
    # the ridges') has none, and asking does not import torch (about 1.6 s).
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def rank() -> int:
    return _dist().get_rank() if is_initialized() else 0


def world_size() -> int:
    return _dist().get_world_size() if is_initialized() else 1


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


@contextmanager
def process_group(cfg: DistributedConfig, device: str) -> Iterator[None]:
    """Join torchrun's process group for the duration of a stage (a no-op outside torchrun or with one process).

    Backend ``auto``: nccl when the stage trains on CUDA, gloo otherwise. Each
    rank on a CUDA machine takes the GPU of its ``LOCAL_RANK``.
    """
    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        yield
        return
    import torch

    dist = _dist()
    cuda = device != "cpu" and torch.cuda.is_available()
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    log.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (itself outside a process group)."""
    if world_size() == 1:
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=0)
    return box[0]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    _dist().all_gather_object(out, obj)
    return out


def all_sum(value: int) -> int:
    """The sum of an integer over ranks."""
    if world_size() == 1:
        return value
    import torch

    dist = _dist()
    t = torch.tensor([value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return int(t.item())


def barrier() -> None:
    if world_size() > 1:
        _dist().barrier()
