"""Interpretability of the neural models: attention read-outs and permutation feature importance.

Attention (the core model, :class:`~alphagraph.models.core.CoreModel`; every
read-out runs the model in eval mode with recording on, then restores the
model's training / recording state):

- :func:`core_lag_attention` / :func:`core_lag_attention_report`: the temporal
  encoder's attention per lag (transformer kind only): the last block's
  attention from today's position over the window, mean over heads (as
  :func:`alphagraph.models.temporal.lag_attention_report` for the temporal
  baselines). Note it is one of two paths from the window to the output: the
  encoder also attention-pools the whole window, and the window's
  contribution is scaled by a learned gate ``tanh(g)`` that starts at 0.
- :func:`relation_attention_by_date`: per date and relation, the mean relation
  weight (:class:`~alphagraph.models.core.RelationWeighting`) and the mean
  attention mass that goes to the relation's neighbours rather than the
  self-loop (:func:`~alphagraph.models.core.relation_report`, per date).
- :func:`stock_attention`: per chosen date and target stock, the attention its
  in-neighbours get per relation (the per-edge softmax weights of
  :class:`~alphagraph.models.core.RelationAttention`, mean over heads), top-k
  neighbours per (date, stock, relation).

Permutation importance (:func:`permutation_importance`): any model trained
with the shared loop (core, temporal baselines over ``x_seq``, the GAT over
``x``): the drop of the mean daily RankIC when one feature is shuffled across
the stocks of each day.

Nodes map back to (date, code) through ``batch.row``, the node's panel row
(as :func:`alphagraph.train.data.predictions_frame`).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from alphagraph.evaluate import daily_ic
from alphagraph.graph.loader import NODE
from alphagraph.train.data import VAL

__all__ = [
    "core_lag_attention", "core_lag_attention_report", "relation_attention_by_date", "stock_attention",
    "permutation_importance",
]


# ------------------------------------------------------------------ helpers


def _batches(data: Any, dates: Sequence[Any], batch_days: int, device: torch.device) -> Iterator[tuple[int, Any]]:
    """(offset of the first date, batch) over ``dates`` in chunks of ``batch_days``."""
    if batch_days < 1:
        raise ValueError(f"batch_days must be >= 1, got {batch_days}")
    dates = list(dates)
    for lo in range(0, len(dates), batch_days):
        batch = data.batch(dates[lo: lo + batch_days])
        yield lo, batch if device.type == "cpu" else batch.to(device)


@contextlib.contextmanager
def _recording(model: Any) -> Iterator[None]:
    """Eval mode and recording on for the block; the model's previous state restored after."""
    was_training, was_recording = model.training, bool(getattr(model, "record", False))
    model.eval()
    model.set_record(True)
    try:
        yield
    finally:
        model.set_record(was_recording)
        model.train(was_training)


def _keys(data: Any, rows: torch.Tensor) -> pl.DataFrame:
    """``date, code`` of panel ``rows`` (a node's identity)."""
    rows = rows.detach().cpu().numpy().astype(np.int64)
    return data.panel.select(pl.col("date", "code").gather(pl.Series(rows)))


def _need_relations(model: Any) -> None:
    if not getattr(model, "convs", None) or not model.relations:
        raise ValueError("the model has no relation layers (train.layers: 0): no relation attention to read")


def _layer(model: Any, layer: int) -> int:
    n = len(model.convs)
    if not -n <= layer < n:
        raise ValueError(f"layer {layer} out of range for a model with {n} relation layers")
    return layer % n


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    # As the training loop's inference: bf16 on CUDA, fp32 on CPU.
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ------------------------------------------------------------- lag attention


