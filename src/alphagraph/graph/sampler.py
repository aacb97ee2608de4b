"""Uniform k-hop neighbor sampling in pure PyTorch, behind PyG's sampler interface.

PyG's :class:`~torch_geometric.sampler.NeighborSampler` (and so ``NeighborLoader``)
samples with compiled kernels from ``pyg-lib`` or ``torch-sparse``. Neither has
wheels on the package index this project installs from, and without them PyG
raises ``'NeighborSampler' requires either 'pyg-lib' or 'torch-sparse'`` at the
first batch (construction only warns). :class:`TorchNeighborSampler` does the
same directed, without-replacement, uniform sampling with vectorized tensor ops
and plugs into :class:`~torch_geometric.loader.NodeLoader`;
:func:`neighbor_sampler` picks PyG's own sampler whenever a backend is present.

Conventions follow PyG's homogeneous sampler: messages flow ``src -> dst``,
sampling a node draws among its incoming edges, ``row``/``col`` index into
``node`` and ``edge`` holds ids in the original ``edge_index``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch_geometric.typing
from torch import Tensor
from torch.utils.data import get_worker_info
from torch_geometric.data import Data
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    NeighborSampler,
    NodeSamplerInput,
    SamplerOutput,
)

from alphagraph.runtime.log import get_logger

__all__ = ["TorchNeighborSampler", "neighbor_sampler", "sample_subgraph_edges"]

log = get_logger("sampler")


class TorchNeighborSampler(BaseSampler):
    """Uniform neighbor sampler without replacement over incoming edges.

    ``fanouts[k]`` caps the incoming edges drawn per frontier node at hop ``k``
    (``-1``: all). Randomness comes from a generator owned by the sampler, so
    results are reproducible given ``seed`` and the sequence of calls.
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int,
        fanouts: Sequence[int],
        seed: int | None = None,
    ) -> None:
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        fanouts = [int(f) for f in fanouts]
        if any(f < -1 for f in fanouts):
            raise ValueError(f"fanouts must be -1 or >= 0, got {fanouts}")
        # Samplers run on CPU in PyG (NodeSamplerInput moves seeds to CPU too).
        edge_index = edge_index.detach().to("cpu", torch.long)
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
            raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")

        self.num_nodes = int(num_nodes)
        self.num_edges = edge_index.size(1)
        self.fanouts = fanouts
        self.seed = seed

        # CSC layout: incoming edges of node v are positions rowptr[v]:rowptr[v+1];
        # a stable sort keeps each group in original edge order.
        src, dst = edge_index
        perm = torch.argsort(dst, stable=True)
        self._src = src[perm]
        self._eid = perm
        deg = torch.bincount(dst, minlength=self.num_nodes)
        self._rowptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(deg, 0)])

        self._generator = torch.Generator()
        if seed is None:
            self._generator.seed()
        else:
            self._generator.manual_seed(seed)
        self._worker_id: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_nodes={self.num_nodes}, num_edges={self.num_edges}, fanouts={self.fanouts})"

    def _reseed_in_worker(self) -> None:
        # DataLoader workers receive a pickled copy of the generator, so all of them
        # would replay one stream (and the same one every epoch). Worker seeds
        # differ per worker and per epoch and follow torch's global seed.
        info = get_worker_info()
        if info is not None and self._worker_id != info.id:
            self._worker_id = info.id
            self._generator.manual_seed((info.seed + 1_000_003 * (self.seed or 0)) % 2**63)

    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs: Any) -> SamplerOutput:
        """Sample the directed k-hop in-neighbourhood of ``index.node``."""
        if index.input_type is not None:
            raise NotImplementedError(f"{type(self).__name__} supports homogeneous graphs only")
        if index.time is not None:
            # Silently ignoring seed times would leak future edges into the sample.
            raise NotImplementedError(f"{type(self).__name__} does not support temporal sampling")
        self._reseed_in_worker()

        seeds = index.node.to("cpu", torch.long).view(-1)
        num_seeds = seeds.numel()
        if num_seeds and (int(seeds.min()) < 0 or int(seeds.max()) >= self.num_nodes):
            raise ValueError(f"seed node ids outside [0, {self.num_nodes})")

        # Global id -> local position. Duplicate seeds all stay in `node` (so
        # `node[:batch_size]` lines up with the input), but only the first
        # occurrence is mapped to and expanded, so no edge is sampled twice.
        local = torch.full((self.num_nodes,), -1, dtype=torch.long)
        positions = torch.arange(num_seeds)
        local.scatter_reduce_(0, seeds, positions, reduce="amin", include_self=False)
        frontier = positions[local[seeds] == positions]

        nodes, rows, cols, edges = [seeds], [], [], []
        num_sampled_nodes, num_sampled_edges = [num_seeds], []
        num_local = num_seeds
        node_ids = seeds
        for fanout in self.fanouts:
            src, col, eid = self._sample_hop(node_ids[frontier], frontier, fanout)

            is_new = local[src] < 0
            new = _unique_in_order(src[is_new])
            local[new] = torch.arange(num_local, num_local + new.numel())
            num_local += new.numel()
            frontier = local[new]

            nodes.append(new)
            node_ids = torch.cat([node_ids, new])
            rows.append(local[src])
            cols.append(col)
            edges.append(eid)
            num_sampled_nodes.append(new.numel())
            num_sampled_edges.append(eid.numel())

        empty = torch.empty(0, dtype=torch.long)
        return SamplerOutput(
            node=node_ids,
            row=torch.cat(rows) if rows else empty,
            col=torch.cat(cols) if cols else empty,
            edge=torch.cat(edges) if edges else empty,
            batch=None,
            num_sampled_nodes=num_sampled_nodes,
            num_sampled_edges=num_sampled_edges,
            metadata=(index.input_id, index.time),
        )

    def _sample_hop(self, targets: Tensor, target_local: Tensor, fanout: int) -> tuple[Tensor, Tensor, Tensor]:
        """Incoming edges drawn for ``targets``: (global src, local dst, edge id)."""
        start = self._rowptr[targets]
        deg = self._rowptr[targets + 1] - start
        owner = torch.repeat_interleave(torch.arange(targets.numel()), deg)
        group_start = torch.cumsum(deg, 0) - deg
        candidate = start[owner] + torch.arange(owner.numel()) - group_start[owner]

        if fanout >= 0 and bool((deg > fanout).any()):
            # Uniform k-subset without replacement: the k smallest of iid uniform
            # keys. Sort by key, then stably by owner, to rank within each group.
            key = torch.rand(owner.numel(), generator=self._generator)
            order = torch.argsort(key)
            order = order[torch.argsort(owner[order], stable=True)]
            rank = torch.arange(order.numel()) - group_start[owner[order]]
            # Re-sorting restores frontier order, then CSC (= original edge) order.
            keep, _ = torch.sort(order[rank < fanout])
            candidate, owner = candidate[keep], owner[keep]

        return self._src[candidate], target_local[owner], self._eid[candidate]

    def sample_from_edges(self, index: EdgeSamplerInput, neg_sampling: Any = None) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} samples from seed nodes only; link-level loaders "
            "(LinkNeighborLoader) need PyG's NeighborSampler with pyg-lib or torch-sparse"
        )


