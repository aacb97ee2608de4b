"""The core relation-aware graph transformer.

    x_seq [N, L, F] --window norm (gated | FAN | none)--> temporal encoder (transformer | LSTM, attention pooling)
          --> e = LayerNorm(GELU(W x_t) + tanh(g) * window summary)   (gate g starts at 0)
          + P [per relation: sum_j w_ji x_j[S], sum_j w_ji x_j[S] / sum_j |w_ji|]   (neighbour inputs S)
    e + PEARL(snapshot graph) --> h
    h --[HeteroConv: one GATv2-style attention per relation (aggr=None) -> relation-specific transforms
         -> learned softmax relation weighting -> GELU, dropout, + residual, LayerNorm] x layers --> h
    head([h, e]) -> reg [N, H], sig_logit [N, H], dir_logit [N, H]  (and the embedding, for export)

Neighbour inputs (``train.neighbour_inputs``, a few return features): per
relation, the signed-edge-weighted sum and mean of the neighbours' raw inputs of
today, projected into the embedding. Attention over embeddings averages
neighbours (softmax weights sum to 1) and sees them only through a learned
encoder; the share-weighted sum of suppliers' returns, the linear "customer
momentum" read of a supply-chain file, needs neither. Measured on validation
folds 1-2 of the default market over two seeds: RankIC 1d 0.026 with them,
0.017 without.

The linear ("wide") path (``train.wide``) adds, to every horizon's regression
output, a linear function of today's own features and lgbm_graph's relational
features (:mod:`alphagraph.graph.relational`: per relation the neighbours' weighted
last returns, sums and feature means, z-scored per date): ``learned`` trains
it with the rest from 0; ``ridge`` sets it to the fold's ``linear_graph`` ridge
(alpha chosen on validation) and freezes it, and the deep head starts at 0, so
the model starts as that ridge and the deep path learns what it leaves. The
relational columns come from the panel's rows (:func:`wide_index`), the same
inputs as the ``linear_graph`` and ``lgbm_graph`` references. With
``train.neighbour_standardize`` the in-model neighbour aggregates are z-scored
per date over the day's nodes before they enter the embedding.

Every part can be switched off in params for ablations: ``train.pearl.mode:
none``, ``train.neighbour_inputs: []``, ``train.relation_weighting: false`` (plain mean of the relation
outputs), ``train.relations`` (a subset of relation types),
``train.use_edges: false`` (self-loops only), ``train.layers: 0``.

Refinements, all off by default (the model is then exactly the one above):

- ``train.window_norm``: ``gated`` (:class:`AdaptiveWindowNorm`, per-feature
  instance normalization with learned gates; not FAN), ``fan``
  (:class:`~alphagraph.models.fan.FrequencyAdaptiveNorm`: the window's top
  ``train.fan_top_k`` rFFT components removed, their forecast added to the
  gated window summary) or ``none``.
- ``train.stochastic_depth`` p (Huang et al. 2016, per sample as in DropPath):
  in training, graph layer l of L (1-based) skips its residual branch for a
  node with probability ``l / L * p``, and so does transformer block l of the
  temporal encoder (both branches of the block, ``l / temporal_layers * p``);
  survivors are scaled by ``1 / (1 - p_l)``, so evaluation is the plain model.
- ``train.edge_features: [vol_similarity]``: the relation attention's edge
  features become (weight, sign, ``exp(-|v_i - v_j| / s)``), v the
  cross-sectionally normalized ``f_rvol_20`` of today's node inputs, s
  ``train.vol_similarity_scale``.

Relation attention (:class:`RelationAttention`): for an edge j -> i of
relation r, ``logit = a_r . LeakyReLU(W_r x_j + V_r x_i + U_r e_ji) / T_r + b_r``,
softmax over i's incoming edges of r and i's self-loop (its own learned edge
embedding, no ``b_r``), message ``W_r x_j``. ``e_ji`` are the edge features
(weight, sign); ``T_r`` is a learnable temperature and ``b_r`` an edge-type
bias: thanks to the self-loop in the softmax, ``b_r`` decides how much a node
listens to relation r's neighbours at all. A node without edges of r gets its
own transformed features from that relation.

Relation weighting (:class:`RelationWeighting`): per node, relation outputs
``o_r`` pass through relation-specific transforms and are combined with
softmax weights from a shared scoring MLP (semantic attention as in HAN), so
the weights sum to 1 per node. Relations can be dropped at inference
(``drop_relations``): their weights become 0 and the rest renormalize.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import HeteroConv, MessagePassing
from torch_geometric.nn.inits import glorot
from torch_geometric.utils import softmax

from alphagraph.graph.loader import NODE
from alphagraph.models.fan import FrequencyAdaptiveNorm
from alphagraph.models.pearl import PEARL, block_diagonal
from alphagraph.runtime.config import TrainConfig
from alphagraph.runtime.errors import UserError

TEMPORAL = ("transformer", "lstm")
WINDOW_NORMS = ("gated", "fan", "none")
EDGE_FEATURES = ("vol_similarity",)
WIDE = ("none", "learned", "ridge")
VOL_COLUMN = "f_rvol_20"  # the volatility of train.edge_features: vol_similarity (a normalized panel feature)


# ------------------------------------------------------------------ temporal


class AdaptiveWindowNorm(nn.Module):
    """Instance normalization of a window with learned per-feature gates (``train.window_norm: gated``).

    ``x_hat = (x - a * mean) / (b * std + 1 - b)`` over the window's valid days,
    ``a = sigmoid(alpha_f)``, ``b = sigmoid(beta_f)``: each feature learns how
    much of its level and scale to remove (a learned RevIN; not FAN, which
    removes dominant frequencies: :mod:`alphagraph.models.fan`). The level
    itself is not lost: the encoder also sees today's un-normalized features.
    """

    def __init__(self, n_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(n_features))
        self.beta = nn.Parameter(torch.zeros(n_features))
        self.eps = eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        x = x * m  # whatever a masked day holds, it must not move the statistics
        n = m.sum(1).clamp_min(1)
        mean = x.sum(1) / n
        std = ((x * x).sum(1) / n - mean * mean).clamp_min(0).add(self.eps).sqrt()
        a, b = torch.sigmoid(self.alpha), torch.sigmoid(self.beta)
        x_hat = (x - a * mean[:, None]) / (b * std + 1 - b)[:, None]
        return x_hat * m


def sinusoidal(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


def path_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Stochastic depth's per-sample factor [N, 1, ...]: 0 with probability ``p``, else ``1 / (1 - p)``."""
    shape = (x.size(0),) + (1,) * (x.dim() - 1)
    return torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1 - p) / (1 - p)


