"""The links between stocks: the true ones (competitors, supply chain, fund co-holding) and the
incomplete, noisy file a model reads instead."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphagraph.data.synthetic.universe import _Universe
from alphagraph.runtime.config import ObservedRelationsConfig, SyntheticConfig


RELATIONS: tuple[str, ...] = ("competitor", "supply_chain", "fund_similarity")


@dataclass(frozen=True)
class _Edges:
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True)
class _Links:
    """Links with a life: each row is valid on trading days [start, end] (inclusive indices)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @staticmethod
    def always(edges: _Edges, n_days: int) -> _Links:
        m = len(edges.src)
        return _Links(edges.src, edges.dst, edges.weight, np.zeros(m, dtype=np.int64), np.full(m, n_days - 1))


@dataclass(frozen=True)
class _SupplyEvents:
    """Supply links that die and are replaced: on ``day`` the customer's ``slot`` gets ``supplier``."""

    day: np.ndarray
    customer: np.ndarray
    slot: np.ndarray
    supplier: np.ndarray
    raw: np.ndarray  # unnormalized weight; shares are raw / the customer's sum that day


def _competitors(uni: _Universe, k: int, rng: np.random.Generator) -> _Edges:
    """Each stock picks k peers in its industry; pairs are symmetric with one shared weight."""
    n = len(uni.codes)
    pairs = [np.empty(0, dtype=np.int64)]
    for ind in range(uni.n_industries):  # a loop over industries, vectorized within
        members = np.flatnonzero(uni.industry == ind)
        m = len(members)
        kk = min(k, m - 1)
        if kk <= 0:
            continue
        scores = rng.random((m, m))
        np.fill_diagonal(scores, -1.0)
        pick = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        a, b = np.repeat(members, kk), members[pick.ravel()]
        pairs.append(np.minimum(a, b) * n + np.maximum(a, b))
    keys = np.unique(np.concatenate(pairs))
    return _symmetric(keys, n, rng.uniform(0.3, 1.0, size=len(keys)))


def _symmetric(pair_keys: np.ndarray, n: int, weight: np.ndarray) -> _Edges:
    """Both directions of undirected pairs ``lo * n + hi``, one weight per pair."""
    lo, hi = pair_keys // n, pair_keys % n
    return _Edges(
        src=np.concatenate([lo, hi]),
        dst=np.concatenate([hi, lo]),
        weight=np.concatenate([weight, weight]),
    )


def _supply_chain(uni: _Universe, k: int, rng: np.random.Generator, affinity: np.ndarray) -> _Edges:
    """Directed supplier -> customer links, k suppliers per customer, mostly from upstream sectors.

    Each sector buys mainly from two upstream sectors (an industrial structure);
    a same-industry supplier is rare. Weights are the customer's supply shares.
    """
    n = len(uni.codes)
    k = min(k, n - 1)
    if k <= 0:
        return _Edges(*(np.empty(0, dtype=t) for t in (np.int64, np.int64, np.float64)))
    pick = np.empty((n, k), dtype=np.int64)
    for rows in _chunks(n):  # bounded memory for large universes
        logits = _supplier_logits(uni, rows, affinity)  # (customer, supplier)
        # Gumbel top-k: k distinct suppliers drawn with probability proportional to affinity.
        noisy = logits + rng.gumbel(size=logits.shape)
        pick[rows] = np.argsort(-noisy, axis=1, kind="stable")[:, :k]
    raw = rng.uniform(0.2, 1.0, size=pick.shape)
    return _Edges(
        src=pick.ravel(),
        dst=np.repeat(np.arange(n), k),
        weight=(raw / raw.sum(axis=1, keepdims=True)).ravel(),
    )