def _unique_in_order(x: Tensor) -> Tensor:
    """Unique values of ``x`` in order of first occurrence."""
    if x.numel() == 0:
        return x
    uniq, inverse = torch.unique(x, return_inverse=True)
    first = torch.full((uniq.numel(),), x.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(x.numel()), reduce="amin")
    return uniq[torch.argsort(first)]


def neighbor_sampler(
    edge_index: Tensor,
    num_nodes: int,
    fanouts: Sequence[int],
    seed: int | None = None,
) -> BaseSampler:
    """PyG's compiled NeighborSampler if pyg-lib or torch-sparse is installed, else ours.

    ``seed`` only applies to :class:`TorchNeighborSampler`; PyG's kernels use the
    global torch seed.
    """
    # PyG's sampler constructs fine without a backend and fails only when
    # sampling, so check the flags instead of trying the constructor.
    if torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE:
        log.debug("neighbor sampler backend: torch_geometric NeighborSampler")
        data = Data(edge_index=edge_index, num_nodes=num_nodes)
        return NeighborSampler(data, num_neighbors=list(fanouts))
    log.debug("neighbor sampler backend: TorchNeighborSampler (no pyg-lib/torch-sparse)")
    return TorchNeighborSampler(edge_index, num_nodes, fanouts, seed=seed)


def sample_subgraph_edges(sampler: BaseSampler, seeds: Tensor) -> SamplerOutput:
    """Sample around ``seeds`` with any node sampler (``input_id`` left ``None``)."""
    return sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=seeds))
