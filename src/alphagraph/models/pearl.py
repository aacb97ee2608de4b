"""PEARL positional encodings (Kanatsoulis et al., "Learning Efficient Positional
Encodings with Graph Neural Networks", ICLR 2025).

For M node-signal samples ``w_m`` (R-PEARL: i.i.d. standard Gaussian, drawn
afresh each training pass; B-PEARL: the N standard basis vectors), each node
gets the filtered signal ``[w, L w, ..., L^(K-1) w]`` (L the symmetric
normalized Laplacian of the undirected graph). One GIN, shared by all samples,
maps these [M, N, K] inputs to [M, N, d]; pooling over the M samples (mean)
gives an encoding that is permutation-equivariant in the nodes and invariant
to the order of the samples, and that a downstream model can use to tell
structural roles apart (hubs, bridges, members of dense clusters).

Evaluation is deterministic: in ``eval()`` mode R-PEARL draws its samples
from a generator seeded with ``eval_seed``, so predictions do not depend on
how many forward passes ran before. An encoding then depends on the graph and
the weights alone, and evaluation asks for the same snapshot graph again and
again (every validation pass, prediction, attention read-out and permuted
feature scores each snapshot anew), so without gradients it is computed once
per (graph, weights) and kept in a small cache (:data:`EVAL_CACHE` entries),
which a weight update invalidates (the key holds every parameter's version).
The sparse operators a pass applies (the Laplacian and the adjacency) depend
on the graph alone: they are kept per graph (up to :data:`GRAPH_CACHE_BYTES`), and
a union of graphs (a training batch's snapshots) gets its operators as the
block-diagonal of theirs, the matrices the union itself gives.

B-PEARL costs O(N^2 K d) per graph (N samples of N nodes): fine for a few
hundred nodes per snapshot, R-PEARL (O(M E K)) for larger universes.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch_geometric.nn import GINConv
from torch_geometric.utils import coalesce, to_undirected

MODES = ("random", "basis")
EVAL_CACHE = 128  # encodings of distinct (graph, weights) kept in eval mode: a few per snapshot of a panel
# Operators of distinct graphs kept, least recently used out: all 72 snapshots of a default-market fold take
# 11.5 MB; a large universe keeps a bounded part of its snapshots.
GRAPH_CACHE_BYTES = 128 << 20


class PearlGraph(NamedTuple):
    """The sparse operators of a PEARL pass on one graph, CSR [N, N] (row = target)."""

    lap: torch.Tensor  # the normalized Laplacian's off-diagonal values
    adj: torch.Tensor  # the undirected adjacency (ones), the GIN's neighbour sum


def pearl_graph(edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> PearlGraph:
    """A graph's :class:`PearlGraph` (they do not depend on the weights or the drawn signals)."""
    lap_ei, lap_value = normalized_laplacian(edge_index, num_nodes)
    adj = adjacency(to_undirected(edge_index, num_nodes=num_nodes), None, num_nodes, dtype)
    return PearlGraph(adjacency(lap_ei, lap_value.to(dtype), num_nodes), adj)


def block_diagonal(graphs: Sequence[PearlGraph]) -> PearlGraph:
    """The operators of the graphs' disjoint union (node ids offset in order): each matrix block-diagonal,
    with the same entries in the same order as :func:`pearl_graph` of the union gives."""
    return PearlGraph(*(_block_csr([g[i] for g in graphs]) for i in range(len(PearlGraph._fields))))


def _block_csr(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    n = nnz = 0
    crow, col, val = [], [], []
    for a in parts:
        crow.append(a.crow_indices()[:-1] + nnz)
        col.append(a.col_indices() + n)
        val.append(a.values())
        n, nnz = n + a.size(0), nnz + a.values().numel()
    crow.append(torch.tensor([nnz], dtype=crow[0].dtype, device=crow[0].device))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.cat(crow), torch.cat(col), torch.cat(val), (n, n), check_invariants=False)