def _fund_similarity(uni: _Universe, n_funds: int, top_k: int, rng: np.random.Generator) -> _Edges:
    """Cosine similarity of fund-holding vectors; top_k per stock, made symmetric."""
    n = len(uni.codes)
    if n_funds <= 0 or top_k <= 0:
        return _Edges(*(np.empty(0, dtype=t) for t in (np.int64, np.int64, np.float64)))
    # Funds concentrate on a few sectors, so co-holding tracks sector and style.
    focus = rng.random((n_funds, uni.n_sectors)) < 2.0 / max(uni.n_sectors, 1)
    prob = 0.03 + 0.3 * focus[:, uni.sector]
    held = rng.random((n_funds, n)) < prob
    orphans = np.flatnonzero(~held.any(axis=0))
    held[rng.integers(0, n_funds, size=len(orphans)), orphans] = True
    holdings = (held * rng.lognormal(0.0, 1.0, size=held.shape)).T  # (stock, fund)
    unit = holdings / np.linalg.norm(holdings, axis=1, keepdims=True)
    kk = min(top_k, n - 1)
    top = np.empty((n, kk), dtype=np.int64)
    best = np.empty((n, kk))
    for rows in _chunks(n):  # bounded memory for large universes
        sim = unit[rows] @ unit.T
        sim[np.arange(len(rows)), rows] = -np.inf
        top[rows] = np.argsort(-sim, axis=1, kind="stable")[:, :kk]
        best[rows] = np.take_along_axis(sim, top[rows], axis=1)
    a = np.repeat(np.arange(n), kk)
    b = top.ravel()
    keep = best.ravel() > 0
    keys = np.unique(np.minimum(a, b)[keep] * n + np.maximum(a, b)[keep])
    lo, hi = keys // n, keys % n
    # The row-wise dot keeps the weight exactly symmetric (a matmul may differ in the last bit).
    return _symmetric(keys, n, np.einsum("ij,ij->i", unit[lo], unit[hi]))


def _supplier_logits(uni: _Universe, customers: np.ndarray, affinity: np.ndarray) -> np.ndarray:
    """(len(customers), n) log-weights of each stock as a supplier of each customer."""
    logits = np.log(affinity)[uni.sector[customers]][:, uni.sector]
    logits[uni.industry[customers, None] == uni.industry[None, :]] += np.log(0.2)
    logits[np.arange(len(customers)), customers] = -np.inf
    return logits


def _sector_affinity(n_sectors: int, rng: np.random.Generator) -> np.ndarray:
    """Each sector buys mainly from two upstream sectors (an industrial structure)."""
    affinity = np.ones((n_sectors, n_sectors))
    for c in range(n_sectors):
        others = np.delete(np.arange(n_sectors), c)
        if len(others):
            affinity[c, rng.choice(others, size=min(2, len(others)), replace=False)] = 8.0
    return affinity


def _supply_events(
    uni: _Universe, initial: _Edges, affinity: np.ndarray, life: int, n_days: int, rng: np.random.Generator
) -> _SupplyEvents:
    """Supply links die after an exponential life (mean ``life`` days) and a new supplier takes the slot.

    The new supplier is drawn like the first ones (upstream sectors preferred, by
    inverse CDF per industry); its raw weight has the scale of a share. Draws come
    in rounds over all slots, so a longer run starts with the same events (no
    look-ahead). ``life`` 0: links never change.
    """
    n = len(uni.codes)
    k = len(initial.src) // n if n else 0
    ints = np.empty(0, dtype=np.int64)
    if life <= 0 or k == 0:
        return _SupplyEvents(ints, ints, ints, ints, np.empty(0))
    industries = np.arange(uni.n_industries)
    sector_of_industry = np.zeros(uni.n_industries, dtype=np.int64)
    sector_of_industry[uni.industry] = uni.sector
    weight = affinity[sector_of_industry][:, uni.sector] * np.where(industries[:, None] == uni.industry[None, :], 0.2, 1.0)
    cdf = np.cumsum(weight, axis=1)
    slots = n * k
    customer_of, slot_of = np.arange(slots) // k, np.arange(slots) % k
    cum = np.zeros(slots)
    parts = []
    while True:
        cum += rng.exponential(life, size=slots)
        u, raw = rng.random(slots), rng.uniform(0.2, 1.0, size=slots) / (0.6 * k)
        day = 1 + np.floor(cum).astype(np.int64)
        live = np.flatnonzero(day < n_days)
        if live.size == 0:
            break
        c = customer_of[live]
        rows = cdf[uni.industry[c]]
        pick = np.minimum((rows < (u[live] * rows[:, -1])[:, None]).sum(axis=1), n - 1)
        pick = np.where(pick == c, (pick + 1) % n, pick)  # never its own supplier
        parts.append((day[live], c, slot_of[live], pick, raw[live]))
    if not parts:
        return _SupplyEvents(ints, ints, ints, ints, np.empty(0))
    day, customer, slot, supplier, raw = (np.concatenate([p[i] for p in parts]) for i in range(5))
    order = np.lexsort((slot, customer, day))
    return _SupplyEvents(day[order], customer[order], slot[order], supplier[order], raw[order])