@torch.no_grad()
def core_lag_attention(model: Any, batch: Any) -> torch.Tensor:
    """Attention per window day [N, L] (oldest first, lag ``L - 1 - j``) of one batch's nodes; rows sum to 1.

    The core model's temporal encoder, transformer kind: the last block's
    attention from today's position, mean over heads; 0 on masked days.
    ValueError for the LSTM kind (no attention over lags).
    """
    encoder = model.temporal
    if encoder.kind != "transformer":
        raise ValueError(
            f"the core model's {encoder.kind} temporal encoder has no attention over lags (train.temporal: transformer has)"
        )
    if not len(encoder.encoder):
        raise ValueError("the core model's temporal encoder has no transformer block (train.temporal_layers: 0)")
    with _recording(model):
        encoder(batch.x_seq, batch.x_mask)
        return encoder.lag_attention


@torch.no_grad()
def core_lag_attention_report(
    model: Any, data: Any, dates: Sequence[Any], batch_days: int = 32, device: torch.device | str = "cpu"
) -> pl.DataFrame:
    """``lag`` (Int32, 0 = the node's date), ``attention`` (Float64): mean over the nodes of ``dates``; sums to 1."""
    device = torch.device(device)
    total = torch.zeros(data.seq_len, dtype=torch.float64)
    n = 0
    for _, batch in _batches(data, dates, batch_days, device):
        att = core_lag_attention(model, batch)
        total[-att.size(1):] += att.double().sum(0).cpu()
        n += att.size(0)
    mean = (total / max(n, 1)).flip(0)  # window day j is lag L - 1 - j
    return pl.DataFrame({"lag": np.arange(data.seq_len, dtype=np.int32), "attention": mean.numpy()})


# -------------------------------------------------------- relation attention


@torch.no_grad()
def relation_attention_by_date(
    model: Any,
    data: Any,
    dates: Sequence[Any],
    batch_days: int = 32,
    device: torch.device | str = "cpu",
    layer: int | None = -1,
) -> pl.DataFrame:
    """Per date and relation: mean relation weight and mean neighbour-attention mass of the date's nodes.

    ``date`` (the panel's dtype), ``relation`` (Utf8), ``weight``, ``attention``
    (Float64, both in [0, 1]); one row per (date, relation), sorted by date then
    the model's relation order. ``weight`` averages the relation's softmax
    weight over all nodes of the date; ``attention`` averages, over the date's
    nodes with at least one in-edge of the relation, the attention mass that
    goes to neighbours rather than the self-loop (null when no node has such an
    edge). The nodes are those of the batch, as in
    :func:`~alphagraph.models.core.relation_report` (whose pooled figures are
    the node-weighted means of these). ``layer``: the relation layer read (-1,
    the default: the last, the one next to the head); None: the mean of the
    per-layer figures over all layers.
    """
    _need_relations(model)
    device = torch.device(device)
    layers = list(range(len(model.convs))) if layer is None else [_layer(model, layer)]
    n_rel = len(model.relations)
    parts: list[pl.DataFrame] = []
    with _recording(model):
        for _, batch in _batches(data, dates, batch_days, device):
            model(batch)
            day = batch.batch
            n_days = int(day.max()) + 1 if day.numel() else 0
            count = torch.zeros(n_days, dtype=torch.float64, device=day.device).index_add_(
                0, day, torch.ones_like(day, dtype=torch.float64)
            )
            w_sum = torch.zeros(n_days, n_rel, dtype=torch.float64, device=day.device)
            a_sum = torch.zeros_like(w_sum)
            a_cnt = torch.zeros_like(w_sum)
            for li in layers:
                w_sum.index_add_(0, day, model.relation_weights[li].double())
                conv = model.convs[li]
                for r, name in enumerate(model.relations):
                    has = torch.zeros(batch.num_nodes, dtype=torch.bool, device=day.device)
                    has[batch.edge_index[1, batch.edge_type == r]] = True
                    mass = conv.convs[(NODE, name, NODE)].neighbor_attention.double()
                    a_sum[:, r].index_add_(0, day[has], mass[has])
                    a_cnt[:, r].index_add_(0, day[has], torch.ones_like(mass[has]))
            weight = (w_sum / (count[:, None] * len(layers)).clamp_min(1)).cpu().numpy()
            # Mean over layers of each layer's per-date mean (a_cnt is the same in every layer).
            attention = torch.where(a_cnt > 0, a_sum / a_cnt.clamp_min(1), torch.nan).cpu().numpy()
            present = (count > 0).cpu().numpy()  # a day of the batch may have no node (neighbour sampling)
            first = torch.full((n_days,), day.numel(), dtype=torch.long, device=day.device).scatter_reduce_(
                0, day, torch.arange(day.numel(), device=day.device), reduce="amin"
            )  # the first node of each day
            day_dates = _keys(data, batch.row[first[torch.from_numpy(present).to(day.device)]])["date"]
            parts.append(pl.DataFrame({
                "date": day_dates.gather(np.repeat(np.arange(day_dates.len()), n_rel)),
                "relation": pl.Series(model.relations * day_dates.len(), dtype=pl.Utf8),
                "weight": weight[present].reshape(-1),
                "attention": attention[present].reshape(-1),
            }))
    if not parts:
        raise ValueError("relation_attention_by_date: no dates given")
    out = pl.concat(parts).with_columns(pl.col("attention").fill_nan(None))
    order = {name: r for r, name in enumerate(model.relations)}
    return out.sort(["date", pl.col("relation").replace_strict(order, return_dtype=pl.Int32)], maintain_order=True)


