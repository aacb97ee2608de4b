"""Hierarchical multi-task T-GCN: a GRU whose gates are graph convolutions over the day's graph.

    x_seq [N, L, F] (mask [N, L]) --Linear, dropout--> x_t [N, D] per window day t (oldest first)
    h_0 = 0;  for t = 1 .. L:   (TGCNCell, Zhao et al. 2019, "T-GCN")
        r, u = sigmoid(Conv_g([x_t, h]))         reset and update gates
        c    = tanh(Conv_c([x_t, r * h]))        candidate
        h    = u * h + (1 - u) * c               where the stock traded on day t, else h unchanged
    head([h_L, x_L]) -> reg [N, H], sig_logit [N, H], dir_logit [N, H]   (and the embedding ``emb``)

``Conv`` (``TGCNConfig.conv``) is ``gcn``: ``GCNConv`` with self-loops and
symmetric normalization, the edge weight being ``|weight|`` of the graph
stage's edges (GCN needs non-negative weights; a negative correlation is a
link all the same, its sign is not used); or ``gat``: ``GATv2Conv`` with
``heads`` heads (concatenated, ``out / heads`` channels each), self-loops with
an all-zero edge attribute, and the edge attributes (weight, sign, one-hot
relation) in the attention scores, so a head can single out a relation.

The graph: a batch holds whole cross-sections of its dates (nodes are
stock-days); each date's nodes carry the edges of that date's snapshot (the
latest one dated on or before it, all relations of ``tgcn.relations``
merged). Every window day is convolved over that same graph: the node of
stock i on date d reads, at window day t, its neighbours' inputs of their
own day t of the window ending on d. Nothing dated after d enters.

Masked days (the stock did not trade) are never read: their inputs are
zeroed after the projection (a neighbour that did not trade that day sends
only its state) and the stock's state is carried over unchanged. The node's
own date is always in its window. The head also sees today's projected
inputs ``x_L`` besides the final state: own features of today carry most of
the signal, and the skip spares the GRU carrying them through its gates.

Hierarchical heads (multi-task): the signal head ``sig_logit`` (is
``|move| > threshold``, the ``sig_{h}d`` labels) is trained on every stock,
the direction head ``dir_logit`` only where the signal label is 1
(:class:`~alphagraph.train.losses.MultiHorizonLoss` with ``sig_weight > 0``;
``lambda_direction`` weighs it), next to the multi-horizon regression and the
soft-Spearman rank term. Predictions carry ``p_signal_{h}d`` and
``p_up_{h}d``; down / neutral / up classes and their probabilities come from
:func:`alphagraph.models.core.hierarchical_classes` (``p_signal`` below the
threshold is neutral, else up or down by ``p_up``).

Data: :class:`~alphagraph.train.core_data.CoreDayData` (``use_edges=True``)
over a :class:`~alphagraph.graph.loader.GraphIndex` of the selected
relations (:func:`zoo_index`); the loop is the shared one
(:func:`~alphagraph.train.fold.train_fold`). A batch holds only its own
dates' nodes, windows and edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATv2Conv, GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import add_self_loops, remove_self_loops

from alphagraph.runtime import paths
from alphagraph.runtime.config import Params, TGCNConfig
from alphagraph.runtime.errors import UserError
from alphagraph.graph.loader import GraphIndex
from alphagraph.runtime.log import get_logger
from alphagraph.train.loop import loop_config
from alphagraph.features.normalize import feature_columns
from alphagraph.evaluation.split import Fold
from alphagraph.train import FoldOutput, MultiHorizonLoss, seed_everything, split_codes, train_fold
from alphagraph.train.core_data import CoreDayData
from alphagraph.evaluation.walkforward import label_reach

CONVS = ("gcn", "gat")
NAMES = ("tgcn",)  # the zoo names this module trains
SELF_LOOP_FILL = 0.0  # GAT: edge_attr of a self-loop (weight 0, sign 0, no relation: unlike any real edge)


# ---------------------------------------------------------------------- model


@dataclass
class DayGraph:
    """The batch's edges prepared once per forward pass and reused at every window day."""

    edge_index: torch.Tensor  # [2, E'] with self-loops
    edge_weight: torch.Tensor | None = None  # gcn: normalized weights [E']
    edge_attr: torch.Tensor | None = None  # gat: [E', edge_dim]


