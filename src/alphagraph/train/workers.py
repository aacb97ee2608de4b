"""Folds trained at once in worker processes (``distributed.fold_workers``).

The folds of a walk-forward run are independent unless a refit warm-starts from
the fold before, and a small torch model does not keep two cores busy (the core
model's epoch takes as long on one thread as on two), so training two folds at
once on one thread each nearly halves a stage. Each worker is a fresh process
(``spawn``: polars' and OpenMP's thread pools do not survive a fork), sets itself
up once with :attr:`FoldWorkers.setup` (reading the artifacts, building the index)
and then trains the folds it is given; a fold's result does not depend on which
process trained it or on how many there are (each fold seeds itself, and its
thread count is its params group's ``num_threads``).

A worker ends with the stage: an error or signal in the stage terminates the
pool, and Linux sends each worker SIGTERM if the stage process dies (checkpoints
written so far stay where the rerun resumes from them).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphagraph.evaluation.split import Fold
from alphagraph.runtime.errors import Terminated, terminate_with_parent

TrainOne = Callable[[Fold, Path], Any]


@dataclass(frozen=True)
class FoldWorkers:
    """``processes`` workers, each set up by ``setup()`` (picklable: a module-level callable), which returns
    the worker's ``train_one(fold, run_dir)``."""

    processes: int
    setup: Callable[[], TrainOne]


# The worker's own fold trainer, or the error its setup raised, set once per worker process by _init
# (a pool worker has no other state). An error is raised again by each fold it is given, so it reaches
# the stage: a pool whose initializer raises would start new workers for ever.
_train_one: TrainOne | None = None
_setup_error: BaseException | None = None


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM (the stage ending the pool, or dying): unwind, so that atomic writes remove their temporaries
    and checkpoints stay whole; the stage reports the signal, a worker says nothing."""
    raise Terminated(128 + signum)


def _init(setup: Callable[[], TrainOne]) -> None:
    global _train_one, _setup_error
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the stage ends the pool
    terminate_with_parent()
    try:
        _train_one = setup()
    except Exception as exc:  # noqa: BLE001 - handed to the stage by _run
        _setup_error = exc


def _run(fold: Fold, run_dir: Path) -> Any:
    if _setup_error is not None:
        raise _setup_error
    assert _train_one is not None, "worker not set up"
    return _train_one(fold, run_dir)


def run_in_workers(workers: FoldWorkers, jobs: Sequence[tuple[Fold, Path]]) -> Iterator[tuple[Fold, Any]]:
    """``train_one(fold, run_dir)`` of every job in the workers; results in the order of ``jobs``."""
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(min(workers.processes, len(jobs)), initializer=_init, initargs=(workers.setup,))
    try:
        pending = [pool.apply_async(_run, job) for job in jobs]
        for (fold, _), result in zip(jobs, pending):
            yield fold, result.get()
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