@torch.no_grad()
def stock_attention(
    model: Any,
    data: Any,
    dates: Sequence[Any],
    codes: Sequence[str] | None = None,
    top: int = 5,
    batch_days: int = 8,
    device: torch.device | str = "cpu",
    layer: int = -1,
) -> pl.DataFrame:
    """Attention of chosen stocks on their in-neighbours per relation, on chosen dates.

    ``date``, ``code`` (the target stock), ``relation`` (Utf8), ``neighbour``
    (the source stock's code), ``attention`` (Float64): the per-edge softmax
    weight of :class:`~alphagraph.models.core.RelationAttention` at ``layer``
    (default the last), mean over heads, summed over parallel edges of a
    relation between the same two stocks. The softmax runs over the target's
    in-edges of the relation and its self-loop, so per (date, code, relation)
    the neighbours' attention sums to at most 1 (the rest stays on the node
    itself). Only the ``top`` neighbours by attention per (date, code,
    relation) are kept (ties by neighbour code). ``codes``: the target stocks
    (None: every stock of the dates). Sorted by date, code, relation (model
    order), attention descending. With neighbour sampling (``train.sampling:
    neighbor``) the edges are those the batch sampled.
    """
    _need_relations(model)
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    device = torch.device(device)
    li = _layer(model, layer)
    wanted = None if codes is None else set(codes)
    parts: list[pl.DataFrame] = []
    with _recording(model):
        for _, batch in _batches(data, dates, batch_days, device):
            model(batch)
            keys = _keys(data, batch.row)
            node_code = keys["code"]
            conv = model.convs[li]
            for r, name in enumerate(model.relations):
                sel = batch.edge_type == r
                src, dst = batch.edge_index[:, sel]
                alpha = conv.convs[(NODE, name, NODE)].edge_attention
                if src.numel() == 0:
                    continue
                dst_np, src_np = dst.cpu().numpy(), src.cpu().numpy()
                frame = pl.DataFrame({
                    "date": keys["date"].gather(dst_np),
                    "code": node_code.gather(dst_np),
                    "relation": pl.Series([name] * dst_np.size, dtype=pl.Utf8),
                    "neighbour": node_code.gather(src_np),
                    "attention": alpha.double().cpu().numpy(),
                })
                if wanted is not None:
                    frame = frame.filter(pl.col("code").is_in(list(wanted)))
                parts.append(frame)
    schema = {"date": data.panel.schema["date"], "code": data.panel.schema["code"], "relation": pl.Utf8,
              "neighbour": data.panel.schema["code"], "attention": pl.Float64}
    if not parts:
        return pl.DataFrame(schema=schema)
    order = {name: r for r, name in enumerate(model.relations)}
    out = (
        pl.concat(parts)
        .group_by("date", "code", "relation", "neighbour").agg(pl.col("attention").sum())
        .sort(["date", "code", pl.col("relation").replace_strict(order, return_dtype=pl.Int32), "attention", "neighbour"],
              descending=[False, False, False, True, False])
    )
    out = out.filter(pl.int_range(pl.len()).over("date", "code", "relation") < top)
    return out.select(list(schema)).cast(schema)


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


