"""Permutation feature importance of the neural models, and the per-fold interpretability frames.

Permutation importance (:func:`permutation_importance`): any model trained
with the shared loop (core, temporal baselines over ``x_seq``, the GAT over
``x``): how far shuffling one feature, or one family of them
(:func:`feature_groups`), across the stocks of each day moves the day's ranking
(``rank_shift``) and the mean daily RankIC (``drop``).

The models' own attention read-outs live with each model (the core model's in
:mod:`alphagraph.models.core.attention`); :func:`fold_maps` takes one.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from alphagraph.evaluation.evaluate import daily_ic
from alphagraph.train.data import rows_per_date
from alphagraph.train.outputs import VAL

__all__ = ["permutation_importance", "feature_groups", "fold_maps", "stack_folds", "day_batches", "recording"]


# ------------------------------------------------------------------ helpers


def day_batches(data: Any, dates: Sequence[Any], batch_days: int, device: torch.device) -> Iterator[tuple[int, Any]]:
    """(offset of the first date, batch) over ``dates`` in chunks of ``batch_days``."""
    if batch_days < 1:
        raise ValueError(f"batch_days must be >= 1, got {batch_days}")
    dates = list(dates)
    for lo in range(0, len(dates), batch_days):
        batch = data.batch(dates[lo: lo + batch_days])
        yield lo, batch if device.type == "cpu" else batch.to(device)


@contextlib.contextmanager
def recording(model: Any) -> Iterator[None]:
    """Eval mode and recording on for the block; the model's previous state restored after."""
    was_training, was_recording = model.training, bool(getattr(model, "record", False))
    model.eval()
    model.set_record(True)
    try:
        yield
    finally:
        model.set_record(was_recording)
        model.train(was_training)


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    # As the training loop's inference: bf16 on CUDA, fp32 on CPU.
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------- permutation importance


