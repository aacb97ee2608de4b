"""Temporal baselines without a graph: per-stock sequence models over each stock's last L days.

    x_seq [N, L, F] (mask [N, L]) --(optional gated window norm)--> Linear --> encoder --> z [N, D]
    head(z) -> reg [N, H], sig_logit [N, H], dir_logit [N, H]   (and the embedding ``emb``)

Kinds (``TemporalConfig.kind``):

- ``lstm`` / ``gru``: the last hidden state of a (multi-layer) LSTM / GRU.
- ``alstm``: attention-pooled LSTM as in Qlib's ALSTM: a tanh input layer,
  an LSTM, an attention over its hidden states (``Linear -> tanh -> Linear``,
  softmax over the window) and the pooled state concatenated with the last
  hidden state.
- ``transformer``: pre-norm self-attention blocks (the core model's
  :class:`~alphagraph.models.core.TransformerBlock` weights) with sinusoidal
  or learned positions and a full or causal mask over the window; the window
  is read out at today's position (the last), after a final LayerNorm.

Days a stock did not trade are masked, never filled in: the recurrent kinds
step over traded days only (they are moved to the front of the window and
packed, as in the core model's LSTM encoder), the transformer never attends
to a masked key. The node's own date is always in its window.

Attention per lag (``alstm`` and ``transformer``): with ``model.record = True``
a forward pass stores ``model.lag_attention`` [N, L], column j the window's
day j (oldest first, so lag ``L - 1 - j``), rows summing to 1 over the traded
days and 0 on masked ones. For ``alstm`` it is the pooling attention; for the
transformer the last block's attention from today's position, averaged over
heads (with one block the only path from a past day to the readout).
:func:`lag_attention_report` averages it over the nodes of some dates.

Data: :class:`~alphagraph.train.core_data.CoreDayData` with ``use_edges=False``
over a :class:`~alphagraph.graph.loader.GraphIndex` built on an empty edges
frame (:func:`temporal_index`): the models never need the graph stage. The
loss is the core model's (:func:`~alphagraph.models.core.core_loss`:
multi-horizon MSE + soft-Spearman + signal / direction cross-entropies), the
loop the shared one (:func:`~alphagraph.train.fold.train_fold`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from alphagraph.runtime.config import Params
from alphagraph.runtime.config import TemporalConfig as TemporalParams
from alphagraph.runtime.config import TrainConfig
from alphagraph.graph.build import empty_edges
from alphagraph.graph.loader import GraphIndex, _DayEdges
from alphagraph.models.core import AdaptiveWindowNorm, TransformerBlock, core_loss, sinusoidal
from alphagraph.train.loop import CPU_EVAL_ROWS, loop_config
from alphagraph.features.normalize import feature_columns
from alphagraph.evaluation.split import Fold
from alphagraph.train import FoldOutput, MultiHorizonLoss, seed_everything, split_codes, train_fold
from alphagraph.train.core_data import CoreDayData
from alphagraph.evaluation.walkforward import label_reach

KINDS = ("lstm", "gru", "alstm", "transformer")
POSITIONS = ("sinusoidal", "learned")
ATTENTION_KINDS = ("alstm", "transformer")


@dataclass(frozen=True)
class TemporalConfig(TemporalParams):
    """The ``temporal`` params group plus the kind (a zoo entry's name)."""

    kind: Literal["lstm", "gru", "alstm", "transformer"] = "lstm"

    def __post_init__(self) -> None:
        if self.horizon_weights is None:  # as params loading resolves it: the core model's weights
            object.__setattr__(self, "horizon_weights", TrainConfig().horizon_weights)
        if self.kind not in KINDS:
            raise ValueError(f"temporal kind must be one of {KINDS}, got {self.kind!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"temporal positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.seq_len < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError("temporal seq_len, hidden and layers must be >= 1")
        if self.kind == "transformer" and self.hidden % self.heads:
            raise ValueError(f"temporal hidden ({self.hidden}) must be divisible by heads ({self.heads})")

    @classmethod
    def for_model(cls, name: str, params: Params) -> TemporalConfig:
        return cls(kind=name, **{f.name: getattr(params.temporal, f.name) for f in fields(TemporalParams)})


# ---------------------------------------------------------------------- model


class AttentionBlock(TransformerBlock):
    """:class:`TransformerBlock` with an optional causal mask and the attention of the last query kept."""

    def forward(
        self, h: torch.Tensor, mask: torch.Tensor, causal: bool = False, record: bool = False, last_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``last_only``: the block's output at the last position alone, [N, 1, D]: what a final block
        feeds the model's read-out (today's position), at a fraction of the cost (keys and values
        still come from every day; queries, attention rows and the feed-forward only from today).
        Its dropout masks are the last position's part of the full block's, drawn at full size, so
        training consumes the same random numbers and follows the same path as the full block."""
        n, length, dim = h.shape
        x = self.norm1(h)
        if last_only:
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[:, -1:], w[:dim], b[:dim]).view(n, 1, self.heads, dim // self.heads).transpose(1, 2)
            k, v = F.linear(x, w[dim:], b[dim:]).view(n, length, 2, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
            h, queries = h[:, -1:], 1
        else:
            q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
            queries = length
        score = (q @ k.transpose(-1, -2)) / math.sqrt(dim // self.heads)  # [N, heads, queries, L]
        allowed = mask[:, None, None, :].expand(n, 1, queries, length)
        if causal:
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=h.device).tril()[-queries:]
        # A query always sees itself: a masked (or, causally, a first traded) day then has a finite row; no
        # traded day ever attends to a masked one.
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=h.device)[-queries:]
        att = score.masked_fill(~allowed, float("-inf")).softmax(-1)
        last = att[:, :, -1].mean(1).detach() if record else None  # today's query, mean over heads: [N, L]

        def drop(t: torch.Tensor) -> torch.Tensor:  # F.dropout of the full block, at its last query / position
            if not (self.training and self.dropout > 0 and queries < length):
                return F.dropout(t, self.dropout, self.training)
            noise = torch.empty(*t.shape[:-2], length, t.size(-1), dtype=t.dtype, device=t.device)
            return t * noise.bernoulli_(1 - self.dropout).div_(1 - self.dropout)[..., -1:, :]

        out = drop(att) @ v
        h = h + drop(self.out(out.transpose(1, 2).reshape(n, queries, dim)))
        lin1, act, _, lin2 = self.ff  # Linear, GELU, Dropout, Linear (TransformerBlock's feed-forward)
        return h + drop(lin2(drop(act(lin1(self.norm2(h)))))), last


class TemporalModel(nn.Module):
    """A per-stock sequence model over ``x_seq`` / ``x_mask`` with the core model's three heads; see the module docstring."""

    def __init__(
        self,
        in_dim: int,
        n_horizons: int,
        kind: str = "lstm",
        seq_len: int = 20,
        hidden: int = 32,
        layers: int = 1,
        heads: int = 2,
        dropout: float = 0.1,
        positions: str = "sinusoidal",
        causal: bool = False,
        window_norm: bool = False,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"temporal kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.seq_len, self.causal = kind, seq_len, causal
        self.norm = AdaptiveWindowNorm(in_dim) if window_norm else None
        self.proj = nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh()) if kind == "alstm" else nn.Linear(in_dim, hidden)
        out_dim = hidden
        if kind == "transformer":
            if positions == "sinusoidal":
                self.register_buffer("pos", sinusoidal(seq_len, hidden), persistent=False)
            elif positions == "learned":
                self.pos = nn.Parameter(torch.randn(seq_len, hidden) * 0.02)
            else:
                raise ValueError(f"temporal positions must be one of {POSITIONS}, got {positions!r}")
            self.blocks = nn.ModuleList(AttentionBlock(hidden, heads, dropout) for _ in range(layers))
            self.final_norm = nn.LayerNorm(hidden)
        else:
            rnn = nn.GRU if kind == "gru" else nn.LSTM
            self.rnn = rnn(hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
            if kind == "alstm":
                self.att = nn.Sequential(
                    nn.Linear(hidden, hidden // 2 or 1), nn.Dropout(dropout), nn.Tanh(), nn.Linear(hidden // 2 or 1, 1, bias=False)
                )
                out_dim = 2 * hidden
        self.head = nn.Sequential(nn.Linear(out_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.reg = nn.Linear(hidden, n_horizons)
        self.sig = nn.Linear(hidden, n_horizons)
        self.dir = nn.Linear(hidden, n_horizons)
        self.record = False
        self.lag_attention: torch.Tensor | None = None  # [N, L] when recording (attention kinds)

    @classmethod
    def from_config(cls, cfg: TemporalConfig, in_dim: int, n_horizons: int) -> TemporalModel:
        return cls(**temporal_kwargs(cfg, in_dim, n_horizons))

    @property
    def has_attention(self) -> bool:
        return self.kind in ATTENTION_KINDS

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        z = self.encode_batch(batch)
        h = self.head(z)
        return {"reg": self.reg(h), "sig_logit": self.sig(h), "dir_logit": self.dir(h), "emb": h}

    def encode_batch(self, batch: Any) -> torch.Tensor:
        """:meth:`encode` of a batch's windows, full (``x_seq``) or compact (``x_rows``, ``x_where``)."""
        if getattr(batch, "x_seq", None) is not None:
            return self.encode(batch.x_seq, batch.x_mask)
        return self.encode(batch.x_rows, batch.x_mask, batch.x_where)

    def encode(self, x: torch.Tensor, mask: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """Window [N, L, F] with mask [N, L] (the last day always traded) -> [N, D].

        With ``where`` [N, L], ``x`` holds the windows' distinct days [U, F] (masked days index a row of
        zeros) and the window is ``x[where]``: without a window norm, each day is projected once.
        """
        if where is not None and self.norm is not None:
            x, where = x[where], None  # the window norm needs whole windows
        length = mask.size(1)
        if length > self.seq_len:
            raise ValueError(f"window of {length} days, the model was built for at most {self.seq_len}")
        if where is not None:
            # a masked day reads the zero row: it projects to the bias, as the masked window below does
            h = self.proj(x)[where]
        else:
            x = x * mask.unsqueeze(-1).to(x.dtype)  # whatever a masked day holds never enters
            if self.norm is not None:
                x = self.norm(x, mask)
            h = self.proj(x)
        self.lag_attention = None
        if self.kind == "transformer":
            return self._transformer(h, mask)
        return self._recurrent(h, mask)

    def _transformer(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = h + self.pos[-h.size(1):]  # today is always the last position
        last = None
        for i, block in enumerate(self.blocks):
            final = i == len(self.blocks) - 1  # only today's position is read out
            h, last = block(h, mask, self.causal, self.record and final, last_only=final)
        if self.record:
            self.lag_attention = last
        return self.final_norm(h[:, -1])

    def _recurrent(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Traded days moved to the front in order, then packed: the RNN steps over real days only.
        length = h.size(1)
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        packed_in = torch.gather(h, 1, order.unsqueeze(-1).expand_as(h))
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(packed_in, lengths, batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state
        last = h_n[-1]
        if self.kind != "alstm":
            return last
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=length)
        valid = torch.arange(length, device=h.device)[None, :] < lengths.to(h.device)[:, None]
        w = self.att(out).squeeze(-1).masked_fill(~valid, float("-inf")).softmax(1)  # over packed steps
        pooled = (w.unsqueeze(-1) * out).sum(1)
        if self.record:  # back to window positions: packed step p is window day order[:, p]
            self.lag_attention = torch.zeros_like(w).scatter(1, order, w.masked_fill(~valid, 0.0)).detach()
        return torch.cat([pooled, last], dim=-1)


def temporal_kwargs(cfg: TemporalConfig, in_dim: int, n_horizons: int) -> dict[str, Any]:
    """Constructor arguments of :class:`TemporalModel` for a config (saved next to checkpoints)."""
    return {
        "in_dim": in_dim, "n_horizons": n_horizons, "kind": cfg.kind, "seq_len": cfg.seq_len, "hidden": cfg.hidden,
        "layers": cfg.layers, "heads": cfg.heads, "dropout": cfg.dropout, "positions": cfg.positions,
        "causal": cfg.causal, "window_norm": cfg.window_norm,
    }


# ------------------------------------------------------------------ attention


@torch.no_grad()
def lag_attention(model: TemporalModel, batch: Any) -> torch.Tensor:
    """Attention per window day [N, L] (oldest first) of one batch's nodes; rows sum to 1."""
    if not model.has_attention:
        raise ValueError(f"the {model.kind} model has no attention over lags (only {ATTENTION_KINDS} do)")
    was_training, was_recording = model.training, model.record
    model.eval()
    model.record = True
    try:
        model.encode_batch(batch)
        return model.lag_attention
    finally:
        model.record = was_recording
        model.train(was_training)


@torch.no_grad()
def lag_attention_report(
    model: TemporalModel, data: CoreDayData, dates: Sequence[Any], batch_days: int = 32, device: torch.device | str = "cpu"
) -> pl.DataFrame:
    """Mean attention per lag over the nodes of ``dates`` (lag 0 = the node's date); it sums to 1 over lags."""
    device = torch.device(device)
    dates = list(dates)
    total = torch.zeros(data.seq_len, dtype=torch.float64)
    n = 0
    for lo in range(0, len(dates), batch_days):
        batch = data.batch(dates[lo: lo + batch_days])
        att = lag_attention(model, batch if device.type == "cpu" else batch.to(device))
        total[-att.size(1):] += att.double().sum(0).cpu()
        n += att.size(0)
    mean = (total / max(n, 1)).flip(0)  # window day j is lag L - 1 - j
    return pl.DataFrame({"lag": np.arange(data.seq_len, dtype=np.int32), "attention": mean.numpy()})


# ------------------------------------------------------------------ training


class WindowIndex(GraphIndex):
    """A :class:`GraphIndex` over a panel and an empty edges frame: day batches, windows and labels only.

    ``GraphIndex`` needs at least one relation name (for the edges' one-hot
    relation column) and, in ``_map_edges``, at least one snapshot (on an empty
    edges frame it indexes past its snapshot offsets); so this index names one
    placeholder relation that has no edge and skips the edge mapping: every day
    has no edges.
    """

    def __init__(self, panel: pl.DataFrame) -> None:
        super().__init__(empty_edges(), panel, relations=["none"])

    def _map_edges(self, days: np.ndarray) -> _DayEdges:
        self.mapped_days += int(days.size)
        none = np.zeros(0, dtype=np.int64)
        return _DayEdges(edge=none, src=none, dst=none, per_day=np.zeros(days.size, dtype=np.int64))


def temporal_index(panel: pl.DataFrame) -> WindowIndex:
    """The index the temporal baselines need: the panel's dates and rows, no graph."""
    return WindowIndex(panel)


def temporal_fold_data(
    panel: pl.DataFrame, fold: Fold, params: Params, cfg: TemporalConfig, index: GraphIndex | None = None
) -> CoreDayData:
    """The fold's day batches (windows ``x_seq`` / ``x_mask``, labels, split codes) without a graph."""
    codes = split_codes(panel, fold, label_reach(params))
    return CoreDayData(
        index if index is not None else temporal_index(panel), panel, codes, feature_columns(panel),
        params.features.horizons, cfg.seq_len, use_edges=False, seed=params.seed, windows="compact",
    )


def temporal_loss(cfg: TemporalConfig, data: CoreDayData) -> MultiHorizonLoss:
    """The core model's loss (:func:`~alphagraph.models.core.core_loss`) with this config's weights."""
    return core_loss(cfg, data)  # reads horizon_weights, cls_weight and rank_weight only


def fit_temporal_fold(
    panel: pl.DataFrame,
    fold: Fold,
    params: Params,
    cfg: TemporalConfig,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
    index: GraphIndex | None = None,
) -> tuple[FoldOutput, TemporalModel, CoreDayData]:
    """:func:`train_temporal_fold` that also returns the trained model (best epoch) and the fold's data."""
    data = temporal_fold_data(panel, fold, params, cfg, index)
    seed_everything(params.seed * 1000 + fold.fold)
    model = TemporalModel.from_config(cfg, data.in_dim, len(data.horizons))
    loop = replace(loop_config(cfg, params.seed, params.device, progress), cpu_eval_rows=CPU_EVAL_ROWS)
    out = train_fold(model, data, temporal_loss(cfg, data), loop, fold.fold, run_dir)
    return out, model, data


def train_temporal_fold(
    panel: pl.DataFrame,
    fold: Fold,
    params: Params,
    cfg: TemporalConfig,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
) -> FoldOutput:
    """Train a temporal baseline on one fold: predictions for its val/test rows (as ``train_core_fold``)."""
    return fit_temporal_fold(panel, fold, params, cfg, run_dir, progress)[0]


def zoo_index(name: str, panel: pl.DataFrame, edges: pl.DataFrame | None, params: Params) -> WindowIndex:
    """The model stage's index for a temporal kind: no graph."""
    return temporal_index(panel)


def train_zoo_fold(
    name: str, panel: pl.DataFrame, index: GraphIndex, fold: Fold, params: Params, run_dir: str | Path | None = None
) -> tuple[FoldOutput, dict[str, pl.DataFrame]]:
    """The model stage's fold: the ``temporal`` params with kind ``name``, and the fold's
    interpretability frames (:func:`alphagraph.train.importance.fold_maps`)."""
    from alphagraph.train.importance import fold_maps

    cfg = TemporalConfig.for_model(name, params)
    out, model, data = fit_temporal_fold(panel, fold, params, cfg, run_dir, index=index)
    return out, fold_maps(model, data, fold.fold, params.seed, next(model.parameters()).device, attention_maps)


def attention_maps(model: TemporalModel, data: Any, dates: Sequence[Any], device: torch.device) -> dict[str, pl.DataFrame]:
    """The lag attention over ``dates`` of an attention kind (alstm, transformer); nothing for the others."""
    return {"attention_lag": lag_attention_report(model, data, dates, device=device)} if model.has_attention else {}


__all__ = [
    "KINDS", "TemporalConfig", "TemporalModel", "AttentionBlock", "WindowIndex", "temporal_kwargs", "lag_attention",
    "lag_attention_report", "temporal_index", "temporal_fold_data", "temporal_loss", "fit_temporal_fold",
    "train_temporal_fold", "zoo_index", "train_zoo_fold", "attention_maps",
]
