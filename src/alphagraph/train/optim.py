"""How :func:`alphagraph.train.loop.fit` steps and when it stops: optimizer, learning-rate
schedules, early stopping."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from alphagraph.train.types import LoopConfig


@dataclass
class EarlyStopping:
    """Patience-based stopping on a (possibly EMA-smoothed) monitored value."""

    patience: int
    mode: str = "max"
    min_delta: float = 0.0
    smoothing: float = 0.0
    best: float | None = None
    best_epoch: int | None = None  # 1-based
    bad_epochs: int = 0
    ema: float | None = None

    def update(self, value: float, epoch: int) -> bool:
        """Record epoch ``epoch``'s value; True when it is the new best."""
        if math.isfinite(value):
            self.ema = value if self.ema is None or self.smoothing == 0 else self.smoothing * self.ema + (1 - self.smoothing) * value
        score = self.ema if self.ema is not None and math.isfinite(value) else float("nan")
        sign = 1.0 if self.mode == "max" else -1.0
        improved = math.isfinite(score) and (self.best is None or sign * (score - self.best) > self.min_delta)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


class WarmupCosine:
    """LR multiplier per optimizer step: linear warmup, then cosine to ``min_ratio``."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float) -> None:
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, max(total_steps, 1), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosineRestarts:
    """LR multiplier per optimizer step: linear warmup, then cosine annealing with warm restarts (SGDR).

    After the warmup, cycle i (0-based) lasts ``cycle_steps * mult**i`` steps; at
    position p of a cycle of length T the multiplier is
    ``min_ratio + (1 - min_ratio) * (1 + cos(pi * p / T)) / 2``: 1 at each restart,
    never below ``min_ratio`` (the LR floor).
    """

    def __init__(self, warmup_steps: int, cycle_steps: int, mult: float, min_ratio: float) -> None:
        self.warmup_steps, self.cycle_steps, self.mult, self.min_ratio = warmup_steps, max(cycle_steps, 1), mult, min_ratio

    def cycle(self, step: int) -> tuple[float, float]:
        """(position in the cycle, cycle length) of post-warmup step ``step``."""
        if self.mult == 1:
            return float(step % self.cycle_steps), float(self.cycle_steps)
        # Walk the cycles (geometric growth: few of them); cumulative sums, not t0 (m^i - 1) / (m - 1),
        # whose rounding can put a restart one step late.
        start, length = 0.0, float(self.cycle_steps)
        while step >= start + length:
            start, length = start + length, length * self.mult
        return step - start, length

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        pos, length = self.cycle(step - self.warmup_steps)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * pos / length))


def make_optimizer(model: torch.nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    """AdamW, or AdaBelief (``pytorch-optimizer``) with the same decoupled weight decay (``p -= lr * wd * p``)."""
    if cfg.optimizer == "adabelief":
        from pytorch_optimizer import AdaBelief  # imported only when asked for: the default run does not need it

        return AdaBelief(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, weight_decouple=True, fixed_decay=False)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_schedule(cfg: LoopConfig, steps_per_epoch: int) -> WarmupCosine | WarmupCosineRestarts:
    """The LR multiplier of ``cfg``: warmup + one cosine, or warmup + cosine with warm restarts."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.restart_epochs > 0:
        return WarmupCosineRestarts(warmup, round(cfg.restart_epochs * steps_per_epoch), cfg.restart_mult, cfg.min_lr_ratio)
    return WarmupCosine(warmup, cfg.epochs * steps_per_epoch, cfg.min_lr_ratio)
