"""PEARL positional encodings: Laplacian filters, permutation equivariance, sampling behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alphagraph.models.pearl import PEARL, block_diagonal, laplacian_filters, normalized_laplacian, pearl_graph


def random_graph(n: int = 30, e: int = 90, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g)


def dense_laplacian(edge_index: torch.Tensor, n: int) -> np.ndarray:
    a = np.zeros((n, n))
    for s, d in edge_index.t().tolist():
        if s != d:
            a[s, d] = a[d, s] = 1.0
    deg = a.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0.0)
    return np.eye(n) - inv[:, None] * a * inv[None, :]


def test_filters_equal_powers_of_the_dense_normalized_laplacian():
    n = 25
    ei = torch.cat([random_graph(n, 60), torch.tensor([[3, 3], [3, 4]])], dim=1)  # a self-loop and a duplicate-ish edge
    w = torch.randn(n, 3, dtype=torch.float64)
    got = laplacian_filters(w, tuple(t.to(torch.float64) if t.is_floating_point() else t for t in normalized_laplacian(ei, n)), 4)
    lap = dense_laplacian(ei, n)
    want = np.stack([np.linalg.matrix_power(lap, k) @ w.numpy() for k in range(4)], axis=-1).transpose(1, 0, 2)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)  # float32 edge values


@pytest.mark.parametrize("mode", ["random", "basis"])
def test_permutation_equivariant(mode):
    torch.manual_seed(0)
    n = 30
    ei = random_graph(n)
    model = PEARL(8, mode=mode, samples=6, k=3, layers=2).eval()
    w = torch.randn(n, 6) if mode == "random" else None
    out = model(ei, n, w)
    perm = torch.randperm(n)  # new node p is old node perm[p]
    new_id = torch.empty_like(perm)
    new_id[perm] = torch.arange(n)
    out_perm = model(new_id[ei], n, None if w is None else w[perm])  # random draws permuted with the nodes
    torch.testing.assert_close(out_perm, out[perm], atol=1e-5, rtol=1e-5)
    # Not a lookup table of node ids: structurally identical nodes get identical encodings.
    assert out.shape == (n, 8) and torch.isfinite(out).all()


def test_structure_matters_and_identical_roles_match():
    # A star (hub 0 with 5 leaves) plus an isolated pair: leaves are interchangeable, the hub is not.
    ei = torch.tensor([[0, 0, 0, 0, 0, 6], [1, 2, 3, 4, 5, 7]])
    model = PEARL(4, mode="basis", k=3).eval()
    out = model(ei, 8)
    torch.testing.assert_close(out[1], out[5])
    torch.testing.assert_close(out[6], out[7])
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    assert not torch.allclose(out[1], out[6], atol=1e-4)


def test_random_draws_fresh_in_training_fixed_in_eval():
    ei, n = random_graph(), 30
    model = PEARL(8, mode="random", samples=4)
    model.train()
    assert not torch.allclose(model(ei, n), model(ei, n))
    model.eval()
    torch.testing.assert_close(model(ei, n), model(ei, n))


def test_isolated_nodes_and_empty_graph():
    model = PEARL(4, samples=3).eval()
    out = model(torch.zeros(2, 0, dtype=torch.long), 5)
    assert out.shape == (5, 4) and torch.isfinite(out).all()
    assert model(torch.zeros(2, 0, dtype=torch.long), 0).shape == (0, 4)
    with pytest.raises(ValueError, match="train.pearl.mode"):
        PEARL(4, mode="laplacian")


def test_eval_encodings_are_cached_per_graph_until_a_weight_changes():
    torch.manual_seed(0)
    pearl = PEARL(8, mode="random", samples=4).eval()
    ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    star = torch.tensor([[0, 0, 0], [1, 2, 3]])
    with torch.no_grad():
        first = pearl(ring, 4)
        assert pearl(ring, 4) is first  # the cached tensor
        assert not torch.equal(pearl(star, 4), first)  # another graph, another entry
        opt = torch.optim.SGD(pearl.parameters(), lr=0.1)
    pearl(ring, 4).sum().backward()  # with gradients: computed, not cached
    opt.step()  # an in-place update bumps the weights' versions
    with torch.no_grad():
        after = pearl(ring, 4)
        assert not torch.equal(after, first)
        pearl._cache.clear()
        assert torch.equal(pearl(ring, 4), after)  # the same as computing afresh
    pearl.train()
    assert not pearl._cache  # training drops every entry


def test_union_operators_are_the_block_diagonal_of_each_graphs():
    """A training batch's union of snapshots gets the operators pearl_graph gives on the union itself
    (same entries, same order), so the encodings do not change with the per-graph cache."""
    sizes = [30, 12, 25]
    graphs = [random_graph(n, 3 * n, seed=k) for k, n in enumerate(sizes)]
    offsets = np.r_[0, np.cumsum(sizes)]
    union = torch.cat([g + int(o) for g, o in zip(graphs, offsets)], dim=1)
    model = PEARL(8, samples=4, k=3, layers=2).train()
    parts = [model.graph(g, n) for g, n in zip(graphs, sizes)]
    assert model.graph(graphs[0], sizes[0]) is parts[0]  # kept per graph
    got, want = block_diagonal(parts), pearl_graph(union, int(offsets[-1]))
    for a, b in zip(got, want):
        assert torch.equal(a.crow_indices(), b.crow_indices())
        assert torch.equal(a.col_indices(), b.col_indices())
        assert torch.equal(a.values(), b.values())
    w = torch.randn(int(offsets[-1]), 4)
    assert torch.equal(model(union, int(offsets[-1]), w=w, graph=got), model(union, int(offsets[-1]), w=w))
