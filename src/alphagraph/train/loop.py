"""A reusable training loop for node-level models on batches of trading days.

How a model plugs in
--------------------
- Data: any :class:`alphagraph.train.data.DayData` (``dates(split)``,
  ``batch(dates)`` whose result has ``y``, ``y_dir``, ``split``, ``row``,
  ``batch`` and ``.to(device)``). :class:`~alphagraph.train.data.GraphDayData`
  serves daily PyG graphs.
- Model: an ``nn.Module`` whose ``forward(batch)`` returns a dict with
  ``"reg"`` [N, H] (one regression output per horizon) and optionally
  ``"dir_logit"`` [N, H] (one up-logit per horizon; predictions then carry
  ``p_up = sigmoid(dir_logit)``). Other keys are ignored by the loop and may
  be used by a custom loss.
- Loss: any callable ``loss_fn(out, batch, mask) -> (scalar tensor, dict of
  floats)``; ``mask`` [N] marks the nodes that count (split == TRAIN).
  :class:`~alphagraph.train.losses.MultiHorizonLoss` is the default
  (weighted masked MSE + class-weighted BCE + optional daily-corr term).

What :func:`fit` does
---------------------
- Each epoch visits the training days in an order drawn from a
  ``torch.Generator`` seeded from ``(seed, epoch)`` alone (optionally only the
  first ``days_per_epoch`` of that order), in mini-batches of ``batch_days``
  days. Every node of a day is in the graph; only TRAIN nodes enter the loss.
- AdamW (``optimizer: adabelief``: AdaBelief from the maintained
  ``pytorch-optimizer`` package, decoupled weight decay as AdamW's);
  learning rate: linear warmup over ``warmup_epochs`` epochs' worth of
  optimizer steps, then cosine decay to ``min_lr_ratio * lr`` at the last step
  of ``epochs`` (``restart_epochs > 0``: cosine annealing with warm restarts
  instead, :class:`WarmupCosineRestarts`). The scheduler is stepped once per
  optimizer step.
- Gradient clipping by global norm (``grad_clip``; 0 = off).
- After each epoch: validation over all VAL nodes of the VAL dates; the
  monitored value is ``select_metric`` (``rank_ic`` / ``ic``: mean daily
  correlation at ``select_horizon``, higher is better; ``loss``: validation
  loss, lower is better), optionally smoothed by an EMA (``select_smoothing``).
  Early stopping after ``patience`` epochs without improvement (> ``min_delta``).
- Checkpoints in ``run_dir``: ``best.pt`` (model weights at the best epoch)
  and ``last.pt`` (everything needed for an exact resume: model, optimizer,
  scheduler, torch / numpy / python RNG states, epoch, early-stopping state,
  history). ``fit`` resumes from ``last.pt`` when it exists: on CPU, N epochs
  then M more after a restart give bit-identical weights to N + M epochs, and
  byte-identical ``last.pt`` / ``best.pt`` files (so ``dvc.lock`` does not change).
  Checkpoints hold only tensors and plain containers (RNG states included)
  and are read with :func:`load_checkpoint` (``weights_only=True``): loading
  a checkpoint from a colleague or a shared remote never runs code.
- On return the model holds the best epoch's weights.
- Data parallel under torch.distributed (torchrun; :mod:`alphagraph.distributed`):
  rank r takes every world-th day of each batch, DistributedDataParallel
  averages the gradients (each rank's loss weighed by its share of the
  batch's days), validation days are sharded and gathered so every rank takes
  the same early-stopping decision, and only rank 0 writes checkpoints
  (reading them on resume and broadcasting them). ``batch_days`` stays the
  global batch, so N processes follow the single-process run up to float
  summation order. Each rank uses ``num_threads // processes on the machine``.
- Deterministic on CPU: fixed ``num_threads``,
  ``torch.use_deterministic_algorithms`` (warn-only, so an op without a
  deterministic kernel on CUDA does not abort a run). On CUDA the forward pass
  runs under bf16 autocast; on CPU it is fp32.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import pickle
import random
import sys
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from alphagraph import distributed as ddp
from alphagraph.config import check_device
from alphagraph.errors import UserError
from alphagraph.evaluate import daily_ic
from alphagraph.io import atomic_path
from alphagraph.log import get_logger
from alphagraph.train.data import TEST, TRAIN, VAL, DayData

SELECT_METRICS = ("rank_ic", "ic", "loss")
OPTIMIZERS = ("adamw", "adabelief")
LossFn = Callable[[dict[str, torch.Tensor], Any, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]
log = get_logger("train")


@dataclass(frozen=True)
class LoopConfig:
    """Knobs of :func:`fit` (a model stage maps its params group onto these)."""

    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_days: int = 16
    eval_batch_days: int = 32
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


# ------------------------------------------------------------------ helpers


def resolve_device(device: str) -> torch.device:
    """The torch device of the ``device`` param; ``cuda`` without a GPU is the user's error (:func:`check_device`)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_device(device)
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (call before building a model)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The day-shuffling generator of one epoch: a function of (seed, epoch) only."""
    state = np.random.SeedSequence([seed % 2**32, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@contextlib.contextmanager
def deterministic_torch(enabled: bool, num_threads: int, device: torch.device) -> Iterator[None]:
    """Fixed threads and deterministic algorithms for the duration of a fit; restored afterwards."""
    old_threads = torch.get_num_threads()
    old_det, old_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to(batch: Any, device: torch.device) -> Any:
    """Move a batch to ``device`` (a no-op on CPU: ``Data.to`` walks every attribute)."""
    return batch if device.type == "cpu" else batch.to(device)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


class CheckpointError(UserError):
    """A checkpoint that is refused: it holds more than tensors and plain containers, or is unreadable."""


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG state as tensors and plain values, so that ``weights_only`` loading accepts it."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": int(version), "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate((p["version"], tuple(int(w) for w in p["words"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(obj: Any) -> Any:
    """Numpy scalars (e.g. in history records) as python numbers: ``weights_only`` loading refuses numpy objects."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj.item() if isinstance(obj, np.generic) else obj


