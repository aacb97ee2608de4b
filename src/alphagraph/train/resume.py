"""Resumable walk-forward training: a stage's work folder, keyed by what its results depend on.

A training stage (gat, core) trains fold k in
``.alphagraph/work/{stage}/{key}/fold{k}/``: the loop's ``last.pt`` /
``best.pt`` checkpoints, then, once the fold is finished, its outputs under
``done/``. ``key`` hashes the params, the stage's input artifacts, the
package's source and the number of processes, so a rerun of the same stage
after SIGTERM, SIGKILL or a crash reuses finished folds and resumes the
running one from its last epoch (on CPU with metrics identical to an
uninterrupted run), while any change to params, data or code starts afresh.
Work folders of other keys are removed when a stage starts; the stage's own
is created by its first checkpoint (a run that fails or is interrupted before
writing one leaves no folder, and a failure removes the empty folders it
made) and removed once every artifact is written. The folder lives outside
the stage's DVC outs, so DVC never caches or deletes it.

Refits (``split.refit_every``) with a group's ``refit_warm_start``: a fold
that is a later block of its test window starts from the previous fold's
``best.pt`` in this folder, so the folds run in fold order and a resumed
run finds the weights a later fold starts from beside the finished folds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

import alphagraph
from alphagraph.runtime import distributed as ddp
from alphagraph.runtime.config import Params, to_dict
from alphagraph.runtime.errors import UserError
from alphagraph.runtime.io import atomic_dir, write_parquet
from alphagraph.runtime.log import get_logger
from alphagraph.evaluation.split import Fold
from alphagraph.train.outputs import FoldOutput
from alphagraph.train.types import FitResult
from alphagraph.train.workers import WorkerPool

if TYPE_CHECKING:  # torch is imported where a fold warm-starts: LightGBM's and the ridges' stages never load it
    import torch

    from alphagraph.train.fold import WarmStart

WORK_ROOT = Path(".alphagraph/work")
DONE = "done"
log = get_logger("resume")


def _file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def work_key(params: Params, inputs: Sequence[str | Path]) -> str:
    """A hash of the params, the input files' contents, the package source, torch's version and the world size."""
    h = hashlib.sha256()
    h.update(json.dumps(to_dict(params), sort_keys=True, default=str).encode())
    for path in inputs:
        h.update(f"{Path(path).name}:{_file_digest(Path(path))}".encode())
    package = Path(alphagraph.__file__).parent
    for src in sorted(package.rglob("*.py")):
        h.update(str(src.relative_to(package)).encode())
        h.update(src.read_bytes())
    h.update(f"torch {importlib.metadata.version('torch')}, world {ddp.world_size()}".encode())
    return h.hexdigest()[:20]


def _save_fold(out: FoldOutput, frames: dict[str, pl.DataFrame], path: Path) -> None:
    with atomic_dir(path) as tmp:
        write_parquet(out.predictions, tmp / "predictions.parquet")
        for name, frame in frames.items():
            write_parquet(frame, tmp / f"{name}.parquet")
        r = out.result
        fields = {k: getattr(r, k) for k in ("history", "best_epoch", "best_score", "epochs_run", "stopped_early", "finished",
                                             "train_seconds", "extra")}
        # allow_nan: histories hold NaN metrics on degenerate epochs; json round-trips floats exactly.
        (tmp / "result.json").write_text(json.dumps({"result": fields, "frames": sorted(frames)}, allow_nan=True))


def _load_fold(path: Path) -> tuple[FoldOutput, dict[str, pl.DataFrame]]:
    meta = json.loads((path / "result.json").read_text())
    frames = {name: pl.read_parquet(path / f"{name}.parquet") for name in meta["frames"]}
    return FoldOutput(pl.read_parquet(path / "predictions.parquet"), FitResult(**meta["result"])), frames


TrainOne = Callable[[Fold, Path], tuple[FoldOutput, dict[str, pl.DataFrame]]]


def warm_epochs(group: Any) -> int | None:
    """A params group's ``refit_epochs`` when its ``refit_warm_start`` is on (else None: every fold from scratch)."""
    return group.refit_epochs if getattr(group, "refit_warm_start", False) else None


def _warm_start_context(start: WarmStart) -> Any:
    from alphagraph.train.fold import warm_start

    return warm_start(start)


def _fold_weights(fold_dir: Path) -> dict[str, torch.Tensor]:
    """A finished fold's model: its best epoch's weights, else (no epoch ever improved) its last ones."""
    from alphagraph.train.checkpoint import load_checkpoint

    for name in ("best.pt", "last.pt"):
        if (fold_dir / name).exists():
            return load_checkpoint(fold_dir / name, "cpu")["model"]
    raise UserError(f"{fold_dir}: no best.pt or last.pt to warm-start the next fold from; delete {fold_dir.parent} and rerun")


