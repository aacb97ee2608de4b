"""The training loop's settings and results, apart from the loop, so that a model can build its
config and read a fit's outcome without the loop's machinery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from alphagraph.runtime.config import LoopParams, TrainConfig

if TYPE_CHECKING:  # torch is not imported at run time: LightGBM's and the ridges' stages read FitResult
    import torch

SELECT_METRICS = ("rank_ic", "ic", "loss")
OPTIMIZERS = ("adamw", "adabelief")
LossFn = Callable[[dict[str, "torch.Tensor"], Any, "torch.Tensor"], tuple["torch.Tensor", dict[str, float]]]


@dataclass(frozen=True)
class LoopConfig:
    """Knobs of :func:`fit` (a model stage maps its params group onto these)."""

    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_days: int = 16
    eval_batch_days: int = 32
    cpu_eval_rows: int | None = None  # on CPU: evaluation batches of about this many stock-days at most (loop.eval_days)
    days_per_epoch: int = 0  # 0 = every training day each epoch
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.05
    optimizer: str = "adamw"  # adamw | adabelief
    # > 0: after the warmup, cosine annealing with warm restarts; the first cycle lasts
    # restart_epochs epochs' worth of steps, each next one restart_mult times longer
    restart_epochs: float = 0.0
    restart_mult: float = 1.0
    grad_clip: float = 1.0
    patience: int = 6  # 0 = never stop early
    min_delta: float = 0.0
    select_metric: str = "rank_ic"
    select_horizon: int = 1
    select_smoothing: float = 0.0  # EMA weight of the past: 0 = raw per-epoch value
    seed: int = 0
    device: str = "auto"
    num_threads: int = 2  # 0 = leave torch's setting alone
    deterministic: bool = True
    progress: bool | None = None  # None: a tqdm bar only on a TTY

    def __post_init__(self) -> None:
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"select_metric must be one of {SELECT_METRICS}, got {self.select_metric!r}")
        if self.epochs < 1 or self.batch_days < 1 or self.eval_batch_days < 1:
            raise ValueError("epochs, batch_days and eval_batch_days must be >= 1")
        if not 0 <= self.select_smoothing < 1:
            raise ValueError(f"select_smoothing must be in [0, 1), got {self.select_smoothing}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.restart_epochs < 0 or self.restart_mult < 1:
            raise ValueError(f"restart_epochs must be >= 0 and restart_mult >= 1, got {self.restart_epochs}, {self.restart_mult}")


@dataclass
class Prediction:
    """Node outputs of :func:`predict`, one row per selected node."""

    rows: np.ndarray  # panel row
    split: np.ndarray  # split code
    day: np.ndarray  # position of the node's date in the requested dates
    reg: np.ndarray  # [n, H]
    p_up: np.ndarray | None  # [n, H]
    y: np.ndarray  # [n, H] labels (NaN where null)
    p_signal: np.ndarray | None = None  # [n, H], models with a signal head


@dataclass
class FitResult:
    history: list[dict[str, Any]]
    best_epoch: int | None
    best_score: float | None
    epochs_run: int
    stopped_early: bool
    finished: bool
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def loop_config(cfg: TrainConfig | LoopParams, seed: int, device: str, progress: bool | None = None) -> LoopConfig:
    """The training-loop settings of the ``train`` params group (or a zoo model's, :class:`LoopParams`)."""
    return LoopConfig(
        epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_days=cfg.batch_days,
        eval_batch_days=max(cfg.batch_days, 16), days_per_epoch=cfg.days_per_epoch, warmup_epochs=cfg.warmup_epochs,
        min_lr_ratio=cfg.min_lr_ratio, grad_clip=cfg.grad_clip, patience=cfg.patience, select_metric=cfg.select_metric,
        select_horizon=cfg.select_horizon, select_smoothing=cfg.select_smoothing, seed=seed, device=device,
        num_threads=cfg.num_threads, progress=progress, optimizer=cfg.optimizer, restart_epochs=cfg.restart_epochs,
        restart_mult=cfg.restart_mult,
    )