def depth_schedule(layers: int, p: float) -> list[float]:
    """Drop probability of layer l = 1 .. layers: ``l / layers * p`` (the deepest drops most)."""
    return [(i + 1) / layers * p for i in range(layers)]


class TransformerBlock(nn.Module):
    """Pre-norm self-attention + feed-forward block with a key padding mask.

    The same computation as ``nn.TransformerEncoderLayer(norm_first=True)``
    with GELU, written out; ``bench/temporal.py`` measures it on par with that
    layer at 20-day windows and about 20 % slower at 5 days (not faster).
    ``drop_path``: in training, both residual branches are skipped for a sample
    (row) with that probability (stochastic depth), survivors scaled up.
    """

    def __init__(self, dim: int, heads: int, dropout: float, drop_path: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"train.hidden ({dim}) must be divisible by train.heads ({heads})")
        self.heads, self.dropout, self.drop_path = heads, dropout, drop_path
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        self.last_attention: torch.Tensor | None = None  # [N, L] when a forward pass records (``record=True``)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, record: bool = False) -> torch.Tensor:
        """``record``: keep today's (the last) query's attention over the window, mean over heads, in ``last_attention``."""
        n, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        score = (q @ k.transpose(-1, -2)) / math.sqrt(dim // self.heads)
        score = score.masked_fill(~mask[:, None, None, :], float("-inf"))  # masked days are never attended to
        prob = score.softmax(-1)
        self.last_attention = prob[:, :, -1].mean(1).detach() if record else None  # before dropout: [N, L]
        att = F.dropout(prob, self.dropout, self.training) @ v
        branch = F.dropout(self.out(att.transpose(1, 2).reshape(n, length, dim)), self.dropout, self.training)
        if self.training and self.drop_path > 0:  # no draw at all when off
            keep = path_mask(h, self.drop_path)
            h = h + branch * keep
            return h + F.dropout(self.ff(self.norm2(h)), self.dropout, self.training) * keep
        h = h + branch
        return h + F.dropout(self.ff(self.norm2(h)), self.dropout, self.training)


class TemporalEncoder(nn.Module):
    """A stock's window [N, L, F] with mask [N, L] -> [N, hidden]; masked days never attended to.

    With ``record`` on (:meth:`CoreModel.set_record`), the transformer kind keeps
    ``lag_attention`` [N, L]: the last block's attention from today's position
    (the last) over the window, mean over heads, window day j oldest first (lag
    ``L - 1 - j``); rows sum to 1 over traded days, 0 on masked ones. The LSTM
    kind has no such attention (``lag_attention`` stays None).

    ``window_norm``: ``gated`` (:class:`AdaptiveWindowNorm`), ``fan``
    (:class:`~alphagraph.models.fan.FrequencyAdaptiveNorm`, whose forecast of
    the removed dominant part joins the gated window summary) or ``none``.
    ``drop_path``: stochastic depth of the transformer blocks, block l of
    ``layers`` dropped with probability ``l / layers * drop_path`` (the LSTM has
    no residual branches: unused there).
    """

    def __init__(
        self, in_dim: int, hidden: int, seq_len: int, kind: str = "transformer", heads: int = 2, layers: int = 1, dropout: float = 0.1,
        window_norm: str = "gated", fan_top_k: int = 3, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in TEMPORAL:
            raise ValueError(f"train.temporal must be one of {TEMPORAL}, got {kind!r}")
        if window_norm not in WINDOW_NORMS:
            raise ValueError(f"train.window_norm must be one of {WINDOW_NORMS}, got {window_norm!r}")
        self.kind = kind
        self.norm: nn.Module | None = None
        if window_norm == "gated":
            self.norm = AdaptiveWindowNorm(in_dim)
        elif window_norm == "fan":
            self.norm = FrequencyAdaptiveNorm(in_dim, seq_len, hidden, fan_top_k)
        self.proj = nn.Linear(in_dim, hidden)
        if kind == "transformer":
            self.register_buffer("pos", sinusoidal(seq_len, hidden), persistent=False)
            drops = depth_schedule(layers, drop_path)
            self.encoder = nn.ModuleList(TransformerBlock(hidden, heads, dropout, drops[i]) for i in range(layers))
        else:
            self.encoder = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True)
        self.score = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
        self.summary = nn.Linear(2 * hidden, hidden)
        self.now = nn.Linear(in_dim, hidden)  # today's features: they carry most of the signal
        # The window's contribution starts at zero and grows only as far as it helps the loss.
        self.gate = nn.Parameter(torch.zeros(hidden))
        self.out = nn.LayerNorm(hidden)
        self.record = False
        self.lag_attention: torch.Tensor | None = None  # [N, L] when recording (transformer kind)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        back = None  # FAN: the dominant part's forecast, embedded
        if isinstance(self.norm, FrequencyAdaptiveNorm):
            x_hat, back = self.norm(x, mask)
        elif self.norm is not None:
            x_hat = self.norm(x, mask)
        else:
            x_hat = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = self.proj(x_hat)
        self.lag_attention = None
        if self.kind == "transformer":
            h = h + self.pos[-h.size(1):]
            for i, block in enumerate(self.encoder):
                h = block(h, mask, record=self.record and i == len(self.encoder) - 1)
            if self.record and len(self.encoder):
                self.lag_attention = self.encoder[-1].last_attention
            valid = mask
            last = h[:, -1]  # the node's own date: always present
        else:
            h, valid, last = self._lstm(h, mask)
        s = self.score(h).squeeze(-1).masked_fill(~valid, float("-inf"))
        ctx = (torch.softmax(s, dim=1).unsqueeze(-1) * h).sum(1)
        summary = F.gelu(self.summary(torch.cat([ctx, last], dim=-1)))
        window = torch.tanh(self.gate) * (summary if back is None else summary + back)
        return self.out(F.gelu(self.now(x[:, -1])) + window)

    def _lstm(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Traded days moved to the front in order, then packed: the LSTM steps over real days only.
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        packed_in = torch.gather(h, 1, order.unsqueeze(-1).expand_as(h))
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(packed_in, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.encoder(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=h.size(1))
        valid = torch.arange(h.size(1), device=h.device)[None, :] < lengths.to(h.device)[:, None]
        return out, valid, h_n[-1]


# ------------------------------------------------------------------ relations


class RelationAttention(MessagePassing):
    """GATv2-style attention over one relation's edges plus a self-loop; see the module docstring."""

    def __init__(self, dim: int, heads: int, edge_dim: int = 2, dropout: float = 0.0) -> None:
        super().__init__(aggr="add", node_dim=0)
        if dim % heads:
            raise ValueError(f"train.hidden ({dim}) must be divisible by train.heads ({heads})")
        self.heads, self.channels, self.dropout = heads, dim // heads, dropout
        self.lin_src = nn.Linear(dim, dim)
        self.lin_dst = nn.Linear(dim, dim)
        self.lin_edge = nn.Linear(edge_dim, dim, bias=False)
        self.self_edge = nn.Parameter(torch.zeros(dim))
        self.att = nn.Parameter(torch.empty(1, heads, self.channels))
        self.edge_bias = nn.Parameter(torch.zeros(heads))
        self.log_temperature = nn.Parameter(torch.zeros(heads))
        self.bias = nn.Parameter(torch.zeros(dim))
        glorot(self.att)
        self.record = False
        self.neighbor_attention: torch.Tensor | None = None  # [N] attention mass on real edges, when recording
        self.edge_attention: torch.Tensor | None = None  # [E] per input edge, mean over heads, when recording

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        n, e = x.size(0), edge_index.size(1)
        shape = (-1, self.heads, self.channels)
        loops = torch.arange(n, device=x.device)
        ei = torch.cat([edge_index, torch.stack([loops, loops])], dim=1)
        emb = torch.cat([self.lin_edge(edge_attr), self.self_edge.expand(n, -1)]).view(shape)
        is_edge = torch.cat([torch.ones(e, device=x.device), torch.zeros(n, device=x.device)])
        out = self.propagate(
            ei, xs=self.lin_src(x).view(shape), xd=self.lin_dst(x).view(shape), emb=emb, is_edge=is_edge, size=(n, n)
        )
        return out.reshape(n, -1) + self.bias

    def message(
        self, xs_j: torch.Tensor, xd_i: torch.Tensor, emb: torch.Tensor, is_edge: torch.Tensor,
        index: torch.Tensor, ptr: torch.Tensor | None, size_i: int | None,
    ) -> torch.Tensor:
        z = F.leaky_relu(xs_j + xd_i + emb, 0.2)
        logit = (z * self.att).sum(-1) / self.log_temperature.exp() + is_edge[:, None] * self.edge_bias
        alpha = softmax(logit, index, ptr, size_i)
        if self.record:
            per_edge = alpha.detach().mean(1)
            mass = per_edge * is_edge
            self.neighbor_attention = torch.zeros(size_i, device=alpha.device).index_add_(0, index, mass)
            self.edge_attention = per_edge[is_edge.bool()]  # the real edges come first, in input order
        alpha = F.dropout(alpha, self.dropout, self.training)
        return xs_j * alpha.unsqueeze(-1)


class RelationWeighting(nn.Module):
    """Per-relation outputs [N, R, D] -> [N, D] through relation-specific transforms and softmax weights."""

    def __init__(self, n_relations: int, dim: int, learned: bool = True) -> None:
        super().__init__()
        self.learned = learned
        self.transforms = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_relations))
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.relation_bias = nn.Parameter(torch.zeros(n_relations))

    def forward(self, h: torch.Tensor, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(combined [N, D], weights [N, R]); ``keep`` [R] bool drops relations (weight 0)."""
        t = torch.stack([f(h[:, r]) for r, f in enumerate(self.transforms)], dim=1)
        if self.learned:
            s = self.score(t).squeeze(-1) + self.relation_bias
        else:
            s = torch.zeros(t.shape[:2], device=t.device, dtype=t.dtype)
        if keep is not None:
            s = s.masked_fill(~keep, float("-inf"))
        w = torch.softmax(s, dim=1)
        return (w.unsqueeze(-1) * t).sum(1), w


# ---------------------------------------------------------------------- model


class CoreModel(nn.Module):
    """Temporal encoder + PEARL + relation-aware message passing + multi-horizon and hierarchical heads."""

    def __init__(
        self,
        in_dim: int,
        relations: Sequence[str],
        n_horizons: int,
        seq_len: int = 20,
        temporal: str = "transformer",
        temporal_layers: int = 1,
        hidden: int = 64,
        heads: int = 2,
        layers: int = 2,
        dropout: float = 0.1,
        relation_weighting: bool = True,
        pearl: dict[str, Any] | None = None,
        edge_dim: int = 2,
        neighbour_inputs: Sequence[int] | None = None,
        window_norm: str = "gated",
        fan_top_k: int = 3,
        stochastic_depth: float = 0.0,
        edge_features: Sequence[str] = (),
        vol_index: int | None = None,
        vol_scale: float = 1.0,
        neighbour_standardize: bool = False,
        wide: str = "none",
        wide_dim: int = 0,
    ) -> None:
        super().__init__()
        if not relations and layers > 0:
            raise ValueError("the core model needs at least one relation type (train.relations) when train.layers > 0")
        if not 0 <= stochastic_depth < 1:
            raise ValueError(f"train.stochastic_depth must be in [0, 1), got {stochastic_depth}")
        if unknown := sorted(set(edge_features) - set(EDGE_FEATURES)):
            raise ValueError(f"train.edge_features: unknown {unknown}; known: {', '.join(EDGE_FEATURES)}")
        if "vol_similarity" in edge_features and vol_index is None:
            raise ValueError("train.edge_features: vol_similarity needs vol_index (the volatility column of the inputs)")
        self.relations = list(relations)
        self.edge_dim, self.dropout = edge_dim, dropout
        # edge_dim columns of batch.edge_attr (weight, sign), then the computed edge features
        self.edge_features, self.vol_index, self.vol_scale = list(edge_features), vol_index, vol_scale
        self.layer_drop = depth_schedule(layers, stochastic_depth)  # per graph layer; all 0 when off
        self.temporal = TemporalEncoder(
            in_dim, hidden, seq_len, temporal, heads, temporal_layers, dropout, window_norm, fan_top_k, stochastic_depth
        )
        self.neighbour_inputs = list(neighbour_inputs or [])
        n_in = 2 * len(self.relations) * len(self.neighbour_inputs)
        self.neighbour_proj = nn.Linear(n_in, hidden) if n_in else None
        self.neighbour_standardize = neighbour_standardize
        if wide not in WIDE:
            raise ValueError(f"train.wide must be one of {WIDE}, got {wide!r}")
        # The linear path over [today's own features, x_wide]; it starts at 0 (learned) or is set
        # from a ridge fit and frozen (set_wide), in which case the deep head starts at 0 too: the
        # model starts as the ridge and the deep path learns only what the ridge leaves.
        self.wide = nn.Linear(in_dim + wide_dim, n_horizons) if wide != "none" else None
        if self.wide is not None:
            nn.init.zeros_(self.wide.weight)
            nn.init.zeros_(self.wide.bias)
            self.wide.requires_grad_(wide == "learned")
        self.pearl = PEARL(hidden, **pearl) if pearl else None
        if self.pearl is not None:
            self.pearl_missing = nn.Parameter(torch.zeros(hidden))  # a code with no edge in the snapshot
        att_edge_dim = edge_dim + len(self.edge_features)
        self.convs = nn.ModuleList(
            HeteroConv({(NODE, r, NODE): RelationAttention(hidden, heads, att_edge_dim, dropout) for r in self.relations}, aggr=None)
            for _ in range(layers)
        )
        self.weightings = nn.ModuleList(RelationWeighting(len(self.relations), hidden, relation_weighting) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.reg = nn.Linear(hidden, n_horizons)
        self.sig = nn.Linear(hidden, n_horizons)
        self.dir = nn.Linear(hidden, n_horizons)
        self.record = False
        self.relation_weights: list[torch.Tensor] = []  # per layer [N, R], when recording

    @classmethod
    def from_config(
        cls, cfg: TrainConfig, features: Sequence[str], relations: Sequence[str], n_horizons: int, seed: int = 0, wide_dim: int = 0
    ) -> CoreModel:
        return cls(**core_kwargs(cfg, features, relations, n_horizons, seed, wide_dim))

    def set_record(self, on: bool) -> None:
        """Record relation weights, neighbour attention and lag attention on the next forward passes (interpretability)."""
        self.record = on
        self.temporal.record = on
        for conv in self.convs:
            for att in conv.convs.values():
                att.record = on

    def positional(self, batch: Any, n: int, device: torch.device) -> torch.Tensor:
        """PEARL encodings [N, hidden] of the batch's nodes: once per distinct snapshot."""
        ptr, eptr, ei = batch.pearl_ptr.tolist(), batch.pearl_edge_ptr.tolist(), batch.pearl_edge_index
        snaps = [(ei[:, eptr[s]:eptr[s + 1]] - ptr[s], ptr[s + 1] - ptr[s]) for s in range(len(ptr) - 1)]
        graphs = [self.pearl.graph(e, n_s) for e, n_s in snaps]  # each snapshot's operators, built once
        if self.pearl.mode == "basis" or not self.training:
            # Each snapshot on its own: B-PEARL has one sample per node of the graph, and in eval
            # mode R-PEARL's fixed draws then depend on the snapshot alone, not on the batch it is in.
            parts = [self.pearl(e, n_s, graph=g) for (e, n_s), g in zip(snaps, graphs)]
            pe = torch.cat(parts) if parts else torch.zeros(0, self.pearl_missing.numel(), device=device)
        else:  # training: one call on the block-diagonal union (fresh independent draws per node anyway)
            pe = self.pearl(ei, ptr[-1], graph=block_diagonal(graphs) if graphs else None)
        idx = batch.pearl_index
        out = self.pearl_missing.expand(n, -1)
        if pe.size(0):
            out = torch.where((idx >= 0)[:, None], pe[idx.clamp_min(0)], out)
        return out

    def forward(self, batch: Any, drop_relations: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        e = self.temporal(batch.x_seq, batch.x_mask)
        edge_attr = batch.edge_attr[:, : self.edge_dim]
        if self.neighbour_proj is not None:
            x = batch.x_seq[:, -1][:, self.neighbour_inputs]
            agg = self.neighbour_sums(x, batch, edge_attr, drop_relations)
            if self.neighbour_standardize:
                agg = per_day_zscore(agg, batch.batch, int(batch.num_graphs))
            e = e + self.neighbour_proj(agg)
        h = e
        if self.pearl is not None:
            h = h + self.positional(batch, e.size(0), e.device)
        att_attr = self.edge_inputs(batch, edge_attr) if self.edge_features else edge_attr
        # Each relation's edges in input order (a stable sort by type, then slices); an empty [2, 0] tensor
        # when a relation has none: HeteroConv would skip a missing key.
        order = torch.argsort(batch.edge_type, stable=True)
        counts = torch.bincount(batch.edge_type, minlength=len(self.relations)).tolist()
        ei_parts = batch.edge_index[:, order].split(counts, dim=1)
        ea_parts = att_attr[order].split(counts)
        ei_dict = {(NODE, name, NODE): ei_parts[r] for r, name in enumerate(self.relations)}
        ea_dict = {(NODE, name, NODE): ea_parts[r] for r, name in enumerate(self.relations)}
        keep = None
        if drop_relations:
            unknown = sorted(set(drop_relations) - set(self.relations))
            if unknown:
                raise ValueError(f"drop_relations: {unknown} are not relations of this model ({self.relations})")
            keep = torch.tensor([r not in drop_relations for r in self.relations], device=e.device)
            if not keep.any():
                raise ValueError("drop_relations: cannot drop every relation")
        self.relation_weights = []
        for conv, weighting, norm, drop in zip(self.convs, self.weightings, self.norms, self.layer_drop):
            per_rel = conv({NODE: h}, ei_dict, edge_attr_dict=ea_dict)[NODE]  # [N, R, D]
            msg, w = weighting(per_rel, keep)
            if self.record:
                self.relation_weights.append(w.detach())
            branch = F.dropout(F.gelu(msg), self.dropout, self.training)
            if self.training and drop > 0:  # stochastic depth, per node; no draw at all when off
                branch = branch * path_mask(branch, drop)
            h = norm(h + branch)
        z = self.head(torch.cat([h, e], dim=-1))
        reg = self.reg(z)
        if self.wide is not None:
            reg = reg + self.wide(torch.cat([torch.nan_to_num(batch.x_seq[:, -1]), batch.x_wide.to(reg.dtype)], dim=1))
        return {"reg": reg, "sig_logit": self.sig(z), "dir_logit": self.dir(z), "emb": z}


    def edge_inputs(self, batch: Any, edge_attr: torch.Tensor) -> torch.Tensor:
        """[E, edge_dim + len(edge_features)]: (weight, sign) and the computed edge features.

        ``vol_similarity`` = exp(-|v_src - v_dst| / s) with v the node's
        volatility input of today (cross-sectionally normalized, dated <= the
        node's date like every input: no look-ahead).
        """
        src, dst = batch.edge_index
        cols = [edge_attr]
        for name in self.edge_features:
            if name == "vol_similarity":
                v = batch.x_seq[:, -1, self.vol_index].to(edge_attr.dtype)
                cols.append(torch.exp(-(v[src] - v[dst]).abs() / self.vol_scale)[:, None])
        return torch.cat(cols, dim=1)

    def neighbour_sums(self, x: torch.Tensor, batch: Any, edge_attr: torch.Tensor, drop: Sequence[str] = ()) -> torch.Tensor:
        """[N, 2 R F]: per relation, the signed-weight sum and weighted mean of the in-neighbours' ``x`` [N, F]."""
        src, dst = batch.edge_index
        n, f, r = x.size(0), x.size(1), len(self.relations)
        w = edge_attr[:, 0] * edge_attr[:, 1]  # (weight, sign)
        if drop:
            keep = torch.tensor([name not in drop for name in self.relations], device=w.device)
            w = w * keep[batch.edge_type]
        # One scatter over every edge into (node, relation) slots: each slot sums its edges in input order,
        # as a scatter per relation would.
        slot = dst * r + batch.edge_type
        total = x.new_zeros(n * r, f).index_add_(0, slot, w[:, None] * x[src]).view(n, r, f)
        mass = x.new_zeros(n * r).index_add_(0, slot, w.abs()).view(n, r, 1)
        return torch.stack([total, total / mass.clamp_min(1e-6)], dim=2).reshape(n, 2 * r * f)


def per_day_zscore(x: torch.Tensor, day: torch.Tensor, n_days: int, eps: float = 1e-6) -> torch.Tensor:
    """Columns of ``x`` [N, C] z-scored within each day of the batch (``day`` [N]); a constant column is 0."""
    ones = x.new_ones(x.size(0))
    count = x.new_zeros(n_days).index_add(0, day, ones).clamp_min(1.0)[:, None]
    mean = x.new_zeros(n_days, x.size(1)).index_add(0, day, x) / count
    centred = x - mean[day]
    var = x.new_zeros(n_days, x.size(1)).index_add(0, day, centred * centred) / count
    return centred / (var.sqrt()[day] + eps)


def core_kwargs(
    cfg: TrainConfig, features: Sequence[str], relations: Sequence[str], n_horizons: int, seed: int = 0, wide_dim: int = 0
) -> dict[str, Any]:
    """Constructor arguments of :class:`CoreModel` for a params group (saved next to checkpoints).

    The refinement switches enter only when on, so the default ``model.json`` is what it always was.
    """
    missing = [n for n in cfg.neighbour_inputs if n not in features]
    if missing:
        raise UserError(f"train.neighbour_inputs: {missing} are not feature columns of the panel (e.g. {list(features[:3])})")
    p = cfg.pearl
    pearl = None if p.mode == "none" else {"mode": p.mode, "samples": p.samples, "k": p.k, "layers": p.layers, "hidden": p.dim, "eval_seed": seed}
    kwargs = {
        "in_dim": len(features), "relations": list(relations), "n_horizons": n_horizons, "seq_len": cfg.seq_len,
        "temporal": cfg.temporal, "temporal_layers": cfg.temporal_layers, "hidden": cfg.hidden, "heads": cfg.heads,
        "layers": cfg.layers, "dropout": cfg.dropout, "relation_weighting": cfg.relation_weighting, "pearl": pearl,
        "neighbour_inputs": [list(features).index(n) for n in cfg.neighbour_inputs],
    }
    if cfg.window_norm != "gated":
        kwargs |= {"window_norm": cfg.window_norm} | ({"fan_top_k": cfg.fan_top_k} if cfg.window_norm == "fan" else {})
    if cfg.stochastic_depth > 0:
        kwargs["stochastic_depth"] = cfg.stochastic_depth
    if cfg.neighbour_standardize:
        kwargs["neighbour_standardize"] = True
    if cfg.wide != "none":
        kwargs |= {"wide": cfg.wide, "wide_dim": wide_dim}
    if cfg.edge_features:
        kwargs |= {"edge_features": list(cfg.edge_features), "vol_scale": cfg.vol_similarity_scale}
        if "vol_similarity" in cfg.edge_features:
            if VOL_COLUMN not in features:
                raise UserError(
                    f"train.edge_features: vol_similarity needs the feature column {VOL_COLUMN} in the panel"
                    " (features.windows must include 20 and features.families the technical family)"
                )
            kwargs["vol_index"] = list(features).index(VOL_COLUMN)
    return kwargs


# ----------------------------------------------------------- hierarchical heads

CLASSES = ("down", "neutral", "up")


def hierarchical_classes(p_signal: np.ndarray, p_up: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Signal then direction -> class (-1 down, 0 neutral, 1 up) and probabilities [.., 3] (down, neutral, up).

    No signal (``p_signal < threshold``) is neutral; otherwise up when
    ``p_up >= 0.5``, else down. The probabilities are
    ``(p_s (1 - p_up), 1 - p_s, p_s p_up)``: they sum to 1.
    """
    p_signal, p_up = np.asarray(p_signal, dtype=np.float64), np.asarray(p_up, dtype=np.float64)
    cls = np.where(p_signal < threshold, 0, np.where(p_up >= 0.5, 1, -1)).astype(np.int8)
    probs = np.stack([p_signal * (1 - p_up), 1 - p_signal, p_signal * p_up], axis=-1)
    return cls, probs