def _generator(seed: int, feature: str, repeat: int, day: np.datetime64) -> torch.Generator:
    """A generator of one (feature, repeat, first date of the batch): independent of which other features run."""
    key = [seed % 2**32, zlib.crc32(feature.encode()), repeat, zlib.crc32(str(day).encode())]
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _within_day_permutation(day: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """donor [N]: node i takes node donor[i]'s values; donor[i] is on i's day, a random permutation per day."""
    day = day.cpu()
    by_day = torch.argsort(day, stable=True)
    shuffled = torch.argsort(day.double() + torch.rand(day.numel(), generator=gen, dtype=torch.float64), stable=True)
    donor = torch.empty_like(by_day)
    donor[by_day] = shuffled  # both orders list the days in the same blocks
    return donor


def _mean_daily_rank_ic(ics: list[pl.DataFrame]) -> float:
    valid = pl.concat(ics) if ics else pl.DataFrame()
    return float(valid["rank_ic"].mean()) if valid.height else float("nan")


def feature_groups(features: Sequence[str]) -> dict[str, list[str]]:
    """The features by family: one name over its windows (``f_roc_5`` .. ``f_roc_60`` -> ``f_roc_*``).

    A feature alone in its family keeps its own name. Order: first appearance.
    """
    families: dict[str, list[str]] = {}
    for f in features:
        families.setdefault(re.sub(r"_\d+$", "", f), []).append(f)
    return {(f"{stem}_*" if len(cols) > 1 else cols[0]): cols for stem, cols in families.items()}


@torch.no_grad()
def permutation_importance(
    model: torch.nn.Module,
    data: Any,
    dates: Sequence[Any],
    features: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    horizon_index: int = 0,
    repeats: int = 1,
    seed: int = 0,
    batch_days: int = 16,
    device: torch.device | str = "cpu",
    splits: Sequence[int] = (VAL,),
) -> pl.DataFrame:
    """Rank shift and RankIC drop when each feature (or group) is shuffled across the stocks of each day.

    ``features``: column names, or groups (name -> columns, e.g.
    :func:`feature_groups`) whose columns are shuffled together, with the same
    permutation. ``feature`` (Utf8: the column or group name), ``rank_ic``
    (Float64: the mean daily RankIC with it permuted, averaged over
    ``repeats``), ``drop`` (Float64: baseline minus ``rank_ic``; positive =
    the shuffle costs RankIC), ``rank_shift`` (Float64: 1 minus the mean daily
    rank correlation of the predictions with and without the shuffle: how far
    it moves the day's ranking, 0 = not at all, whatever the labels), one row
    per feature or group in the order given. The baseline is the mean daily RankIC of
    ``reg[:, horizon_index]`` against ``y[:, horizon_index]`` over the nodes of
    ``dates`` whose split code is in ``splits`` (default VAL: pass the fold's
    validation dates), NaN labels skipped, days with fewer than 3 such nodes
    skipped (:func:`alphagraph.evaluation.evaluate.daily_ic`, as the training loop's
    validation).

    Permuting: within each day of a batch every node (all of the day's
    stocks, whatever their split: the cross-section the model sees) takes the
    feature from another node of that day, a random permutation per day; the
    donor's whole window (``x_seq[:, :, f]``) moves, so a history is permuted
    as a whole, and today's ``x[:, f]`` moves with the same permutation; the
    window mask (``x_mask``) stays with the node. Batches carrying only ``x``
    (the GAT's) or only ``x_seq`` work the same. The permutation depends on
    (``seed``, the feature's or group's name, the repeat, the batch's first date) only:
    deterministic, and a feature's figure does not depend on which other
    features are in ``features``.

    Cost: one forward pass per (feature or group, repeat, batch of days) plus
    the baseline; batches are built once. None means every feature column of
    ``data``, one by one.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    cols = list(data.feature_cols)
    if isinstance(features, Mapping):
        groups = {name: list(members) for name, members in features.items()}
    else:
        groups = {f: [f] for f in (cols if features is None else features)}
    unknown = [c for members in groups.values() for c in members if c not in cols]
    if unknown:
        raise ValueError(f"permutation_importance: {unknown} are not feature columns of the data (e.g. {cols[:3]})")
    features = list(groups)
    index = [[cols.index(c) for c in groups[f]] for f in features]
    device = torch.device(device)
    wanted = torch.tensor(list(splits), dtype=torch.int8)
    dates = list(dates)
    was_training = model.training
    model.eval()
    base: list[pl.DataFrame] = []
    permuted: list[list[list[pl.DataFrame]]] = [[[] for _ in range(repeats)] for _ in features]
    moved: list[list[list[pl.DataFrame]]] = [[[] for _ in range(repeats)] for _ in features]

    def predictions(batch: Any, keep: torch.Tensor) -> np.ndarray:
        with _autocast(device):
            reg = model(batch)["reg"]
        return reg[:, horizon_index].float().cpu()[keep].numpy()

    def score(pred: np.ndarray, target: np.ndarray, day: np.ndarray) -> pl.DataFrame:
        frame = pl.DataFrame({"date": day, "pred": pred, "y": target}).with_columns(pl.col("y").fill_nan(None))
        return daily_ic(frame, "pred", "y")

    try:
        for lo, batch in day_batches(data, dates, batch_days, device):
            keep = torch.isin(batch.split.cpu(), wanted)
            if not bool(keep.any()):
                continue
            y = batch.y[:, horizon_index].float().cpu()[keep].numpy()
            day = batch.batch.cpu()[keep].numpy()
            reference = predictions(batch, keep)
            base.append(score(reference, y, day))
            if getattr(batch, "x_rows", None) is not None:  # compact windows: a donor's window moves whole
                batch.x_seq = batch.x_rows[batch.x_where]
                del batch.x_rows, batch.x_where
            has_seq = getattr(batch, "x_seq", None) is not None
            has_x = getattr(batch, "x", None) is not None
            if not (has_seq or has_x):
                raise ValueError("permutation_importance: the batch has neither x_seq nor x")
            # Own copies: the batch's tensors are modified in place (one column at a time) and restored.
            if has_seq:
                batch.x_seq = batch.x_seq.clone()
            if has_x:
                batch.x = batch.x.clone()
            first = np.datetime64(dates[lo], "D")
            for fi, (name, f) in enumerate(zip(features, index)):  # f: the columns moved together
                seq_col = batch.x_seq[:, :, f].clone() if has_seq else None
                x_col = batch.x[:, f].clone() if has_x else None
                for rep in range(repeats):
                    donor = _within_day_permutation(batch.batch, _generator(seed, name, rep, first)).to(batch.batch.device)
                    if has_seq:
                        batch.x_seq[:, :, f] = seq_col[donor]
                    if has_x:
                        batch.x[:, f] = x_col[donor]
                    pred = predictions(batch, keep)
                    permuted[fi][rep].append(score(pred, y, day))
                    moved[fi][rep].append(score(pred, reference, day))
                if has_seq:
                    batch.x_seq[:, :, f] = seq_col
                if has_x:
                    batch.x[:, f] = x_col
    finally:
        model.train(was_training)
    baseline = _mean_daily_rank_ic(base)
    rank_ic = [float(np.mean([_mean_daily_rank_ic(p) for p in per_rep])) for per_rep in permuted]
    shift = [float(np.mean([1.0 - _mean_daily_rank_ic(p) for p in per_rep])) for per_rep in moved]
    return pl.DataFrame(
        {"feature": features, "rank_ic": rank_ic, "drop": [baseline - r for r in rank_ic], "rank_shift": shift},
        schema={"feature": pl.Utf8, "rank_ic": pl.Float64, "drop": pl.Float64, "rank_shift": pl.Float64},
    )


# ------------------------------------------------------------------ per fold

# Validation days per fold scored by the stages' permutation importance (pooled over the folds):
# one forward pass per feature family (53 of the default 191 features) and batch of days, so the
# cost grows with families x stock-days (on the default config 16 days of 200 stocks cost the core
# model about 7 s a fold; 25 s one feature at a time). A day's RankIC
# over more stocks is less noisy, so a larger universe gets fewer days for the same stock-days
# (1,026 NASDAQ stocks: 3 days); the last days of validation are the closest to the test window.
IMPORTANCE_DAYS = 16
IMPORTANCE_ROWS = 3200


def importance_days(data: Any) -> int:
    """Days of permutation importance: about :data:`IMPORTANCE_ROWS` stock-days, 1 to :data:`IMPORTANCE_DAYS`."""
    per_day = rows_per_date(data)
    return IMPORTANCE_DAYS if per_day is None else max(1, min(IMPORTANCE_DAYS, round(IMPORTANCE_ROWS / per_day)))


# What a model's own attention read-outs give for a fold: (model, data, test dates, device) -> named frames.
AttentionMaps = Callable[[Any, Any, Sequence[Any], torch.device], dict[str, pl.DataFrame]]


def fold_maps(
    model: Any, data: Any, fold: int, seed: int, device: torch.device | str = "cpu", attention: AttentionMaps | None = None
) -> dict[str, pl.DataFrame]:
    """A trained model's interpretability frames for one fold, each with a ``fold`` column.

    ``importance`` (every model: permutation importance of each feature family,
    :func:`feature_groups`, on the last :func:`importance_days` validation days) and what the model's own
    ``attention`` read-out gives on the test dates (the core model's
    :func:`alphagraph.models.core.attention.attention_maps`, a temporal
    baseline's lag attention).
    """
    device = torch.device(device)
    val, test = data.dates("val"), data.dates("test")
    days = val[-importance_days(data):]
    frames = {"importance": permutation_importance(model, data, days, feature_groups(data.feature_cols), seed=seed, device=device)}
    if attention is not None:
        frames |= attention(model, data, test, device)
    return {k: f.with_columns(fold=pl.lit(fold, dtype=pl.Int32)).select("fold", pl.exclude("fold")) for k, f in frames.items()}


# Features in a stage's importance plot (the largest mean drops).
TOP_FEATURES = 30


def stack_folds(key: str, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The per-fold frames of :func:`fold_maps` as one plot file: stacked, except ``importance``,
    which is averaged over folds and cut to the :data:`TOP_FEATURES` largest rank shifts (the steady
    figure: two disjoint 16-day windows of the default core model give rank shifts that correlate
    0.99 across families, and RankIC drops that do not, -0.48 and -0.34)."""
    frame = pl.concat(parts)
    if key != "importance":
        return frame
    mean = frame.group_by("feature").agg(pl.col("rank_ic", "drop", "rank_shift").mean().round(6))
    return mean.sort("rank_shift", "feature", descending=[True, False]).head(TOP_FEATURES)
