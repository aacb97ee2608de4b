"""Folds trained at once in worker processes (``distributed.fold_workers``).

The folds of a walk-forward run are independent unless a refit warm-starts from
the fold before, and a small torch model does not keep two cores busy (the core
model's epoch takes as long on one thread as on two), so training two folds at
once on one thread each nearly halves a stage. Each worker is a fresh process
(``spawn``: polars' and OpenMP's thread pools do not survive a fork). A fork server
that imports torch and PyG (:data:`PRELOAD`) once for every worker, where ``spawn``
imports them in each, is written but off (:data:`USE_FORKSERVER`). A worker sets itself up once with :attr:`FoldWorkers.setup` (reading
the artifacts, building the index) and then trains the folds it is given; a fold's
result does not depend on which process trained it or on how many there are (each
fold seeds itself, and its thread count is its params group's ``num_threads``).

A worker ends with the stage: an error or signal in the stage terminates the
pool, and Linux sends each worker SIGTERM if the stage process dies (checkpoints
written so far stay where the rerun resumes from them).
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alphagraph.evaluation.split import Fold
from alphagraph.runtime.errors import Terminated, terminate_with_parent

TrainOne = Callable[[Fold, Path], Any]

# What the fork server imports before it forks a worker: the torch models' heavy imports, which start no
# thread a fork would lose (polars, which does, is imported by each worker).
PRELOAD = ("torch", "torch_geometric")
# Off for now: with it, tests/test_resume.py's killed `dvc repro` found fold 0's checkpoint gone in two CI runs
# out of two (never locally), so workers are spawned, each importing PRELOAD itself, until that is understood.
# Platforms without a fork server (Windows) spawn them in any case.
USE_FORKSERVER = False
FORKSERVER = USE_FORKSERVER and "forkserver" in multiprocessing.get_all_start_methods()


def _context() -> multiprocessing.context.BaseContext:
    if not FORKSERVER:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    return context


def start_server() -> None:
    """Start the fork server now, so that it imports :data:`PRELOAD` while the stage reads its inputs
    (``run_in_workers`` starts it otherwise)."""
    if FORKSERVER:
        _context()
        import multiprocessing.forkserver  # not on every platform

        multiprocessing.forkserver.ensure_running()


@dataclass(frozen=True)
class FoldWorkers:
    """``processes`` workers, each set up by ``setup()`` (picklable: a module-level callable), which returns
    the worker's ``train_one(fold, run_dir)``."""

    processes: int
    setup: Callable[[], TrainOne]


@dataclass
class WorkerUsage:
    """CPU time and peak memory of a pool's workers, as each reported with its last fold: they are the fork
    server's children, not the stage's, so the stage's ``RUSAGE_CHILDREN`` does not count them."""

    by_pid: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (CPU seconds, peak RSS MiB)

    @property
    def cpu_seconds(self) -> float:
        return sum(cpu for cpu, _ in self.by_pid.values())

    @property
    def peak_rss_mb(self) -> float:
        return max((peak for _, peak in self.by_pid.values()), default=0.0)


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


def _run(fold: Fold, run_dir: Path) -> tuple[Any, int, tuple[float, float]]:
    if _setup_error is not None:
        raise _setup_error
    assert _train_one is not None, "worker not set up"
    result = _train_one(fold, run_dir)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return result, os.getpid(), (own.ru_utime + own.ru_stime, own.ru_maxrss / 1024.0)


def run_in_workers(
    workers: FoldWorkers, jobs: Sequence[tuple[Fold, Path]], usage: WorkerUsage | None = None
) -> Iterator[tuple[Fold, Any]]:
    """``train_one(fold, run_dir)`` of every job in the workers; results in the order of ``jobs``. ``usage``
    collects the workers' CPU time and peak memory."""
    pool = _context().Pool(min(workers.processes, len(jobs)), initializer=_init, initargs=(workers.setup,))
    try:
        pending = [pool.apply_async(_run, job) for job in jobs]
        for (fold, _), pending_result in zip(jobs, pending):
            result, pid, used = pending_result.get()
            if usage is not None and FORKSERVER:  # spawned workers are the stage's children: RUSAGE_CHILDREN counts them
                usage.by_pid[pid] = used
            yield fold, result
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