def _fund_links(uni: _Universe, cfg: SyntheticConfig, n_days: int, rng: np.random.Generator) -> _Links:
    """Fund co-holding similarity, recomputed each time the funds rebalance (``fund_rebalance_days``)."""
    every = cfg.fund_rebalance_days if cfg.fund_rebalance_days > 0 else n_days
    parts = []
    for start in range(0, n_days, every):  # a few periods; each is vectorized
        edges = _fund_similarity(uni, cfg.n_funds, cfg.fund_top_k, rng)
        m = len(edges.src)
        end = min(start + every, n_days) - 1
        parts.append(_Links(edges.src, edges.dst, edges.weight, np.full(m, start), np.full(m, end)))
    return _concat_links(parts)


def _concat_links(parts: list[_Links]) -> _Links:
    return _Links(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("src", "dst", "weight", "start", "end")))


def _observe(links: _Links, cfg: ObservedRelationsConfig, n: int, rng: np.random.Generator, symmetric: bool) -> _Links:
    """The relations file a model reads: true links missing, weights mismeasured, spurious links added.

    Symmetric relations are observed per pair (both directions or neither). A spurious
    link copies the weight and life of a random true link between two random stocks.
    """
    half = links.src < links.dst if symmetric else np.ones(len(links.src), dtype=bool)
    true = _Links(*(getattr(links, f)[half] for f in ("src", "dst", "weight", "start", "end")))
    m = len(true.src)
    if m == 0 or n < 2:
        return links
    keep = rng.random(m) >= cfg.missing_share
    noise = np.exp(cfg.weight_noise * rng.standard_normal(m))
    n_fake = int(round(cfg.spurious_share * m))
    like = rng.integers(0, m, size=n_fake)
    a = rng.integers(0, n, size=n_fake)
    b = (a + rng.integers(1, n, size=n_fake)) % n  # never a self-loop
    if symmetric:
        a, b = np.minimum(a, b), np.maximum(a, b)
    fake_w = true.weight[like] * np.exp(cfg.weight_noise * rng.standard_normal(n_fake))
    # A "spurious" link that happens to be a true one is not spurious: leave it out.
    span = int(true.start.max()) + 1

    def key(src: np.ndarray, dst: np.ndarray, start: np.ndarray) -> np.ndarray:
        return (src.astype(np.int64) * n + dst) * span + start

    new = ~np.isin(key(a, b, true.start[like]), key(true.src, true.dst, true.start))
    like, a, b, fake_w = like[new], a[new], b[new], fake_w[new]
    out = _Links(
        np.concatenate([true.src[keep], a]),
        np.concatenate([true.dst[keep], b]),
        np.concatenate([(true.weight * noise)[keep], fake_w]),
        np.concatenate([true.start[keep], true.start[like]]),
        np.concatenate([true.end[keep], true.end[like]]),
    )
    # One row per (src, dst, start), as a relations file has (two spurious draws may coincide).
    _, first = np.unique(key(out.src, out.dst, out.start), return_index=True)
    first = np.sort(first)
    out = _Links(*(getattr(out, f)[first] for f in ("src", "dst", "weight", "start", "end")))
    if symmetric:
        out = _Links(
            np.concatenate([out.src, out.dst]), np.concatenate([out.dst, out.src]),
            *(np.concatenate([x, x]) for x in (out.weight, out.start, out.end)),
        )
    return out


def _chunks(n: int, cells: int = 1 << 22) -> list[np.ndarray]:
    """Row blocks of an (n, n) computation holding at most ``cells`` cells each."""
    size = max(1, cells // max(n, 1))
    return [np.arange(i, min(i + size, n)) for i in range(0, n, size)]