def _canonical(obj: Any) -> Any:
    """``obj`` with fresh containers and every string interned, so that its pickle depends on values only.

    Pickle writes an object it has seen before as a back-reference (memo), by identity: a key
    that a fresh run takes from one code constant ("epoch", "lr") but a resumed run from the
    unpickled checkpoint (another object per occurrence) is written out again, so the same
    checkpoint got other bytes after a resume (and DVC saw a changed models/ folder). Interned,
    equal strings are one object in both runs; rebuilt dicts, lists and tuples are never shared.
    Tensors are kept as they are (torch.save writes each storage once, by its own key).
    """
    kind = type(obj)
    if kind is str:
        return sys.intern(obj)
    if kind in (dict, OrderedDict):  # a state_dict is an OrderedDict whose _metadata attribute is pickled too
        out = kind((_canonical(k), _canonical(v)) for k, v in obj.items())
        for attr, value in getattr(obj, "__dict__", {}).items():
            setattr(out, attr, _canonical(value))
        return out
    if kind in (list, tuple):
        return kind(_canonical(v) for v in obj)
    return obj


def _save(obj: Any, path: Path) -> None:
    # Saving to a file object: torch names the zip records after a path's stem, and the
    # temporary file's random name would make identical checkpoints differ byte-wise.
    # _canonical: a resumed run's checkpoint byte-identical to an uninterrupted run's.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(_canonical(obj), fh)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """A checkpoint's contents, read with ``weights_only=True``: tensors and plain containers only.

    Unpickling anything else could run code (a checkpoint from a colleague or a
    shared DVC remote is untrusted input), so such a file is refused with a
    :class:`CheckpointError` naming it.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; anything else is damaged or foreign
        raise CheckpointError(f"{path}: cannot be loaded: not a torch checkpoint (torch.save's zip format); delete it and retrain")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers, and unpickling"
            f" them could run code ({detail or type(exc).__name__}). Delete it and retrain, or rebuild it from a"
            " trusted source; never load it with weights_only=False"
        ) from exc
    except (RuntimeError, EOFError) as exc:  # a truncated archive
        raise CheckpointError(f"{path}: cannot be loaded ({exc}); delete it and retrain") from exc


