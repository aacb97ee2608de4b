"""Optimizer and LR-schedule refinements of the training loop: AdaBelief, cosine annealing with warm restarts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from alphagraph.train import loop as loop_mod
from alphagraph.train.outputs import TRAIN, VAL
from alphagraph.train.loop import LoopConfig, WarmupCosine, WarmupCosineRestarts, _config_key, fit, load_checkpoint, make_schedule


@dataclass
class ToyBatch:
    x: torch.Tensor
    y: torch.Tensor
    split: torch.Tensor
    row: torch.Tensor
    batch: torch.Tensor
    y_dir: Any = None

    def to(self, device: Any) -> ToyBatch:
        return self


class ToyData:
    """40 days x 12 stocks, a linear signal in 4 features; the last 10 days are validation."""

    horizons = [1]

    def __init__(self, n_days: int = 40, n_stocks: int = 12) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n_days, n_stocks, 4, generator=g)
        self.y = (self.x @ torch.tensor([1.0, -0.5, 0.3, 0.0]) + 0.5 * torch.randn(n_days, n_stocks, generator=g))[..., None]
        self.code = torch.full((n_days,), TRAIN, dtype=torch.int8)
        self.code[-10:] = VAL
        self.n_stocks = n_stocks

    def dates(self, *splits: str) -> np.ndarray:
        wanted = [{"train": TRAIN, "val": VAL}[s] for s in splits]
        return np.flatnonzero(np.isin(self.code.numpy(), wanted))

    def batch(self, dates: Any) -> ToyBatch:
        d = torch.as_tensor(np.asarray(dates), dtype=torch.int64)
        n = self.n_stocks
        return ToyBatch(
            x=self.x[d].reshape(-1, 4), y=self.y[d].reshape(-1, 1), split=self.code[d].repeat_interleave(n),
            row=(d[:, None] * n + torch.arange(n)).reshape(-1), batch=torch.arange(d.numel()).repeat_interleave(n),
        )

    def class_balance(self, split: str = "train") -> None:
        return None


class ToyModel(torch.nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))

    def forward(self, batch: ToyBatch) -> dict[str, torch.Tensor]:
        return {"reg": self.net(batch.x)}


def mse(out: dict[str, torch.Tensor], batch: ToyBatch, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    loss = ((out["reg"][mask] - batch.y[mask]) ** 2).mean()
    return loss, {"loss": loss.item()}


def cfg(**kw: Any) -> LoopConfig:
    base = dict(epochs=4, lr=1e-2, batch_days=5, eval_batch_days=10, patience=0, num_threads=1, device="cpu",
                warmup_epochs=0.5, min_lr_ratio=0.1)
    return LoopConfig(**(base | kw))


# ------------------------------------------------------------------ schedule


def closed_form(s: int, t0: float, mult: float, floor: float) -> float:
    """SGDR at post-warmup step s, cycles found by walking their cumulative starts."""
    start, length = 0.0, t0
    while s >= start + length:
        start, length = start + length, length * mult
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (s - start) / length))


def test_restart_schedule_matches_the_closed_form():
    f = WarmupCosineRestarts(warmup_steps=2, cycle_steps=4, mult=2.0, min_ratio=0.1)
    assert [f(0), f(1)] == [0.5, 1.0]  # linear warmup, as WarmupCosine
    # restarts (multiplier back to 1) at T_0 = 4 and T_0 + T_0 * T_mult = 12 post-warmup steps
    for s in (0, 4, 12, 28):
        assert f(2 + s) == pytest.approx(1.0)
    assert f(2 + 2) == pytest.approx(0.55) and f(2 + 8) == pytest.approx(0.55) and f(2 + 20) == pytest.approx(0.55)
    assert f(2 + 11) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 7 / 8)))
    values = [f(s) for s in range(2, 200)]
    assert min(values) >= 0.1 and min(values) < 0.11  # the floor is approached, never crossed
    for t0, mult in ((4, 2.0), (3, 1.5), (5, 1.0), (7, 1.3)):
        g = WarmupCosineRestarts(0, t0, mult, 0.05)
        assert all(g(s) == pytest.approx(closed_form(s, t0, mult, 0.05), abs=1e-12) for s in range(300))


def test_make_schedule_off_is_todays_warmup_cosine_and_on_counts_epochs_in_steps():
    off = make_schedule(cfg(), steps_per_epoch=6)
    assert type(off) is WarmupCosine and vars(off) == vars(WarmupCosine(3, 24, 0.1))
    on = make_schedule(cfg(restart_epochs=1.5, restart_mult=2.0), steps_per_epoch=6)
    assert isinstance(on, WarmupCosineRestarts) and (on.warmup_steps, on.cycle_steps, on.mult) == (3, 9, 2.0)
    # the new fields stay out of the resume key when off: older checkpoints still resume
    assert not {"optimizer", "restart_epochs", "restart_mult"} & set(_config_key(cfg()))
    assert _config_key(cfg(optimizer="adabelief"))["optimizer"] == "adabelief"
    with pytest.raises(ValueError, match="optimizer"):
        cfg(optimizer="sgd")
    with pytest.raises(ValueError, match="restart_mult"):
        cfg(restart_epochs=1.0, restart_mult=0.5)


# ------------------------------------------------------------------ fit


def test_adabelief_reaches_fit_and_steps_differently(monkeypatch, tmp_path):
    from pytorch_optimizer import AdaBelief

    made: list[torch.optim.Optimizer] = []
    real = loop_mod.make_optimizer
    monkeypatch.setattr(loop_mod, "make_optimizer", lambda m, c: made.append(real(m, c)) or made[-1])
    data = ToyData()
    models = {name: ToyModel() for name in ("adamw", "adabelief")}
    for name, model in models.items():
        fit(model, data, mse, cfg(epochs=1, optimizer=name), run_dir=tmp_path / name)
    assert type(made[0]) is torch.optim.AdamW and type(made[1]) is AdaBelief
    # decoupled weight decay, as AdamW's
    assert made[1].param_groups[0]["weight_decouple"] and made[1].param_groups[0]["weight_decay"] == 1e-4
    state = load_checkpoint(tmp_path / "adabelief" / "last.pt")["optimizer"]["state"][0]
    assert "exp_avg_var" in state and "exp_avg_sq" not in state  # AdaBelief's belief term, not Adam's second moment
    a, b = (torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models.values())
    assert not torch.equal(a, b)


def test_resume_mid_cycle_equals_an_uninterrupted_run(tmp_path):
    """AdaBelief + warm restarts: 2 epochs, stop, 2 more == 4 straight; the LR follows the closed form."""
    data = ToyData()
    c = cfg(optimizer="adabelief", restart_epochs=1.0, restart_mult=2.0)
    straight = ToyModel()
    full = fit(straight, data, mse, c, run_dir=tmp_path / "a")
    part = fit(ToyModel(), data, mse, c, run_dir=tmp_path / "b", until_epoch=2)
    assert part.epochs_run == 2 and not part.finished
    torch.manual_seed(123)  # a restarted process has other RNG states: the checkpoint restores them
    resumed_model = ToyModel(seed=9)
    resumed = fit(resumed_model, data, mse, c, run_dir=tmp_path / "b")
    assert resumed.finished and resumed.epochs_run == 4
    last_a, last_b = (load_checkpoint(tmp_path / d / "last.pt")["model"] for d in ("a", "b"))
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    assert [h["lr"] for h in full.history] == [h["lr"] for h in resumed.history]
    # 30 training days / 5 = 6 steps per epoch: warmup 3 steps, cycles of 6 then 12 steps
    sched = WarmupCosineRestarts(3, 6, 2.0, 0.1)
    assert [h["lr"] for h in full.history] == pytest.approx([1e-2 * sched(6 * e) for e in (1, 2, 3, 4)])
    lrs = [h["lr"] for h in full.history]
    assert lrs[1] > lrs[0] and lrs[3] > lrs[2]  # warm restarts between epochs 1-2 and 3-4
