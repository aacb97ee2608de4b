"""Folds trained at once in worker processes (``distributed.fold_workers``).

The folds of a walk-forward run are independent unless a refit warm-starts from
the fold before, and a small torch model does not keep two cores busy (the core
model's epoch takes as long on one thread as on two), so training two folds at
once on one thread each nearly halves a stage. A worker sets itself up with
:attr:`FoldWorkers.setup` (reading the artifacts, building the index) when it is
given its first fold, then trains the folds it is given; a fold's result does not
depend on which process trained it or on how many there are (each fold seeds
itself, and its thread count is its params group's ``num_threads``).

How a worker starts: :func:`worker_pool` forks the workers while the stage is still
bare (no polars or OpenMP pool has started: neither survives a fork), which saves
every worker a fresh interpreter's imports (about 5 s of torch, PyG and the project).
Opened later, when those pools may run, it spawns fresh processes.

A worker ends with the stage: an error or signal in the stage terminates the
pool, and Linux sends each worker SIGTERM if the stage process dies (checkpoints
written so far stay where the rerun resumes from them).
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from alphagraph.evaluation.split import Fold
from alphagraph.runtime.errors import Terminated, terminate_with_parent

TrainOne = Callable[[Fold, Path], Any]

# Names of the threads of polars' compute pool (its runtime's included).
POOL_THREAD = re.compile(r"polars-\d+|tokio-.*")


@dataclass(frozen=True)
class FoldWorkers:
    """``processes`` workers, each set up by ``setup()`` (picklable: a module-level callable), which returns
    the worker's ``train_one(fold, run_dir)``."""

    processes: int
    setup: Callable[[], TrainOne]


# The worker's setup, and the fold trainer it returned, once per worker process (a pool worker has
# no other state). A setup error is raised by each fold the worker is given, so it reaches the stage.
_setup: Callable[[], TrainOne] | None = None
_train_one: TrainOne | None = None


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM (the stage ending the pool, or dying): unwind, so that atomic writes remove their temporaries
    and checkpoints stay whole; the stage reports the signal, a worker says nothing."""
    raise Terminated(128 + signum)


def _init(setup: Callable[[], TrainOne]) -> None:
    global _setup
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the stage ends the pool
    terminate_with_parent()
    _setup = setup


def _run(fold: Fold, run_dir: Path) -> Any:
    global _train_one
    if _train_one is None:
        assert _setup is not None, "worker not initialized"
        _train_one = _setup()
    return _train_one(fold, run_dir)


def fork_safe() -> bool:
    """Whether a fork now gives a working child: Linux, and polars' compute pool not started (a fork keeps
    only the calling thread, so the child's polars would wait for pool threads it does not have).

    Torch's OpenMP pool has the same flaw and no name to look for: open the workers before the process
    runs torch work, as the model stage does (its first step)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        names = [Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")]
    except OSError:
        return False
    return not any(POOL_THREAD.fullmatch(n) for n in names)


class WorkerPool:
    """The stage's fold workers: forked at once where :func:`fork_safe`, else spawned on first use."""

    def __init__(self, workers: FoldWorkers, max_jobs: int) -> None:
        self.workers = workers
        self.processes = max(1, min(workers.processes, max_jobs))
        self.method = "fork" if fork_safe() else "spawn"
        self._pool: Pool | None = self._start() if self.method == "fork" else None

    def _start(self) -> Pool:
        context = multiprocessing.get_context(self.method)
        return context.Pool(self.processes, initializer=_init, initargs=(self.workers.setup,))

    def run(self, jobs: Sequence[tuple[Fold, Path]]) -> Iterator[tuple[Fold, Any]]:
        """``train_one(fold, run_dir)`` of every job in the workers; results in the order of ``jobs``."""
        if self._pool is None:
            self._pool = self._start()
        pending = [self._pool.apply_async(_run, job) for job in jobs]
        for (fold, _), result in zip(jobs, pending):
            yield fold, result.get()

    def close(self, ok: bool) -> None:
        if self._pool is None:
            return
        self._pool.close() if ok else self._pool.terminate()
        self._pool.join()


@contextmanager
def worker_pool(workers: FoldWorkers | None, max_jobs: int) -> Iterator[WorkerPool | None]:
    """The fold workers of a stage (None for none), ended with the block: closed after it, terminated
    on an error or signal. Open it before the stage reads anything, so that the workers are forked."""
    if workers is None or workers.processes <= 1 or max_jobs <= 1:
        yield None
        return
    pool = WorkerPool(workers, max_jobs)
    ok = False
    try:
        yield pool
        ok = True
    finally:
        pool.close(ok)
