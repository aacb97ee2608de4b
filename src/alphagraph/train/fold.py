"""One walk-forward fold end to end: fit on train, select on val, predict val + test rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch

from alphagraph.runtime import paths
from alphagraph.runtime.io import write_csv
from alphagraph.train.data import TEST, VAL, predictions_frame
from alphagraph.train.loop import FitResult, LossFn, LoopConfig, fit, log, predict, resolve_device


EpochCallback = Callable[[dict[str, Any]], None]
# The epoch callback of model trainers that do not take one (the GAT's, the zoo's): the
# hyperparameter search (alphagraph.experiments.search) prunes through it.
_EPOCH_CALLBACK: ContextVar[EpochCallback | None] = ContextVar("epoch_callback", default=None)


@contextmanager
def epoch_callback(fn: EpochCallback | None) -> Iterator[None]:
    """Within the block, every :func:`train_fold` without its own ``on_epoch_end`` calls ``fn``."""
    token = _EPOCH_CALLBACK.set(fn)
    try:
        yield
    finally:
        _EPOCH_CALLBACK.reset(token)


@dataclass(frozen=True)
class WarmStart:
    """A fold's starting weights (an earlier fold's best, on every rank) and the epochs it then trains."""

    state: dict[str, torch.Tensor]
    source_fold: int
    epochs: int


# Set by StageWork.run_folds around a fold that refits (split.refit_every with refit_warm_start):
# the model trainers build their model as usual and train_fold starts it from these weights.
_WARM_START: ContextVar[WarmStart | None] = ContextVar("warm_start", default=None)


@contextmanager
def warm_start(start: WarmStart | None) -> Iterator[None]:
    """Within the block, :func:`train_fold` starts its model from ``start`` (None: from its own initialization)."""
    token = _WARM_START.set(start)
    try:
        yield
    finally:
        _WARM_START.reset(token)


def load_warm_start(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``model``, except its frozen parameters.

    Frozen parameters are the fold's own fit (``train.wide: ridge``), not
    trained weights: they keep this fold's values. Draws no random number.
    """
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    current = model.state_dict()
    try:
        model.load_state_dict({k: current[k] if k in frozen and k in current else v for k, v in state.items()})
    except RuntimeError as exc:  # another architecture: the checkpoint is from other params
        raise ValueError(f"warm start: the previous fold's weights do not fit this fold's model ({exc})") from exc


@dataclass
class FoldOutput:
    predictions: pl.DataFrame  # date, code, fold, split, pred_{h}d, p_up_{h}d / p_signal_{h}d (with those heads)
    result: FitResult

    def training_record(self, fold: int) -> tuple[pl.DataFrame, dict[str, Any]]:
        """The per-epoch curve (a plots file) and the fold's entries of the metrics' ``train`` dict."""
        r = self.result
        curve = pl.DataFrame(r.history, infer_schema_length=None).with_columns(fold=pl.lit(fold))
        entries = {
            f"best_epoch_fold{fold}": r.best_epoch,
            f"epochs_run_fold{fold}": r.epochs_run,
            f"val_best_fold{fold}": None if r.best_score is None else round(r.best_score, 6),
        }
        # A trainer's own per-fold figures (a closed-form model's chosen penalty, say); resume keeps them.
        entries |= {f"{key}_fold{fold}": value for key, value in r.extra.items()}
        if r.epochs_run:  # a closed-form fit (no epochs) logs its own line
            log.info("fold %d: best epoch %s of %d (val %s), %.0f s", fold, r.best_epoch, r.epochs_run, r.best_score, r.train_seconds)
        return curve.select("fold", pl.exclude("fold")), entries


def collect_folds(outputs: Sequence[tuple[int, FoldOutput]]) -> tuple[pl.DataFrame, list[tuple[int, pl.DataFrame]], dict[str, Any]]:
    """Every fold's predictions in one frame, each fold's training curve, and the metrics' ``train`` dict."""
    curves, train = [], {}
    for k, out in outputs:
        curve, entries = out.training_record(k)
        curves.append((k, curve))
        train |= entries
    return pl.concat([out.predictions for _, out in outputs]), curves, train


def write_training_curves(name: str, curves: Sequence[tuple[int, pl.DataFrame]]) -> None:
    """``plots/{name}/training/fold{k}.csv`` per fold (x = epoch); dvc.yaml plots the folder, so the
    plots follow ``split.n_splits``. Curves of folds that no longer exist are removed."""
    folder = paths.PLOTS / name / "training"
    keep = {f"fold{k}.csv" for k, _ in curves}
    for stale in folder.glob("fold*.csv") if folder.is_dir() else []:
        if stale.name not in keep:
            stale.unlink()
    for k, curve in curves:
        write_csv(curve, folder / f"fold{k}.csv")


def train_fold(
    model: torch.nn.Module,
    data: Any,
    loss_fn: LossFn,
    cfg: LoopConfig,
    fold: int,
    run_dir: str | Path | None = None,
    resume: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> FoldOutput:
    """:func:`fit`, then predictions for every VAL and TEST row of the fold.

    ``data`` is a :class:`~alphagraph.train.data.DayData` that also has
    ``panel`` (the frame its rows index) and ``codes`` (its split codes), as
    :class:`~alphagraph.train.data.GraphDayData` does. Every stock of every
    val/test date gets a prediction, including rows whose labels are null.
    ``on_epoch_end`` (else the one of an enclosing :func:`epoch_callback`) gets
    each epoch's history record; an exception it raises stops the fold. Within
    :func:`warm_start`, the model starts from its weights and trains its epochs.
    """
    callback = on_epoch_end if on_epoch_end is not None else _EPOCH_CALLBACK.get()
    start = _WARM_START.get()
    if start is not None:  # a refit: fine-tune the previous block's model for a few epochs
        load_warm_start(model, start.state)
        cfg = dataclasses.replace(cfg, epochs=start.epochs)
        log.info("fold %d: warm start from fold %d's model, %d epochs", fold, start.source_fold, start.epochs)
    result = fit(model, data, loss_fn, cfg, run_dir=run_dir, resume=resume, on_epoch_end=callback, desc=f"fold {fold}")
    if start is not None:
        result.extra["warm_start_from"] = start.source_fold
    dates = data.dates("val", "test")
    with torch.no_grad():
        pred = predict(model, data, dates, (VAL, TEST), cfg.eval_batch_days, resolve_device(cfg.device), cfg.cpu_eval_rows)
    frame = predictions_frame(data.panel, pred.rows, data.codes, pred.reg, pred.p_up, data.horizons, fold, pred.p_signal)
    return FoldOutput(frame, result)