_RESUME_IGNORED = ("progress", "device", "num_threads")
# Fields added later: left out of the key at their default, so checkpoints written before them
# still resume and a default run's checkpoint is byte-identical to before.
_KEY_DEFAULTS = {"optimizer": "adamw", "restart_epochs": 0.0, "restart_mult": 1.0}


def _config_key(cfg: LoopConfig) -> dict[str, Any]:
    return {
        k: v for k, v in dataclasses.asdict(cfg).items()
        if k not in _RESUME_IGNORED and not (k in _KEY_DEFAULTS and v == _KEY_DEFAULTS[k])
    }


# --------------------------------------------------------------- inference


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    data: DayData,
    dates: Sequence[Any],
    splits: Sequence[int] = (VAL, TEST),
    batch_days: int = 32,
    device: torch.device | str = "cpu",
) -> Prediction:
    """Model outputs for the nodes of ``dates`` whose split code is in ``splits``."""
    device = torch.device(device)
    model.eval()
    wanted = torch.tensor(list(splits), dtype=torch.int8)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("rows", "split", "day", "reg", "p_up", "y", "p_signal")}
    dates = list(dates)
    for part in _chunks(len(dates), batch_days):
        batch = data.batch(dates[part])
        keep = torch.isin(batch.split.cpu(), wanted)
        parts["rows"].append(batch.row.cpu()[keep].numpy())
        parts["split"].append(batch.split.cpu()[keep].numpy())
        parts["day"].append((batch.batch.cpu() + part.start)[keep].numpy())
        parts["y"].append(batch.y.cpu()[keep].float().numpy())
        with _autocast(device):
            out = model(_to(batch, device))
        keep = keep.to(device)
        parts["reg"].append(out["reg"].float()[keep].cpu().numpy())
        if "dir_logit" in out:
            parts["p_up"].append(torch.sigmoid(out["dir_logit"].float())[keep].cpu().numpy())
        if "sig_logit" in out:
            parts["p_signal"].append(torch.sigmoid(out["sig_logit"].float())[keep].cpu().numpy())
    if not parts["rows"]:
        raise ValueError("predict: no dates given")
    cat = {k: np.concatenate(v) if v else None for k, v in parts.items()}
    return Prediction(cat["rows"], cat["split"], cat["day"], cat["reg"], cat["p_up"], cat["y"], cat["p_signal"])


def daily_metrics(pred: Prediction, horizons: Sequence[int]) -> dict[str, float]:
    """Mean daily IC and RankIC per horizon of predictions against their labels.

    Labels are per-date transforms of the forward return (z-score), so the
    daily RankIC equals the RankIC against the return itself.
    """
    out: dict[str, float] = {}
    for j, h in enumerate(horizons):
        frame = pl.DataFrame({"date": pred.day, "pred": pred.reg[:, j], "y": pred.y[:, j]}).with_columns(
            pl.col("y").fill_nan(None)
        )
        ics = daily_ic(frame, "pred", "y")
        out[f"ic_{h}d"] = float(ics["ic"].mean()) if ics.height else float("nan")
        out[f"rank_ic_{h}d"] = float(ics["rank_ic"].mean()) if ics.height else float("nan")
    return out


@torch.no_grad()
def validate(
    model: torch.nn.Module, data: DayData, dates: Sequence[Any], loss_fn: LossFn, cfg: LoopConfig, device: torch.device
) -> dict[str, float]:
    """Validation loss and daily (Rank)IC per horizon over the VAL nodes of ``dates``.

    Under torch.distributed each rank scores every ``world``-th date and the
    parts are gathered, so every rank returns the same figures.
    """
    model.eval()
    rank, world = ddp.rank(), ddp.world_size()
    total, weight = 0.0, 0
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("day", "reg", "y")}
    dates = list(dates)[rank::world]
    for part in _chunks(len(dates), cfg.eval_batch_days):
        batch = _to(data.batch(dates[part]), device)
        mask = batch.split == VAL
        n = int(mask.sum())
        if n == 0:
            continue
        with _autocast(device):
            out = model(batch)
        loss, _ = loss_fn(out, batch, mask)
        total, weight = total + float(loss) * n, weight + n
        # A global day id (position in the full date list), so gathered parts never collide.
        parts["day"].append((batch.batch[mask] + part.start).cpu().numpy() * world + rank)
        parts["reg"].append(out["reg"].float()[mask].cpu().numpy())
        parts["y"].append(batch.y[mask].float().cpu().numpy())
    gathered = ddp.all_gather((total, weight, parts))
    total, weight = sum(g[0] for g in gathered), sum(g[1] for g in gathered)
    if weight == 0:
        return {"loss": float("nan")}
    cat = {k: np.concatenate([a for g in gathered for a in g[2][k]]) for k in parts}
    pred = Prediction(rows=np.empty(0), split=np.empty(0), day=cat["day"], reg=cat["reg"], p_up=None, y=cat["y"])
    return {"loss": total / weight} | daily_metrics(pred, data.horizons)