@torch.no_grad()
def permutation_importance(
    model: torch.nn.Module,
    data: Any,
    dates: Sequence[Any],
    features: Sequence[str] | None = None,
    horizon_index: int = 0,
    repeats: int = 1,
    seed: int = 0,
    batch_days: int = 16,
    device: torch.device | str = "cpu",
    splits: Sequence[int] = (VAL,),
) -> pl.DataFrame:
    """Drop of the mean daily RankIC when each feature is shuffled across the stocks of each day.

    ``feature`` (Utf8), ``rank_ic`` (Float64: the mean daily RankIC with the
    feature permuted, averaged over ``repeats``), ``drop`` (Float64: baseline
    minus ``rank_ic``; positive = the model relies on the feature), one row per
    feature in the order given. The baseline is the mean daily RankIC of
    ``reg[:, horizon_index]`` against ``y[:, horizon_index]`` over the nodes of
    ``dates`` whose split code is in ``splits`` (default VAL: pass the fold's
    validation dates), NaN labels skipped, days with fewer than 3 such nodes
    skipped (:func:`alphagraph.evaluate.daily_ic`, as the training loop's
    validation).

    Permuting: within each day of a batch every node (all of the day's
    stocks, whatever their split: the cross-section the model sees) takes the
    feature from another node of that day, a random permutation per day; the
    donor's whole window (``x_seq[:, :, f]``) moves, so a history is permuted
    as a whole, and today's ``x[:, f]`` moves with the same permutation; the
    window mask (``x_mask``) stays with the node. Batches carrying only ``x``
    (the GAT's) or only ``x_seq`` work the same. The permutation depends on
    (``seed``, the feature's name, the repeat, the batch's first date) only:
    deterministic, and a feature's figure does not depend on which other
    features are in ``features``.

    Cost: one forward pass per (feature, repeat, batch of days) plus the
    baseline; batches are built once. With ~100-200 features a stage should
    pass a subset (``features``, e.g. the top features of another importance
    measure); None means every feature column of ``data``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    cols = list(data.feature_cols)
    features = cols if features is None else list(features)
    unknown = [f for f in features if f not in cols]
    if unknown:
        raise ValueError(f"permutation_importance: {unknown} are not feature columns of the data (e.g. {cols[:3]})")
    index = [cols.index(f) for f in features]
    device = torch.device(device)
    wanted = torch.tensor(list(splits), dtype=torch.int8)
    dates = list(dates)
    was_training = model.training
    model.eval()
    base: list[pl.DataFrame] = []
    permuted: list[list[list[pl.DataFrame]]] = [[[] for _ in range(repeats)] for _ in features]

    def score(batch: Any, keep: torch.Tensor, y: np.ndarray, day: np.ndarray) -> pl.DataFrame:
        with _autocast(device):
            reg = model(batch)["reg"]
        pred = reg[:, horizon_index].float().cpu()[keep].numpy()
        frame = pl.DataFrame({"date": day, "pred": pred, "y": y}).with_columns(pl.col("y").fill_nan(None))
        return daily_ic(frame, "pred", "y")

    try:
        for lo, batch in _batches(data, dates, batch_days, device):
            keep = torch.isin(batch.split.cpu(), wanted)
            if not bool(keep.any()):
                continue
            y = batch.y[:, horizon_index].float().cpu()[keep].numpy()
            day = batch.batch.cpu()[keep].numpy()
            base.append(score(batch, keep, y, day))
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
            for fi, (name, f) in enumerate(zip(features, index)):
                seq_col = batch.x_seq[:, :, f].clone() if has_seq else None
                x_col = batch.x[:, f].clone() if has_x else None
                for rep in range(repeats):
                    donor = _within_day_permutation(batch.batch, _generator(seed, name, rep, first)).to(batch.batch.device)
                    if has_seq:
                        batch.x_seq[:, :, f] = seq_col[donor]
                    if has_x:
                        batch.x[:, f] = x_col[donor]
                    permuted[fi][rep].append(score(batch, keep, y, day))
                if has_seq:
                    batch.x_seq[:, :, f] = seq_col
                if has_x:
                    batch.x[:, f] = x_col
    finally:
        model.train(was_training)
    baseline = _mean_daily_rank_ic(base)
    rank_ic = [float(np.mean([_mean_daily_rank_ic(p) for p in per_rep])) for per_rep in permuted]
    return pl.DataFrame(
        {"feature": features, "rank_ic": rank_ic, "drop": [baseline - r for r in rank_ic]},
        schema={"feature": pl.Utf8, "rank_ic": pl.Float64, "drop": pl.Float64},
    )


# ------------------------------------------------------------------ per fold

# Validation days per fold scored by the stages' permutation importance (pooled over the folds):
# one forward pass per feature and batch of days, so the cost grows with features x days (on the
# default config 16 days cost the core model about 25 s a fold); the last days of validation are
# the closest to the test window.
IMPORTANCE_DAYS = 16


def fold_maps(model: Any, data: Any, fold: int, seed: int, device: torch.device | str = "cpu") -> dict[str, pl.DataFrame]:
    """A trained model's interpretability frames for one fold, each with a ``fold`` column.

    ``importance`` (every model: permutation importance on the last
    :data:`IMPORTANCE_DAYS` validation days); ``attention_lag`` (models with
    attention over the window, test dates); for the core model also
    ``relation_attention`` (per test date and relation) and ``stock_attention``
    (the fold's last test date, top 5 neighbours per stock and relation).
    """
    from alphagraph.models.core import CoreModel

    device = torch.device(device)
    val, test = data.dates("val"), data.dates("test")
    frames = {"importance": permutation_importance(model, data, val[-IMPORTANCE_DAYS:], seed=seed, device=device)}
    if getattr(model, "has_attention", False):  # a temporal baseline (imported only then: the stage's dep)
        from alphagraph.models.temporal import lag_attention_report

        frames["attention_lag"] = lag_attention_report(model, data, test, device=device)
    if isinstance(model, CoreModel):
        if model.temporal.kind == "transformer" and len(model.temporal.encoder):
            frames["attention_lag"] = core_lag_attention_report(model, data, test, device=device)
        if model.relations and len(model.convs):
            frames["relation_attention"] = relation_attention_by_date(model, data, test, device=device)
            frames["stock_attention"] = stock_attention(model, data, test[-1:], device=device)
    return {k: f.with_columns(fold=pl.lit(fold, dtype=pl.Int32)).select("fold", pl.exclude("fold")) for k, f in frames.items()}


# Features in a stage's importance plot (the largest mean drops).
TOP_FEATURES = 30


def stack_folds(key: str, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """The per-fold frames of :func:`fold_maps` as one plot file: stacked, except ``importance``,
    which is averaged over folds and cut to the :data:`TOP_FEATURES` largest drops."""
    frame = pl.concat(parts)
    if key != "importance":
        return frame
    mean = frame.group_by("feature").agg(pl.col("rank_ic", "drop").mean().round(6))
    return mean.sort("drop", "feature", descending=[True, False]).head(TOP_FEATURES)
