"""One walk-forward fold end to end: fit on train, select on val, predict val + test rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alphagraph.train.outputs import TEST, VAL, FoldOutput, predictions_frame
from alphagraph.train.loop import LossFn, LoopConfig, fit, log, predict, resolve_device


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
