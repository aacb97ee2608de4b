"""TorchNeighborSampler: exact k-hop neighbourhoods, fanout caps, determinism, PyG integration."""

from __future__ import annotations

import pytest
import torch
import torch_geometric.typing
from torch_geometric.data import Data
from torch_geometric.loader import NodeLoader
from torch_geometric.nn import GATv2Conv
from torch_geometric.sampler import EdgeSamplerInput, NodeSamplerInput

from alphagraph.graph.sampler import TorchNeighborSampler, neighbor_sampler, sample_subgraph_edges


def random_graph(num_nodes: int, num_edges: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_nodes, (2, num_edges), generator=g)


def reference_khop(edge_index: torch.Tensor, seeds: list[int], hops: int) -> tuple[list[set[int]], list[set[int]]]:
    """Per hop: the newly reached nodes and the ids of all edges into that hop's frontier."""
    src, dst = edge_index.tolist()
    seen = set(seeds)
    frontier = list(dict.fromkeys(seeds))
    node_hops, edge_hops = [set(frontier)], []
    for _ in range(hops):
        frontier_set = set(frontier)
        hop_edges = {e for e in range(len(src)) if dst[e] in frontier_set}
        new = []
        for e in sorted(hop_edges):
            if src[e] not in seen:
                seen.add(src[e])
                new.append(src[e])
        edge_hops.append(hop_edges)
        node_hops.append(set(new))
        frontier = new
    return node_hops, edge_hops


def hop_slices(sizes: list[int]) -> list[slice]:
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def check_consistent(edge_index: torch.Tensor, out) -> None:
    """Edges exist in the graph, none repeats, and nodes are unique."""
    local = torch.stack([out.row, out.col])
    assert torch.equal(edge_index[:, out.edge], out.node[local])
    assert out.edge.unique().numel() == out.edge.numel()
    assert out.node.unique().numel() == out.node.numel()
    assert sum(out.num_sampled_nodes) == out.node.numel()
    assert sum(out.num_sampled_edges) == out.edge.numel()


def test_full_fanout_is_exact_khop_neighbourhood() -> None:
    edge_index = random_graph(200, 2000, seed=0)
    seeds = [7, 42, 3, 199]
    out = sample_subgraph_edges(TorchNeighborSampler(edge_index, 200, [-1, -1], seed=1), torch.tensor(seeds))

    node_hops, edge_hops = reference_khop(edge_index, seeds, hops=2)
    assert out.node[: len(seeds)].tolist() == seeds
    assert out.num_sampled_nodes == [len(h) for h in node_hops]
    for sl, expected in zip(hop_slices(out.num_sampled_nodes), node_hops, strict=True):
        assert set(out.node[sl].tolist()) == expected
    for sl, expected in zip(hop_slices(out.num_sampled_edges), edge_hops, strict=True):
        assert set(out.edge[sl].tolist()) == expected
    check_consistent(edge_index, out)
    assert out.batch is None and out.metadata == (None, None)


def test_large_fanout_ignores_seed() -> None:
    edge_index = random_graph(100, 600, seed=1)
    seeds = torch.tensor([0, 5, 9])
    a = sample_subgraph_edges(TorchNeighborSampler(edge_index, 100, [-1, 10_000], seed=1), seeds)
    b = sample_subgraph_edges(TorchNeighborSampler(edge_index, 100, [10_000, -1], seed=2), seeds)
    assert torch.equal(a.node, b.node) and torch.equal(a.edge, b.edge)


def test_fanout_caps_edges_per_frontier_node() -> None:
    edge_index = random_graph(200, 2000, seed=2)
    fanouts = [3, 2]
    seeds = torch.tensor([10, 20, 30, 40, 50])
    out = sample_subgraph_edges(TorchNeighborSampler(edge_index, 200, fanouts, seed=3), seeds)

    check_consistent(edge_index, out)
    assert torch.equal(out.node[: seeds.numel()], seeds)
    in_degree = torch.bincount(edge_index[1], minlength=200)
    node_sl, edge_sl = hop_slices(out.num_sampled_nodes), hop_slices(out.num_sampled_edges)
    for hop, fanout in enumerate(fanouts):
        frontier = torch.arange(out.node.numel())[node_sl[hop]]
        cols = out.col[edge_sl[hop]]
        assert torch.isin(cols, frontier).all()
        counts = torch.bincount(cols, minlength=out.node.numel())[frontier]
        # Without replacement: exactly min(fanout, in-degree) per frontier node.
        assert torch.equal(counts, in_degree[out.node[frontier]].clamp(max=fanout))


def test_duplicate_and_isolated_seeds() -> None:
    edge_index = torch.tensor([[1, 2, 3, 1], [0, 0, 1, 3]])
    seeds = torch.tensor([0, 4, 0])  # node 4 has no edges at all
    out = sample_subgraph_edges(TorchNeighborSampler(edge_index, 5, [-1, -1], seed=0), seeds)
    # Seeds are kept as given so NodeLoader's n_id[:batch_size] lines up with the input.
    assert out.node.tolist() == [0, 4, 0, 1, 2, 3]
    assert sorted(out.edge.tolist()) == [0, 1, 2]
    assert out.num_sampled_nodes == [3, 2, 1] and out.num_sampled_edges == [2, 1]
    assert torch.equal(edge_index[:, out.edge], out.node[torch.stack([out.row, out.col])])


