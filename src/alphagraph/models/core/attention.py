"""What the core model attends to (every read-out runs the model in eval mode with recording on,
then restores its training / recording state):

- :func:`relation_report`: per layer and relation, the mean relation weight and neighbour-attention mass.
- :func:`core_lag_attention` / :func:`core_lag_attention_report`: the temporal
  encoder's attention per lag (transformer kind only): the last block's
  attention from today's position over the window, mean over heads (as
  :func:`alphagraph.models.temporal.lag_attention_report` for the temporal
  baselines). Note it is one of two paths from the window to the output: the
  encoder also attention-pools the whole window, and the window's
  contribution is scaled by a learned gate ``tanh(g)`` that starts at 0.
- :func:`relation_attention_by_date`: per date and relation, the mean relation
  weight (:class:`~alphagraph.models.core.model.RelationWeighting`) and the mean
  attention mass that goes to the relation's neighbours rather than the
  self-loop (:func:`relation_report`, per date).
- :func:`stock_attention`: per chosen date and target stock, the attention its
  in-neighbours get per relation (the per-edge softmax weights of
  :class:`~alphagraph.models.core.model.RelationAttention`, mean over heads), top-k
  neighbours per (date, stock, relation).

Nodes map back to (date, code) through ``batch.row``, the node's panel row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from alphagraph.graph.loader import NODE
from alphagraph.models.core.model import CoreModel
from alphagraph.train.core_data import CoreDayData
from alphagraph.train.importance import day_batches, recording


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



class _Pooled:
    """:func:`relation_report`'s sums, batch by batch (after a recorded forward pass)."""

    def __init__(self, model: CoreModel):
        self.w_sum = torch.zeros(len(model.convs), len(model.relations))
        self.a_sum = torch.zeros_like(self.w_sum)
        self.a_cnt = torch.zeros_like(self.w_sum)
        self.n = 0

    def add(self, model: CoreModel, batch: Any) -> None:
        self.n += batch.num_nodes
        for layer, (w, conv) in enumerate(zip(model.relation_weights, model.convs)):
            self.w_sum[layer] += w.float().sum(0).cpu()
            for r, name in enumerate(model.relations):
                has = torch.zeros(batch.num_nodes, dtype=torch.bool, device=w.device)
                has[batch.edge_index[1, batch.edge_type == r]] = True
                mass = conv.convs[(NODE, name, NODE)].neighbor_attention
                self.a_sum[layer, r] += float(mass[has].sum())
                self.a_cnt[layer, r] += float(has.sum())

    def frame(self, model: CoreModel) -> pl.DataFrame:
        w_sum, a_sum, a_cnt = self.w_sum, self.a_sum, self.a_cnt
        rows = [
            {"layer": layer, "relation": name, "weight": float(w_sum[layer, r] / max(self.n, 1)),
             "attention": float(a_sum[layer, r] / a_cnt[layer, r]) if a_cnt[layer, r] > 0 else None}
            for layer in range(len(model.convs)) for r, name in enumerate(model.relations)
        ]
        return pl.DataFrame(rows, schema={"layer": pl.Int32, "relation": pl.Utf8, "weight": pl.Float64, "attention": pl.Float64})


@torch.no_grad()
def relation_report(model: CoreModel, data: CoreDayData, dates: Sequence[Any], batch_days: int, device: torch.device) -> pl.DataFrame:
    """Mean relation weight and mean neighbour-attention mass per (layer, relation) over ``dates``' nodes.

    ``attention`` averages, over nodes with at least one edge of the relation,
    the attention mass that goes to neighbours rather than the self-loop.
    """
    pooled = _Pooled(model)
    with recording(model):
        for _, batch in day_batches(data, dates, batch_days, device):
            model(batch)
            pooled.add(model, batch)
    return pooled.frame(model)


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
    with recording(model):
        encoder(batch.x_seq, batch.x_mask)
        return encoder.lag_attention


@torch.no_grad()
def core_lag_attention_report(
    model: Any, data: Any, dates: Sequence[Any], batch_days: int = 32, device: torch.device | str = "cpu"
) -> pl.DataFrame:
    """``lag`` (Int32, 0 = the node's date), ``attention`` (Float64): mean over the nodes of ``dates``; sums to 1."""
    lag = _Lags(data)
    for _, batch in day_batches(data, dates, batch_days, torch.device(device)):
        lag.add(core_lag_attention(model, batch))
    return lag.frame()


class _Lags:
    """:func:`core_lag_attention_report`'s sums, batch by batch."""

    def __init__(self, data: Any):
        self.total = torch.zeros(data.seq_len, dtype=torch.float64)
        self.n = 0

    def add(self, att: torch.Tensor) -> None:
        self.total[-att.size(1):] += att.double().sum(0).cpu()
        self.n += att.size(0)

    def frame(self) -> pl.DataFrame:
        mean = (self.total / max(self.n, 1)).flip(0)  # window day j is lag L - 1 - j
        return pl.DataFrame({"lag": np.arange(self.total.numel(), dtype=np.int32), "attention": mean.numpy()})


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
    layers = list(range(len(model.convs))) if layer is None else [_layer(model, layer)]
    parts: list[pl.DataFrame] = []
    with recording(model):
        for _, batch in day_batches(data, dates, batch_days, torch.device(device)):
            model(batch)
            parts.append(_by_date(model, data, batch, layers))
    return _by_date_frame(model, parts)


def _by_date(model: Any, data: Any, batch: Any, layers: Sequence[int]) -> pl.DataFrame:
    """:func:`relation_attention_by_date`'s rows of one batch (after a recorded forward pass)."""
    n_rel = len(model.relations)
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
    return pl.DataFrame({
        "date": day_dates.gather(np.repeat(np.arange(day_dates.len()), n_rel)),
        "relation": pl.Series(model.relations * day_dates.len(), dtype=pl.Utf8),
        "weight": weight[present].reshape(-1),
        "attention": attention[present].reshape(-1),
    })


def _by_date_frame(model: Any, parts: list[pl.DataFrame]) -> pl.DataFrame:
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
    with recording(model):
        for _, batch in day_batches(data, dates, batch_days, device):
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


@torch.no_grad()
def attention_maps(model: CoreModel, data: CoreDayData, dates: Sequence[Any], device: torch.device, batch_days: int = 32) -> dict[str, pl.DataFrame]:
    """The core model's read-outs over ``dates`` for :func:`alphagraph.train.importance.fold_maps`, from one
    recorded forward pass over them: ``relations`` (:func:`relation_report`), ``attention_lag``
    (:func:`core_lag_attention_report`, transformer encoder), ``relation_attention``
    (:func:`relation_attention_by_date`) and ``stock_attention`` (the last date, top 5 neighbours per
    stock and relation)."""
    lags = _Lags(data) if model.temporal.kind == "transformer" and len(model.temporal.encoder) else None
    relations = bool(model.relations and len(model.convs))
    pooled, parts, last = _Pooled(model), [], [_layer(model, -1)] if relations else []
    with recording(model):
        for _, batch in day_batches(data, dates, batch_days, device):
            model(batch)
            if lags is not None:
                lags.add(model.temporal.lag_attention)
            if relations:
                pooled.add(model, batch)
                parts.append(_by_date(model, data, batch, last))
    frames = {"relations": pooled.frame(model)}
    if lags is not None:
        frames["attention_lag"] = lags.frame()
    if relations:
        frames["relation_attention"] = _by_date_frame(model, parts)
        frames["stock_attention"] = stock_attention(model, data, dates[-1:], device=device)
    return frames
