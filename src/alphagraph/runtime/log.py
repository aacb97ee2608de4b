"""Structured stage logging: what a stage read, what it wrote, rows and time.

Each successful stage also writes ``metrics/timings/{stage}.json`` (wall and
CPU seconds, peak RSS). Those files are listed in ``dvc.yaml``'s top-level
``metrics`` rather than as stage outs: ``dvc metrics diff`` shows performance
changes, while ``dvc.lock`` and the model metrics stay byte-identical across
reruns (wall time never is).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def get_logger(name: str) -> logging.Logger:
    """A logger writing ``time level name: message`` lines to stderr."""
    logger = logging.getLogger(f"alphagraph.{name}")
    if not logging.getLogger("alphagraph").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("alphagraph")
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    return logger


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB); ``RUSAGE_CHILDREN``: of
    its largest finished child (a model stage's fold workers)."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (fold workers) so far."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class StageRecord:
    """Filled in by a stage while it runs; logged as one JSON line at the end."""

    stage: str
    read: list[str] = field(default_factory=list)
    wrote: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


TIMINGS = Path("metrics/timings")


@contextmanager
def stage_run(stage: str, timings_dir: Path | None = TIMINGS, active: bool = True) -> Iterator[StageRecord]:
    """Time a stage, log a structured summary line when it finishes or fails, write its timings file.

    ``active=False`` (ranks other than 0 of a distributed run) only yields a record.
    """
    record = StageRecord(stage=stage)
    if not active:
        yield record
        return
    logger = get_logger(stage)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    logger.info("start")
    try:
        yield record
    except BaseException as exc:
        record.seconds = round(time.perf_counter() - start, 3)
        how = "interrupted" if isinstance(exc, (KeyboardInterrupt, SystemExit)) else "failed"
        logger.error("%s after %.1f s; no artifact written", how, record.seconds)
        raise
    record.seconds = round(time.perf_counter() - start, 3)
    summary = {
        "stage": stage,
        "read": record.read,
        "wrote": record.wrote,
        "rows": record.rows,
        "seconds": record.seconds,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **record.extra,
    }
    if workers := peak_rss_mb(resource.RUSAGE_CHILDREN):  # each worker's own peak, besides the stage's
        summary["worker_peak_rss_mb"] = round(workers, 1)
    logger.info("done %s", json.dumps(summary, sort_keys=True))
    if timings_dir is not None:
        from alphagraph.runtime.io import write_json

        timings = {
            "seconds": record.seconds,
            "cpu_seconds": round(_cpu_seconds() - cpu_start, 3),
            "peak_rss_mb": summary["peak_rss_mb"],
        } | ({"worker_peak_rss_mb": summary["worker_peak_rss_mb"]} if "worker_peak_rss_mb" in summary else {})
        write_json({stage: timings}, timings_dir / f"{stage}.json")