def test_same_seed_same_sample_different_seed_differs() -> None:
    edge_index = random_graph(50, 1000, seed=4)
    seeds = torch.arange(0, 50, 7)

    def draws(seed: int) -> list[torch.Tensor]:
        sampler = TorchNeighborSampler(edge_index, 50, [2, 2], seed=seed)
        return [sample_subgraph_edges(sampler, seeds).edge for _ in range(3)]

    a, b, c = draws(11), draws(11), draws(12)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[1], a[2])  # the generator advances between calls
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


def test_single_draw_is_uniform() -> None:
    # 500 targets with 10 incoming edges each (edge e is slot e % 10 of target e // 10);
    # drawing 1 per target over 10 calls gives 5000 picks spread over 10 slots.
    targets, slots = 500, 10
    dst = torch.arange(targets).repeat_interleave(slots)
    edge_index = torch.stack([targets + torch.arange(targets * slots), dst])
    sampler = TorchNeighborSampler(edge_index, targets * (slots + 1), [1], seed=6)
    picks = torch.cat([sample_subgraph_edges(sampler, torch.arange(targets)).edge for _ in range(10)])
    assert torch.equal(torch.sort(picks // slots).values, torch.arange(targets).repeat_interleave(10))
    counts = torch.bincount(picks % slots, minlength=slots)
    expected = picks.numel() / slots
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40  # 9 dof: P(chi2 > 40) < 1e-5


class TwoLayerGAT(torch.nn.Module):
    def __init__(self, in_dim: int, edge_dim: int) -> None:
        super().__init__()
        self.conv1 = GATv2Conv(in_dim, 8, heads=2, edge_dim=edge_dim)
        self.conv2 = GATv2Conv(16, 4, heads=1, edge_dim=edge_dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x, edge_index, edge_attr).relu(), edge_index, edge_attr)


def test_gnn_on_full_fanout_subgraph_matches_full_graph() -> None:
    torch.manual_seed(0)
    edge_index = random_graph(150, 900, seed=7)
    x, edge_attr = torch.randn(150, 5), torch.randn(900, 3)
    model = TwoLayerGAT(5, 3).eval()
    seeds = torch.tensor([3, 77, 120, 9, 64])

    out = sample_subgraph_edges(TorchNeighborSampler(edge_index, 150, [-1, -1]), seeds)
    with torch.no_grad():
        full = model(x, edge_index, edge_attr)[seeds]
        sub = model(x[out.node], torch.stack([out.row, out.col]), edge_attr[out.edge])[: seeds.numel()]
    assert torch.allclose(full, sub, atol=1e-5)


def test_node_loader_slices_features_consistently() -> None:
    edge_index = random_graph(80, 500, seed=8)
    data = Data(x=torch.randn(80, 4), edge_index=edge_index, edge_attr=torch.randn(500, 2), num_nodes=80)
    input_nodes = torch.tensor([5, 17, 2, 60, 33, 41, 8, 70, 12])
    sampler = TorchNeighborSampler(edge_index, 80, [4, 3], seed=0)
    loader = NodeLoader(data, node_sampler=sampler, input_nodes=input_nodes, batch_size=4)

    batch = next(iter(loader))
    assert batch.batch_size == 4
    assert torch.equal(batch.n_id[:4], input_nodes[:4])
    assert torch.equal(batch.x, data.x[batch.n_id])
    assert torch.equal(batch.edge_attr, data.edge_attr[batch.e_id])
    assert torch.equal(batch.n_id[batch.edge_index], edge_index[:, batch.e_id])
    assert sum(len(b.input_id) for b in loader) == input_nodes.numel()


def test_unsupported_inputs_raise() -> None:
    sampler = TorchNeighborSampler(random_graph(10, 30, seed=9), 10, [2])
    with pytest.raises(NotImplementedError, match="seed nodes only"):
        sampler.sample_from_edges(EdgeSamplerInput(None, torch.tensor([0]), torch.tensor([1])))
    with pytest.raises(NotImplementedError, match="temporal"):
        sampler.sample_from_nodes(NodeSamplerInput(None, torch.tensor([0]), time=torch.tensor([0])))
    with pytest.raises(ValueError, match="outside"):
        sample_subgraph_edges(sampler, torch.tensor([10]))


@pytest.mark.skipif(
    torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE,
    reason="a compiled sampling backend is installed",
)
def test_neighbor_sampler_falls_back_to_torch() -> None:
    sampler = neighbor_sampler(random_graph(10, 30, seed=10), 10, [2, 2], seed=0)
    assert isinstance(sampler, TorchNeighborSampler)
