"""Rolling-correlation edges: masked Pearson correlation and deterministic top-k.

Everything here works on one snapshot's window at a time, as dense matrices:
a few matrix products per snapshot, never a Python loop over stocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CorrEdges:
    """Correlation edges of one snapshot as column indices into the window matrix."""

    src: np.ndarray  # neighbour (message sender)
    dst: np.ndarray  # the stock that chose it
    rho: np.ndarray  # float64 correlation


def min_observations(window: int, share: float) -> int:
    """Returns a stock (and a pair of stocks) needs inside the window; at least 3."""
    return max(3, math.ceil(share * window - 1e-9))


def residualize(x: np.ndarray, market: np.ndarray) -> np.ndarray:
    """Remove each column's OLS market beta (with intercept) over its observed days.

    ``x`` is [W, n] with NaN for missing days; ``market`` is [W], or [W, n] for
    a factor per column (a stock's sector). A day with no market return is
    treated as missing. The intercept is dropped: correlation over any subset
    of days is shift-invariant, so only the slope matters.
    """
    factor = market[:, None] if market.ndim == 1 else market
    obs = np.isfinite(x) & np.isfinite(factor)
    mk = np.where(obs, factor, 0.0)
    xv = np.where(obs, x, 0.0)
    count = obs.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m_mean = mk.sum(axis=0) / count
        x_mean = xv.sum(axis=0) / count
        m_dev = np.where(obs, mk - m_mean, 0.0)
        cov = (m_dev * np.where(obs, xv - x_mean, 0.0)).sum(axis=0)
        var = (m_dev * m_dev).sum(axis=0)
        beta = np.where(var > 0, cov / var, 0.0)
    return np.where(obs, x - beta * factor, np.nan)


def sector_mean_loo(x: np.ndarray, sector: np.ndarray) -> np.ndarray:
    """Leave-one-out equal-weight sector mean of ``x`` [W, n] (NaN = missing) per day and column.

    ``sector`` [n] holds a sector id >= 0 per column (-1: none). Column j's
    value on day d is the mean of the other columns of its sector with a value
    that day (NaN when there is none, or j has no sector). Sums run over each
    (day, sector)'s values in column order, skipping missing ones, so the
    result does not depend on absent columns (as the market return).
    """
    w, n = x.shape
    out = np.full((w, n), np.nan)
    cols = np.flatnonzero(sector >= 0)
    if cols.size == 0 or w == 0:
        return out
    cols = cols[np.argsort(sector[cols], kind="stable")]  # grouped by sector, column order within
    xs, sec = x[:, cols], sector[cols]
    n_sec = int(sec.max()) + 1
    finite = np.isfinite(xs)
    key = (np.arange(w)[:, None] * n_sec + sec[None, :])[finite]  # (day, sector), non-decreasing
    total = np.zeros(w * n_sec)
    count = np.zeros(w * n_sec)
    if key.size:
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        total[key[starts]] = np.add.reduceat(xs[finite], starts)
        count[key[starts]] = np.diff(np.r_[starts, key.size])
    cell = np.arange(w)[:, None] * n_sec + sec[None, :]
    own = np.where(finite, xs, 0.0)
    others = count[cell] - finite
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, cols] = np.where(others > 0, (total[cell] - own) / others, np.nan)
    return out


@dataclass(frozen=True)
class Standardized:
    """A window ready for correlation rows: unit-norm columns plus masked gap blocks."""

    z: np.ndarray  # [W, n] centred, unit-norm columns (0 where missing)
    gaps: np.ndarray  # columns with missing days
    gap_slot: np.ndarray  # [n] position of each column in ``gaps``, -1 if gap-free
    block: np.ndarray  # [n, len(gaps)] exact pairwise-complete rho against gap columns
    dead: np.ndarray  # [n] columns with no usable variance


def standardize(x: np.ndarray, min_obs: int) -> Standardized:
    """Prepare ``x`` [W, n] (NaN = missing) for :func:`corr_rows`.

    Gap-free pairs get their rho from one product of standardized columns;
    only columns with gaps pay for masked sums, against every column.
    """
    w, n = x.shape
    obs = np.isfinite(x)
    count = obs.sum(axis=0)
    # Centring first keeps the one-pass masked sums well conditioned; it does not change rho.
    centre = np.where(obs, x, 0.0).sum(axis=0) / np.maximum(count, 1)
    xc = np.where(obs, x - centre, 0.0)
    norm = np.sqrt((xc * xc).sum(axis=0))
    dead = ~(norm > 0) | (count < min_obs)
    z = np.where(dead, 0.0, xc / np.where(dead, 1.0, norm))
    gaps = np.flatnonzero(count < w)
    gap_slot = np.full(n, -1)
    gap_slot[gaps] = np.arange(gaps.size)
    block = _masked_corr(xc, obs, gaps, min_obs) if gaps.size else np.empty((n, 0))
    return Standardized(z=z, gaps=gaps, gap_slot=gap_slot, block=block, dead=dead)


def corr_rows(s: Standardized, rows: slice, fill: float = np.nan, own: float | None = None) -> np.ndarray:
    """Rows ``rows`` of the [n, n] correlation matrix.

    Undefined pairs hold ``fill``; with ``own`` given, each row's own column
    (the diagonal) holds it instead of 1.
    """
    out = s.z[:, rows].T @ s.z
    if s.gaps.size:
        slot = s.gap_slot[rows]
        has = slot >= 0
        out[:, s.gaps] = _filled(s.block[rows], fill)
        out[has] = _filled(s.block[:, slot[has]].T, fill)
    if s.dead.any():
        out[:, s.dead] = fill
        out[s.dead[rows]] = fill
    if own is not None:
        m = out.shape[0]
        out[np.arange(m), rows.indices(s.z.shape[1])[0] + np.arange(m)] = own
    return out


def _filled(a: np.ndarray, fill: float) -> np.ndarray:
    return a if np.isnan(fill) else np.where(np.isnan(a), fill, a)


def pairwise_corr(x: np.ndarray, min_obs: int) -> np.ndarray:
    """Pearson correlation of the columns of ``x`` [W, n] over pairwise-complete days.

    Equals ``pandas.DataFrame.corr(min_periods=min_obs)``; on complete data it is
    ``np.corrcoef(x.T)``. Pairs with fewer than ``min_obs`` common days or zero
    variance are NaN.
    """
    return np.clip(corr_rows(standardize(x, min_obs), slice(None)), -1.0, 1.0)


def _masked_corr(xc: np.ndarray, obs: np.ndarray, cols: np.ndarray, min_obs: int) -> np.ndarray:
    """[n, len(cols)] correlation of every column with ``cols`` over common days.

    ``xc`` is zero where a value is missing, so a product with the other
    column's observation mask sums over the days both are observed.
    """
    ma = obs.astype(np.float64)
    mb = ma[:, cols]
    xb = xc[:, cols]
    n = ma.T @ mb
    sa, saa = xc.T @ mb, (xc * xc).T @ mb
    sb, sbb = ma.T @ xb, ma.T @ (xb * xb)
    sab = xc.T @ xb
    with np.errstate(invalid="ignore", divide="ignore"):
        va = saa - sa * sa / n
        vb = sbb - sb * sb / n
        block = (sab - sa * sb / n) / np.sqrt(va * vb)
    block[(n < min_obs) | ~(va > 0) | ~(vb > 0)] = np.nan
    return block


def correlation_top_k(
    x: np.ndarray, min_obs: int, k: int, include_negative: bool, chunk: int = 256
) -> CorrEdges:
    """Top-k correlation neighbours of every column of ``x`` [W, n].

    Rows of the correlation matrix are made and reduced ``chunk`` at a time, so
    the full [n, n] matrix never exists (cache-friendly, and memory stays
    O(chunk * n) for big universes).
    """
    s = standardize(x, min_obs)
    n = x.shape[1]
    parts = []
    for lo in range(0, n, chunk):  # chunks of rows, not single stocks
        rows = slice(lo, min(lo + chunk, n))
        # 0 marks "no edge" for undefined pairs and the stock itself: scores must be > 0.
        parts.append(_select_top_k(corr_rows(s, rows, fill=0.0, own=0.0), k, include_negative, lo))
    if not parts:
        empty = np.empty(0, dtype=np.int64)
        return CorrEdges(src=empty, dst=empty, rho=np.empty(0))
    return CorrEdges(
        src=np.concatenate([p.src for p in parts]),
        dst=np.concatenate([p.dst for p in parts]),
        rho=np.clip(np.concatenate([p.rho for p in parts]), -1.0, 1.0),
    )


def top_k_neighbours(rho: np.ndarray, k: int, include_negative: bool, row_offset: int = 0) -> CorrEdges:
    """Each row (stock) keeps its ``k`` best columns (neighbours), deterministically.

    ``rho`` holds rows ``row_offset ...`` of a square correlation matrix (row i's
    own column is ``row_offset + i``). Score is |rho| (or rho, keeping only
    rho > 0, when ``include_negative`` is off); the own column, NaN and zero
    scores never qualify. Ties are broken by the lower column index, i.e. the
    alphabetically first code, so the result does not depend on the partition
    algorithm. Returns global row indices in ``dst``.
    """
    rho = np.where(np.isnan(rho), 0.0, rho)
    m = rho.shape[0]
    rho[np.arange(m), row_offset + np.arange(m)] = 0.0
    return _select_top_k(rho, k, include_negative, row_offset)


def _select_top_k(rho: np.ndarray, k: int, include_negative: bool, row_offset: int) -> CorrEdges:
    """:func:`top_k_neighbours` on rows already holding 0 for undefined and own pairs."""
    m, n = rho.shape
    k = min(k, n - 1)
    if k < 1 or m == 0:
        empty = np.empty(0, dtype=np.int64)
        return CorrEdges(src=empty, dst=empty, rho=np.empty(0))
    # rho itself ranks the positive-only case: negatives and zeros never qualify below.
    score = np.abs(rho) if include_negative else rho
    # k + 1 best columns per row: enough to see whether the k-th place is tied.
    take = min(k + 1, n)
    cand = np.argpartition(score, n - take, axis=1)[:, n - take :]
    rows, cols = _ranked(score, np.repeat(np.arange(m), take), cand.ravel())
    if take > k:
        # A row whose k-th and (k+1)-th scores tie may have more tied columns
        # outside the candidates: redo those (rare) rows with every tied column.
        kth = score[rows[k::take], cols[k - 1 :: take]]
        tied = np.flatnonzero((score[rows[k::take], cols[k::take]] == kth) & (kth > 0))
        keep = (np.arange(rows.size) % take < k) & ~np.isin(rows, tied)
        rows, cols = rows[keep], cols[keep]
        if tied.size:
            t_rows, t_cols = np.nonzero(score[tied] >= kth[tied, None])
            t_rows, t_cols = _ranked(score, tied[t_rows], t_cols)
            first = np.r_[True, t_rows[1:] != t_rows[:-1]]
            rank = np.arange(t_rows.size) - np.maximum.accumulate(np.where(first, np.arange(t_rows.size), 0))
            rows, cols = np.r_[rows, t_rows[rank < k]], np.r_[cols, t_cols[rank < k]]
    valid = score[rows, cols] > 0
    rows, cols = rows[valid], cols[valid]
    return CorrEdges(src=cols, dst=rows + row_offset, rho=rho[rows, cols])


def _ranked(score: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) pairs ordered by row, then score descending, then column ascending."""
    order = np.lexsort((cols, -score[rows, cols], rows))
    return rows[order], cols[order]