def normalized_laplacian(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Undirected, deduplicated, self-loop-free ``(edge_index, -D^-1/2 A D^-1/2 values)``.

    ``L x = x + scatter(value * x[src] -> dst)``: see :func:`laplacian_filters`.
    """
    ei = edge_index[:, edge_index[0] != edge_index[1]]
    ei = coalesce(to_undirected(ei, num_nodes=num_nodes), num_nodes=num_nodes)
    deg = torch.zeros(num_nodes, device=ei.device).index_add_(0, ei[1], torch.ones(ei.size(1), device=ei.device))
    inv_sqrt = deg.clamp_min(1).rsqrt() * (deg > 0)
    return ei, -(inv_sqrt[ei[0]] * inv_sqrt[ei[1]])


def adjacency(edge_index: torch.Tensor, values: torch.Tensor | None, num_nodes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sparse CSR [N, N] with row = target, column = source: ``A @ x`` sums ``value * x[src]`` into each target.

    A sparse product instead of gather + scatter: no [E, M, d] message tensor is
    built, which on CPU makes PEARL's passes an order of magnitude faster.
    """
    if values is None:
        values = torch.ones(edge_index.size(1), dtype=dtype, device=edge_index.device)
    a = torch.sparse_coo_tensor(edge_index.flip(0), values, (num_nodes, num_nodes), check_invariants=False)
    with warnings.catch_warnings():  # torch flags CSR as beta; the product used here is long-standing
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return a.coalesce().to_sparse_csr()


def laplacian_filters(w: torch.Tensor, lap: tuple[torch.Tensor, torch.Tensor], k: int) -> torch.Tensor:
    """``[w, L w, ..., L^(k-1) w]`` for node signals ``w`` [N, M] -> [M, N, k]."""
    return _filters(w, adjacency(lap[0], lap[1].to(w.dtype), w.size(0)), k).transpose(0, 1)


def _filters(w: torch.Tensor, a_norm: torch.Tensor, k: int) -> torch.Tensor:
    """[N, M, k] filtered signals; ``a_norm`` the CSR of the Laplacian's off-diagonal values."""
    out = [w]
    for _ in range(k - 1):
        out.append(out[-1] + torch.sparse.mm(a_norm, out[-1]))
    return torch.stack(out, dim=-1)


class PEARL(nn.Module):
    """Learnable positional encodings: filtered random or basis node signals through a shared GNN, pooled."""

    def __init__(
        self,
        out_dim: int,
        mode: str = "random",
        samples: int = 16,
        k: int = 4,
        layers: int = 2,
        hidden: int | None = None,
        eval_seed: int = 0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"train.pearl.mode must be one of {MODES} (or 'none' to disable), got {mode!r}")
        if k < 1 or layers < 1 or samples < 1:
            raise ValueError(f"train.pearl: k, layers and samples must be >= 1 (got k={k}, layers={layers}, samples={samples})")
        self.mode, self.samples, self.k, self.eval_seed = mode, samples, k, eval_seed
        hidden = hidden or out_dim
        dims = [k] + [hidden] * layers
        # GIN: as expressive as 1-WL message passing; node_dim=-2 runs all M samples in one pass.
        self.gnn = nn.ModuleList(
            GINConv(nn.Sequential(nn.Linear(a, b), nn.GELU(), nn.Linear(b, b)), train_eps=True, node_dim=-2)
            for a, b in zip(dims[:-1], dims[1:])
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._graphs: OrderedDict[tuple, tuple[PearlGraph, int]] = OrderedDict()
        self._graph_bytes = 0

    def train(self, mode: bool = True) -> PEARL:
        if mode:  # training changes the weights: the cached encodings are stale
            self._cache.clear()
        return super().train(mode)

    def signals(self, num_nodes: int, device: torch.device) -> torch.Tensor:
        """The M input signals [N, M] of this pass (basis: the identity, M = N)."""
        if self.mode == "basis":
            return torch.eye(num_nodes, device=device)
        if self.training:
            return torch.randn(num_nodes, self.samples, device=device)
        gen = torch.Generator(device=device).manual_seed(self.eval_seed)
        return torch.randn(num_nodes, self.samples, device=device, generator=gen)

    def graph(self, edge_index: torch.Tensor, num_nodes: int) -> PearlGraph:
        """:func:`pearl_graph` (float32), from the cache when the graph was seen before."""
        digest = hashlib.blake2b(edge_index.cpu().numpy().tobytes(), digest_size=20).digest()
        key = (num_nodes, edge_index.size(1), str(edge_index.device), digest)
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key][0]
        g = pearl_graph(edge_index, num_nodes)
        size = sum(t.element_size() * t.numel() for a in g for t in (a.crow_indices(), a.col_indices(), a.values()))
        self._graphs[key] = (g, size)
        self._graph_bytes += size
        while self._graph_bytes > GRAPH_CACHE_BYTES and len(self._graphs) > 1:
            self._graph_bytes -= self._graphs.popitem(last=False)[1][1]
        return g

    def forward(
        self, edge_index: torch.Tensor, num_nodes: int, w: torch.Tensor | None = None, graph: PearlGraph | None = None
    ) -> torch.Tensor:
        """Encodings [N, out_dim] of a graph's nodes; ``w`` [N, M] overrides the drawn signals (tests);
        ``graph``: the graph's operators, when the caller has them (:meth:`graph`)."""
        if num_nodes == 0:
            return torch.zeros(0, self.out[-1].out_features, device=edge_index.device)
        key = None
        if w is None and not self.training and not torch.is_grad_enabled():
            # The graph's bytes (exact, no hash collision) and each weight's storage and version:
            # an optimizer step or a loaded state bumps a version, so a stale entry is never hit.
            weights = tuple((p.data_ptr(), p._version) for p in self.parameters())
            key = (num_nodes, str(edge_index.device), edge_index.cpu().numpy().tobytes(), weights)
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        w = self.signals(num_nodes, edge_index.device) if w is None else w
        if graph is None or graph.lap.dtype != w.dtype:
            graph = pearl_graph(edge_index, num_nodes, w.dtype)
        h = _filters(w, graph.lap, self.k)  # [N, M, K]
        # GINConv's update, nn((1 + eps) x + sum of the undirected neighbours' x), as one sparse
        # product over all M samples; the conv modules hold the weights.
        a = graph.adj
        for conv in self.gnn:
            n, m = h.shape[:2]
            agg = torch.sparse.mm(a, h.reshape(n, -1)).view(n, m, -1)
            h = conv.nn((1 + conv.eps) * h + agg)
        out = self.out(h.mean(1))
        if key is not None:
            self._cache[key] = out
            while len(self._cache) > EVAL_CACHE:
                self._cache.popitem(last=False)
        return out