class StageWork:
    """The work folder of one run of a training stage (see the module docstring)."""

    def __init__(self, stage: str, params: Params, inputs: Sequence[str | Path], root: Path = WORK_ROOT) -> None:
        self.stage = stage
        self.root = Path(root)
        key = ddp.broadcast(work_key(params, inputs) if ddp.is_main() else None)
        self.dir = Path(root) / stage / key
        # Not created here: the first checkpoint or finished fold creates it, so a run that fails
        # before writing one (a bad param, Ctrl-C in the first epoch) leaves no empty folder behind.
        if ddp.is_main():
            stale = [p for p in self.dir.parent.glob("*") if p != self.dir] if self.dir.parent.is_dir() else []
            for p in stale:
                shutil.rmtree(p, ignore_errors=True)
            if stale:
                log.info("%s: removed %d work folder(s) of earlier params, data or code", stage, len(stale))
            self._remove_empty()
        ddp.barrier()

    def run_folds(
        self, folds: Sequence[Fold], train_one: TrainOne, refit_epochs: int | None = None, workers: WorkerPool | None = None
    ) -> list[tuple[Fold, FoldOutput, dict[str, pl.DataFrame]]]:
        """Train every fold with ``train_one(fold, run_dir)``, reusing the finished ones; in fold order.

        ``train_one`` returns the fold's output and named frames to keep beside
        it; it may write more files into ``run_dir`` (rank 0 only).
        ``refit_epochs`` (:func:`warm_epochs`): a fold that is not the first
        block of its test window trains within :func:`~alphagraph.train.fold.warm_start`
        from the previous fold's weights, for that many epochs.
        ``workers``: the folds left to train go to these worker processes
        (:func:`alphagraph.train.workers.worker_pool`), unless a fold warm-starts from another, the run is
        distributed or at most one fold is left.
        """
        try:
            if workers is not None and workers.processes > 1 and refit_epochs is None and ddp.world_size() == 1:
                return self._run_folds_in_workers(folds, train_one, workers)
            return self._run_folds(folds, train_one, refit_epochs)
        except BaseException:  # an error, SIGTERM, Ctrl-C: keep the checkpoints, not folders without one
            self._remove_empty()
            raise

    def _run_folds(
        self, folds: Sequence[Fold], train_one: TrainOne, refit_epochs: int | None
    ) -> list[tuple[Fold, FoldOutput, dict[str, pl.DataFrame]]]:
        results = []
        ordered = sorted(folds, key=lambda f: f.fold)  # a warm start needs the fold before it trained first
        for fold in ordered:
            fold_dir = self.dir / f"fold{fold.fold}"
            done = fold_dir / DONE
            cached = ddp.broadcast(_load_fold(done) if ddp.is_main() and (done / "result.json").exists() else None)
            if cached is not None:
                log.info("%s fold %d: finished in an earlier run, reused from %s", self.stage, fold.fold, done)
                results.append((fold, *cached))
                continue
            start = self._warm_start(fold, ordered, refit_epochs)
            with nullcontext() if start is None else _warm_start_context(start):
                out, frames = train_one(fold, fold_dir)
            if ddp.is_main():
                _save_fold(out, frames, done)
            results.append((fold, out, frames))
        return results

    def _run_folds_in_workers(
        self, folds: Sequence[Fold], train_one: TrainOne, workers: WorkerPool
    ) -> list[tuple[Fold, FoldOutput, dict[str, pl.DataFrame]]]:
        ordered = sorted(folds, key=lambda f: f.fold)
        todo = [(f, self.dir / f"fold{f.fold}") for f in ordered if not (self.dir / f"fold{f.fold}" / DONE / "result.json").exists()]
        if len(todo) <= 1:
            return self._run_folds(folds, train_one, None)
        log.info("%s: %d folds in %d worker processes (%s)", self.stage, len(todo), min(workers.processes, len(todo)), workers.method)
        trained = {}
        for fold, (out, frames) in workers.run(todo):
            _save_fold(out, frames, self.dir / f"fold{fold.fold}" / DONE)
            trained[fold.fold] = (out, frames)
        results = []
        for fold in ordered:
            if fold.fold not in trained:
                done = self.dir / f"fold{fold.fold}" / DONE
                log.info("%s fold %d: finished in an earlier run, reused from %s", self.stage, fold.fold, done)
                trained[fold.fold] = _load_fold(done)
            results.append((fold, *trained[fold.fold]))
        return results

    def _warm_start(self, fold: Fold, folds: Sequence[Fold], epochs: int | None) -> WarmStart | None:
        """The previous block's weights for ``fold`` (read by rank 0, loaded on every rank); None: from scratch."""
        if epochs is None or fold.window is None or fold.block == 0:
            return None
        prev = next((f for f in folds if f.window == fold.window and f.block == fold.block - 1), None)
        if prev is None:
            raise UserError(
                f"{self.stage} fold {fold.fold}: warm start (refit_warm_start) needs block {fold.block - 1} of test"
                f" window {fold.window}, which is not among the folds run"
            )
        state = ddp.broadcast(_fold_weights(self.dir / f"fold{prev.fold}") if ddp.is_main() else None)
        from alphagraph.train.fold import WarmStart

        return WarmStart(state, prev.fold, epochs)

    def publish(self, model_dir: Path) -> None:
        """Copy each fold's checkpoints and files (not its ``done`` outputs) into ``model_dir/fold{k}``."""
        for fold_dir in sorted(self.dir.glob("fold*")):
            shutil.copytree(fold_dir, Path(model_dir) / fold_dir.name, ignore=shutil.ignore_patterns(DONE))

    def finish(self) -> None:
        """Remove the work folder (every artifact is written)."""
        if ddp.is_main():
            shutil.rmtree(self.dir, ignore_errors=True)
            self._remove_empty()

    def _remove_empty(self) -> None:
        """Remove the empty folders of this run: its fold folders, its own, the stage's, and (the default
        root) ``.alphagraph/work`` and ``.alphagraph``; another root belongs to the caller and stays."""
        if not ddp.is_main():
            return
        folders = sorted(self.dir.glob("fold*/")) if self.dir.is_dir() else []
        above = [self.root, self.root.parent] if self.root == WORK_ROOT else []
        for folder in [*folders, self.dir, self.dir.parent, *above]:
            try:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            except OSError:  # another process wrote into it meanwhile, or it is not ours to remove
                continue