# --------------------------------------------------------------------- fit


def fit(
    model: torch.nn.Module,
    data: DayData,
    loss_fn: LossFn,
    cfg: LoopConfig,
    run_dir: str | Path | None = None,
    resume: bool = True,
    until_epoch: int | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    desc: str = "train",
) -> FitResult:
    """Train ``model`` on the TRAIN nodes of ``data``, select on VAL; see the module docstring.

    ``until_epoch`` stops after that many epochs in total without marking the
    run finished (a later call resumes it; used to test exact resume).
    """
    if cfg.select_horizon not in data.horizons:
        raise ValueError(f"select_horizon {cfg.select_horizon} is not one of the horizons {data.horizons}")
    device = resolve_device(cfg.device)
    run_dir = Path(run_dir) if run_dir is not None else None
    train_dates, val_dates = data.dates("train"), data.dates("val")
    if train_dates.size == 0 or val_dates.size == 0:
        raise ValueError(f"fit: {train_dates.size} training and {val_dates.size} validation dates; both must be > 0")
    days = min(cfg.days_per_epoch, train_dates.size) if cfg.days_per_epoch > 0 else train_dates.size
    steps_per_epoch = math.ceil(days / cfg.batch_days)
    mode = "min" if cfg.select_metric == "loss" else "max"
    monitor = "loss" if cfg.select_metric == "loss" else f"{cfg.select_metric}_{cfg.select_horizon}d"

    rank, world = ddp.rank(), ddp.world_size()
    threads = max(1, cfg.num_threads // ddp.local_world_size()) if cfg.num_threads > 0 else 0
    with deterministic_torch(cfg.deterministic, threads, device):
        model.to(device)
        # Under torch.distributed the forward pass goes through DDP (gradients all-reduced, averaged
        # over ranks); the optimizer, checkpoints and selection use the plain module.
        net = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
        )
        optimizer = make_optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, make_schedule(cfg, steps_per_epoch))
        stopper = EarlyStopping(cfg.patience, mode, cfg.min_delta, cfg.select_smoothing)
        history: list[dict[str, Any]] = []
        start_epoch, elapsed, finished = 0, 0.0, False
        best_state: dict[str, torch.Tensor] | None = None

        last_path = run_dir / "last.pt" if run_dir else None
        best_path = run_dir / "best.pt" if run_dir else None
        # Rank 0 reads the checkpoint and hands it to the others (no shared file system needed).
        ckpt = None
        if ddp.is_main() and resume and last_path is not None and last_path.exists():
            # On the CPU: RNG states must stay CPU tensors; load_state_dict moves weights and moments to the model's device.
            ckpt = load_checkpoint(last_path, "cpu")
        ckpt = ddp.broadcast(ckpt)
        if ckpt is not None:
            if ckpt["config"] != _config_key(cfg):
                raise ValueError(f"{last_path}: checkpoint was written with a different loop config; refusing to resume")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            stopper = EarlyStopping(**ckpt["stopper"])
            history, start_epoch, finished = ckpt["history"], ckpt["epoch"], ckpt["finished"]
            # Each rank's RNG stream (dropout masks differ with each rank's shard of days).
            by_rank = ckpt.get("rng_by_rank")
            _set_rng_state(by_rank[rank] if by_rank is not None and len(by_rank) == world else ckpt["rng"])
            log.info("%s: resumed from %s after epoch %d", desc, last_path, start_epoch)

        end_epoch = cfg.epochs if until_epoch is None else min(cfg.epochs, until_epoch)
        bar = tqdm(
            total=cfg.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc=desc,
            disable=True if not ddp.is_main() else None if cfg.progress is None else not cfg.progress, leave=False,
            dynamic_ncols=True,
        )
        epoch = start_epoch
        while not finished and epoch < end_epoch:
            t0 = time.perf_counter()
            net.train()
            order = torch.randperm(train_dates.size, generator=epoch_generator(cfg.seed, epoch))[:days].numpy()
            sums: dict[str, float] = {}
            steps = 0
            for part in _chunks(days, cfg.batch_days):
                step_dates = train_dates[np.sort(order[part])]
                # Data parallel: rank r takes every world-th day of the batch. A rank left without a day
                # (a batch smaller than the world) still runs one with zero weight: DDP needs every rank's backward.
                shard = step_dates[rank::world]
                share = shard.size / step_dates.size * world
                batch = _to(data.batch(shard if shard.size else step_dates[:1]), device)
                mask = batch.split == TRAIN
                if ddp.all_sum(int(mask.sum()) if shard.size else 0) == 0:
                    bar.update(1)
                    continue
                with _autocast(device):
                    out = net(batch)
                if bool(mask.any()):
                    loss, parts = loss_fn(out, batch, mask)
                else:
                    loss, parts = out["reg"].sum() * 0.0, {"loss": 0.0}
                if share != 1.0:  # DDP averages over ranks: weigh each rank's loss by its share of the days
                    loss = loss * share
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                optimizer.step()
                scheduler.step()
                steps += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.4f}", epoch=epoch + 1)
            val = validate(model, data, val_dates, loss_fn, cfg, device)
            epoch += 1
            improved = stopper.update(val.get(monitor, float("nan")), epoch)
            seconds = time.perf_counter() - t0
            elapsed += seconds
            record = {
                "epoch": epoch,
                "lr": optimizer.param_groups[0]["lr"],
                **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
                **{f"val_{k}": v for k, v in val.items()},
                "monitor": stopper.ema if stopper.ema is not None else float("nan"),
                "best_epoch": stopper.best_epoch,
            }  # no wall-clock time here: history goes into checkpoints and plots, which must be reproducible
            history.append(record)
            if improved:
                best_state = copy.deepcopy(model.state_dict())
                if best_path is not None and ddp.is_main():
                    _save({"model": best_state, "epoch": epoch, "score": _plain(stopper.best)}, best_path)
            finished = stopper.should_stop or epoch >= cfg.epochs
            rngs = ddp.all_gather(_rng_state(device)) if last_path is not None and world > 1 else None
            if last_path is not None and ddp.is_main():
                _save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "stopper": _plain(dataclasses.asdict(stopper)),
                        "rng": _rng_state(device),
                        **({"rng_by_rank": rngs} if rngs is not None else {}),
                        "epoch": epoch,
                        "finished": finished,
                        "history": _plain(history),
                        "config": _plain(_config_key(cfg)),
                    },
                    last_path,
                )
            (log.info if ddp.is_main() else log.debug)(
                "%s epoch %d: train loss %.4f, val %s %.4f%s (%.1f s)", desc, epoch, record.get("train_loss", float("nan")),
                monitor, val.get(monitor, float("nan")), " *" if improved else "", seconds,
            )
            if on_epoch_end is not None:
                on_epoch_end(record)
        bar.close()

        if best_state is None and best_path is not None and ddp.is_main() and best_path.exists():
            best_state = load_checkpoint(best_path, "cpu")["model"]
        if world > 1:  # a resumed run may have its best epoch in rank 0's file only
            best_state = ddp.broadcast(None if best_state is None else {k: v.cpu() for k, v in best_state.items()})
        if best_state is not None:
            model.load_state_dict(best_state)
    return FitResult(
        history=history,
        best_epoch=stopper.best_epoch,
        best_score=stopper.best,
        epochs_run=epoch,
        stopped_early=stopper.should_stop,
        finished=finished,
        train_seconds=elapsed,
    )