def graph_conv(conv: str, in_dim: int, out_dim: int, heads: int, edge_dim: int) -> nn.Module:
    if conv == "gcn":
        # Normalization and self-loops are done once per forward pass (DayGraph), not at every step.
        return GCNConv(in_dim, out_dim, add_self_loops=False, normalize=False)
    if conv == "gat":
        if out_dim % heads:
            raise ValueError(f"tgcn: {out_dim} output channels are not divisible by tgcn.heads ({heads})")
        return GATv2Conv(in_dim, out_dim // heads, heads=heads, concat=True, edge_dim=edge_dim, add_self_loops=False)
    raise ValueError(f"tgcn.conv must be one of {CONVS}, got {conv!r}")


class TGCNCell(nn.Module):
    """One GRU step whose gates are graph convolutions over ``[x_t, h]`` (T-GCN)."""

    def __init__(self, hidden: int, conv: str = "gcn", heads: int = 2, edge_dim: int = 2) -> None:
        super().__init__()
        self.hidden, self.conv = hidden, conv
        self.gates = graph_conv(conv, 2 * hidden, 2 * hidden, heads, edge_dim)  # r and u in one pass
        self.candidate = graph_conv(conv, 2 * hidden, hidden, heads, edge_dim)
        # GRU practice: an update-gate bias of 1 keeps the state at first, so gradients reach early days.
        with torch.no_grad():
            self.gates.bias[hidden:].fill_(1.0)

    def _conv(self, layer: nn.Module, x: torch.Tensor, graph: DayGraph) -> torch.Tensor:
        if self.conv == "gcn":
            return layer(x, graph.edge_index, graph.edge_weight)
        return layer(x, graph.edge_index, graph.edge_attr)

    def forward(self, x: torch.Tensor, h: torch.Tensor, graph: DayGraph) -> torch.Tensor:
        """Input [N, D] and state [N, D] -> the next state [N, D]."""
        r, u = torch.sigmoid(self._conv(self.gates, torch.cat([x, h], dim=-1), graph)).chunk(2, dim=-1)
        c = torch.tanh(self._conv(self.candidate, torch.cat([x, r * h], dim=-1), graph))
        return u * h + (1 - u) * c


class TGCNModel(nn.Module):
    """Input projection, a :class:`TGCNCell` over the window, the core model's three heads; see the module docstring."""

    def __init__(
        self,
        in_dim: int,
        n_horizons: int,
        edge_dim: int = 2,
        hidden: int = 32,
        conv: str = "gcn",
        heads: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if conv not in CONVS:
            raise ValueError(f"tgcn.conv must be one of {CONVS}, got {conv!r}")
        if conv == "gat" and hidden % heads:
            raise ValueError(f"tgcn.hidden ({hidden}) must be divisible by tgcn.heads ({heads})")
        self.conv, self.edge_dim, self.dropout = conv, edge_dim, dropout
        self.proj = nn.Linear(in_dim, hidden)
        self.cell = TGCNCell(hidden, conv, heads, edge_dim)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.reg = nn.Linear(hidden, n_horizons)
        self.sig = nn.Linear(hidden, n_horizons)
        self.dir = nn.Linear(hidden, n_horizons)

    @classmethod
    def from_config(cls, cfg: TGCNConfig, in_dim: int, n_horizons: int, edge_dim: int = 2) -> TGCNModel:
        return cls(**tgcn_kwargs(cfg, in_dim, n_horizons, edge_dim))

    def day_graph(self, edge_index: torch.Tensor, edge_attr: torch.Tensor, num_nodes: int) -> DayGraph:
        """Self-loops (and, for GCN, the normalized weights) of the batch's graph."""
        edge_index, edge_attr = remove_self_loops(edge_index, edge_attr)
        if self.conv == "gcn":
            weight = edge_attr[:, 0].abs().to(torch.float32)
            ei, w = gcn_norm(edge_index, weight, num_nodes, add_self_loops=True)
            return DayGraph(ei, edge_weight=w)
        attr = edge_attr[:, : self.edge_dim].to(torch.float32)
        ei, attr = add_self_loops(edge_index, attr, fill_value=SELF_LOOP_FILL, num_nodes=num_nodes)
        return DayGraph(ei, edge_attr=attr)

    def encode(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(final state [N, D], today's projected inputs [N, D]) of the batch's nodes."""
        x_seq, mask = batch.x_seq, batch.x_mask
        m = mask.unsqueeze(-1).to(x_seq.dtype)
        # Zeroed after the projection: a masked day sends nothing to its neighbours, whatever it holds.
        x = F.dropout(self.proj(x_seq * m), self.dropout, self.training) * m
        graph = self.day_graph(batch.edge_index, batch.edge_attr, x.size(0))
        h = x.new_zeros(x.size(0), x.size(-1))
        for t in range(x.size(1)):
            h = torch.where(mask[:, t, None], self.cell(x[:, t], h, graph), h)  # no trade: state kept
        return self.norm(h), x[:, -1]

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        h, today = self.encode(batch)
        z = self.head(torch.cat([h, today], dim=-1))
        return {"reg": self.reg(z), "sig_logit": self.sig(z), "dir_logit": self.dir(z), "emb": z}


def tgcn_kwargs(cfg: TGCNConfig, in_dim: int, n_horizons: int, edge_dim: int = 2) -> dict[str, Any]:
    """Constructor arguments of :class:`TGCNModel` for a config (saved next to checkpoints)."""
    return {
        "in_dim": in_dim, "n_horizons": n_horizons, "edge_dim": edge_dim, "hidden": cfg.hidden, "conv": cfg.conv,
        "heads": cfg.heads, "dropout": cfg.dropout,
    }


# ------------------------------------------------------------------ training


def tgcn_loss(cfg: TGCNConfig, data: CoreDayData) -> MultiHorizonLoss:
    """MSE + soft Spearman + signal BCE (every row) + direction BCE (signal rows only), as ``core_loss``.

    Without ``sig_*`` labels in the panel there is no signal head to train and
    the direction BCE covers every row (its class balance then counts them all).
    """
    sig = data.signal_balance("train")
    return MultiHorizonLoss.from_balance(
        cfg.horizon_weights, data.class_balance("train"), cfg.lambda_direction, rank_weight=cfg.rank_weight, rank="soft",
        sig_weight=cfg.signal_weight if sig is not None else 0.0, sig_pos_weight=None if sig is None else sig.pos_weight(),
    )


def zoo_index(name: str, panel: pl.DataFrame, edges: pl.DataFrame | None, params: Params) -> GraphIndex:
    """The GraphIndex of the T-GCN: the relations of ``tgcn.relations`` (else ``graph.relations``) that have edges."""
    from alphagraph.graph.loader import model_index

    _check_name(name)
    wanted = params.tgcn.relations if params.tgcn.relations is not None else params.graph.relations
    present = set() if edges is None else set(edges.get_column("relation").unique().to_list())
    kept = [r for r in dict.fromkeys(wanted) if r in present]
    if not kept:
        raise UserError(
            f"tgcn: none of the relations {list(wanted)} (tgcn.relations, else graph.relations) has an edge in"
            f" {paths.EDGES}; the T-GCN needs a graph (choose relations the graph stage built)"
        )
    if empty := [r for r in dict.fromkeys(wanted) if r not in present]:
        # A relation without edges would only add an always-zero one-hot column.
        get_logger("tgcn").warning("relations with no edges are left out of the model: %s", ", ".join(empty))
    return model_index(edges, panel, kept, params.graph.relations, "tgcn.relations")


def tgcn_fold_data(panel: pl.DataFrame, index: GraphIndex, fold: Fold, params: Params) -> CoreDayData:
    """The fold's day batches: windows ``x_seq`` / ``x_mask``, the day graphs, labels, split codes."""
    codes = split_codes(panel, fold, label_reach(params))
    return CoreDayData(
        index, panel, codes, feature_columns(panel), params.features.horizons, params.tgcn.seq_len,
        use_edges=True, seed=params.seed,
    )


def fit_tgcn_fold(
    panel: pl.DataFrame,
    index: GraphIndex,
    fold: Fold,
    params: Params,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
) -> tuple[FoldOutput, TGCNModel, CoreDayData]:
    """Train the T-GCN on one fold: predictions for its val/test rows, the model (best epoch), the fold's data."""
    cfg = params.tgcn
    data = tgcn_fold_data(panel, index, fold, params)
    seed_everything(params.seed * 1000 + fold.fold)
    model = TGCNModel.from_config(cfg, data.in_dim, len(data.horizons), data.edge_dim)
    loop = loop_config(cfg, params.seed, params.device, progress)  # reads the loop fields TGCNConfig shares
    out = train_fold(model, data, tgcn_loss(cfg, data), loop, fold.fold, run_dir)
    return out, model, data


def train_zoo_fold(
    name: str,
    panel: pl.DataFrame,
    index: GraphIndex,
    fold: Fold,
    params: Params,
    run_dir: str | Path | None = None,
) -> tuple[FoldOutput, dict[str, pl.DataFrame]]:
    """The zoo entry point (:mod:`alphagraph.models.zoo`): the fold's output and its
    interpretability frames (:func:`alphagraph.train.importance.fold_maps`)."""
    from alphagraph.train.importance import fold_maps

    _check_name(name)
    out, model, data = fit_tgcn_fold(panel, index, fold, params, run_dir)
    return out, fold_maps(model, data, fold.fold, params.seed, next(model.parameters()).device)


def _check_name(name: str) -> None:
    if name not in NAMES:
        raise ValueError(f"the tgcn module trains {', '.join(NAMES)}, not {name!r}")


__all__ = [
    "CONVS", "NAMES", "TGCNConfig", "DayGraph", "TGCNCell", "TGCNModel", "tgcn_kwargs", "tgcn_loss", "zoo_index",
    "tgcn_fold_data", "fit_tgcn_fold", "train_zoo_fold",
]
