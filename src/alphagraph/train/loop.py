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
- After each epoch: validation over all VAL nodes of the VAL dates (their
  batches built once and kept when they fit :data:`VAL_CACHE_BYTES`); the
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
- Data parallel under torch.distributed (torchrun; :mod:`alphagraph.runtime.distributed`):
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

The loop's settings and results are in :mod:`.types`, its optimizer, schedules and early
stopping in :mod:`.optim`, device and seeding in :mod:`.device`, checkpoints in :mod:`.checkpoint`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from alphagraph.runtime import distributed as ddp
from alphagraph.evaluation.evaluate import daily_ic
from alphagraph.runtime.log import get_logger
from alphagraph.train.checkpoint import (
    CheckpointError,
    _config_key,
    _plain,
    _rng_state,
    _save,
    _set_rng_state,
    load_checkpoint,
)
from alphagraph.train.data import DayData, rows_per_date
from alphagraph.train.outputs import TEST, TRAIN, VAL
from alphagraph.train.device import _autocast, _to, deterministic_torch, epoch_generator, resolve_device, seed_everything
from alphagraph.train.optim import EarlyStopping, WarmupCosine, WarmupCosineRestarts, make_optimizer, make_schedule
from alphagraph.train.types import OPTIMIZERS, SELECT_METRICS, FitResult, LoopConfig, LossFn, Prediction, loop_config

__all__ = [
    # moved to types, optim, device and checkpoint; importable from here as before
    "OPTIMIZERS", "SELECT_METRICS", "FitResult", "LoopConfig", "LossFn", "Prediction", "loop_config",
    "EarlyStopping", "WarmupCosine", "WarmupCosineRestarts", "make_optimizer", "make_schedule",
    "deterministic_torch", "epoch_generator", "resolve_device", "seed_everything",
    "CheckpointError", "load_checkpoint",
    # the loop
    "log", "predict", "daily_metrics", "validate", "BatchCache", "fit",
]

log = get_logger("train")


def _chunks(n: int, size: int) -> Iterator[slice]:
    for lo in range(0, n, size):
        yield slice(lo, min(lo + size, n))


# A model whose per-edge tensors fall out of the CPU's cache in large evaluation batches evaluates faster
# in batches of about this many stock-days (LoopConfig.cpu_eval_rows): the GAT on 200 stocks takes 4 ms a
# day in batches of 4-8 days, 8 ms in batches of 32. The core model is as fast either way (its attention
# runs one relation at a time) and its batches' fixed costs favour large ones: it keeps eval_batch_days.
CPU_EVAL_ROWS = 1024


# A fold validates on the same dates after every epoch, and a batch is a function of its dates
# (neighbour sampling is seeded by them): the validation batches are built once and kept when all of
# them fit in this many bytes, per process. Rebuilding them was a tenth of the GAT's stage on the default
# market (its batches: about 130 MB, the core's about 320 MB, the Transformer's compact windows 187 MB);
# NASDAQ-sized ones do not fit and are rebuilt each epoch as before, so the stage's peak memory there
# does not move.
VAL_CACHE_BYTES = 512 << 20


class BatchCache:
    """Batches keyed by their part of a fixed date list, kept while their estimated total fits ``budget`` bytes.

    The first batch's size times ``parts`` (how many batches the date list makes) is the estimate: above
    the budget nothing is kept (and so no memory is added); otherwise every batch is, until the real
    total passes the budget.
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.used, self.on = budget, 0, budget > 0
        self.batches: dict[Any, Any] = {}

    def get(self, key: Any, build: Callable[[], Any], parts: int) -> Any:
        batch = self.batches.get(key)
        if batch is not None:
            return batch
        batch = build()
        if self.on:
            size = _nbytes(batch)
            if not self.batches and size * parts > self.budget:
                self.on = False
            elif self.used + size <= self.budget:
                self.batches[key], self.used = batch, self.used + size
        return batch


def _nbytes(batch: Any) -> int:
    items = batch.to_dict().values() if hasattr(batch, "to_dict") else vars(batch).values()
    return sum(v.nelement() * v.element_size() for v in items if torch.is_tensor(v))


def eval_days(data: DayData, batch_days: int, device: torch.device, cpu_rows: int | None) -> int:
    """Days per evaluation batch: ``batch_days``, on CPU cut to about ``cpu_rows`` stock-days (None: no cut)."""
    per_day = rows_per_date(data) if cpu_rows is not None and device.type == "cpu" else None
    return batch_days if per_day is None else max(1, min(batch_days, round(cpu_rows / per_day)))


# --------------------------------------------------------------- inference


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    data: DayData,
    dates: Sequence[Any],
    splits: Sequence[int] = (VAL, TEST),
    batch_days: int = 32,
    device: torch.device | str = "cpu",
    cpu_rows: int | None = None,
) -> Prediction:
    """Model outputs for the nodes of ``dates`` whose split code is in ``splits`` (``cpu_rows``: :func:`eval_days`)."""
    device = torch.device(device)
    model.eval()
    wanted = torch.tensor(list(splits), dtype=torch.int8)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("rows", "split", "day", "reg", "p_up", "y", "p_signal")}
    dates = list(dates)
    for part in _chunks(len(dates), eval_days(data, batch_days, device, cpu_rows)):
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
    model: torch.nn.Module, data: DayData, dates: Sequence[Any], loss_fn: LossFn, cfg: LoopConfig, device: torch.device,
    cache: BatchCache | None = None,
) -> dict[str, float]:
    """Validation loss and daily (Rank)IC per horizon over the VAL nodes of ``dates``.

    Under torch.distributed each rank scores every ``world``-th date and the
    parts are gathered, so every rank returns the same figures. ``cache``: the
    batches of earlier calls with the same ``dates`` (:class:`BatchCache`).
    """
    model.eval()
    rank, world = ddp.rank(), ddp.world_size()
    total, weight = 0.0, 0
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("day", "reg", "y")}
    dates = list(dates)[rank::world]
    per_batch = eval_days(data, cfg.eval_batch_days, device, cfg.cpu_eval_rows)
    for part in _chunks(len(dates), per_batch):
        def build(part: slice = part) -> Any:
            return _to(data.batch(dates[part]), device)

        batch = build() if cache is None else cache.get((part.start, part.stop), build, math.ceil(len(dates) / per_batch))
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
        val_cache = BatchCache(VAL_CACHE_BYTES)
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
            val = validate(model, data, val_dates, loss_fn, cfg, device, val_cache)
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
