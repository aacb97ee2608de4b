"""Edges that do not come from prices: sector/industry links and relation-table links.

Both work on all snapshots at once (vectorized joins and index arithmetic).

Side tables may carry ``start``/``end`` validity dates (pl.Date, inclusive, null =
unbounded): a snapshot dated s uses only the rows valid on s, so a sector change or a
new supply-chain link dated d never reaches a snapshot before d. Tables without the
columns, or with nulls only, are static: every row applies to every snapshot.
"""

from __future__ import annotations

import numpy as np
import polars as pl

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
VALIDITY = ("start", "end")


def with_validity(table: pl.DataFrame) -> pl.DataFrame:
    """``table`` with ``start``/``end`` as pl.Date columns; absent ones are added as null (static)."""
    return table.with_columns(
        (pl.col(c) if c in table.columns else pl.lit(None)).cast(pl.Date).alias(c) for c in VALIDITY
    )


def has_validity_dates(table: pl.DataFrame) -> bool:
    """True when any row carries a non-null ``start`` or ``end``: the table is point-in-time."""
    return any(c in table.columns and table[c].null_count() < table.height for c in VALIDITY)


def valid_on(date: str) -> pl.Expr:
    """Rows whose [start, end] (inclusive, null = unbounded) contains the date column ``date``."""
    d = pl.col(date)
    return (pl.col("start").is_null() | (pl.col("start") <= d)) & (pl.col("end").is_null() | (pl.col("end") >= d))


def rows_valid_on_snapshots(trading: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """``trading`` (snapshot, code) joined with the ``table`` row valid on each snapshot.

    ``table`` has ``code``, ``start``, ``end``; where several rows of a code are valid on
    the same snapshot (overlapping intervals, or a static table with duplicate codes)
    the first in table order wins, as the static build always did.
    """
    return (
        trading.join(table.with_row_index("_row"), on="code", how="inner")
        .filter(valid_on("snapshot"))
        .filter(pl.col("_row") == pl.col("_row").min().over("snapshot", "code"))
        .drop("_row", *VALIDITY)
    )


def code_hash(codes: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a of each code's UTF-8 bytes: a stable, code-only ordering key.

    Stable across processes and library versions (unlike Python's or polars'
    hash), and a function of the code alone, so adding or removing other stocks
    never changes a stock's key.
    """
    raw = np.char.encode(np.asarray(codes, dtype=str), "utf-8")
    width = max(raw.dtype.itemsize, 1)
    byte = np.frombuffer(raw.astype(f"S{width}").tobytes(), dtype=np.uint8).reshape(len(raw), width)
    h = np.full(len(raw), _FNV_OFFSET, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(width):  # loop over byte positions, not stocks
            b = byte[:, j].astype(np.uint64)
            h = np.where(byte[:, j] > 0, (h ^ b) * _FNV_PRIME, h)
    return h


def ring_edges(
    group: np.ndarray, cap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric degree-capped links inside consecutive groups of rows.

    ``group`` holds a group id per row, rows of a group contiguous and in ring
    order; ``cap`` is each row's group cap. A group of n <= cap + 1 rows is a
    clique; a larger one is a ring lattice: each row links to the cap // 2 rows
    on either side (wrapping), so every degree is <= cap, links go both ways and
    big groups are sparse, not cliques. Returns (src, dst) row indices.
    """
    rows = np.arange(group.size)
    if rows.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    new = np.r_[True, group[1:] != group[:-1]]
    start = np.maximum.accumulate(np.where(new, rows, 0))
    size = np.diff(np.r_[np.flatnonzero(new), rows.size])[np.cumsum(new) - 1]
    clique = size - 1 <= cap
    half = np.where(clique, size - 1, cap // 2)
    degree = np.where(clique, size - 1, 2 * half)
    src = np.repeat(rows, degree)
    j = np.arange(src.size) - np.repeat(np.cumsum(degree) - degree, degree)
    h, n = half[src], size[src]
    # offsets 1..h forward, then n-1 .. n-h (i.e. 1..h backward)
    offset = np.where(j < h, j + 1, n - 1 - (j - h))
    pos = src - start[src]
    dst = start[src] + (pos + offset) % n
    return src, dst


def sector_industry_edges(
    trading: pl.DataFrame, universe: pl.DataFrame, max_degree: int, sector_weight: float
) -> pl.DataFrame:
    """Same-industry (weight 1) and same-sector-other-industry links per snapshot.

    ``trading`` has (snapshot, code) for every stock trading on each snapshot.
    Industry links come first (ring capped at ``max_degree``); sector links fill
    the budget left in each sector (``max_degree`` minus the largest industry
    degree there), so no stock exceeds ``max_degree`` in total. Ring order is by
    a hash of the code, so neighbours are not alphabetical runs. A stock's sector and
    industry on snapshot s come from its universe row valid on s (``start``/``end``).
    """
    uni = (
        with_validity(universe)
        .select("code", "sector", "industry", *VALIDITY)
        .drop_nulls(["code", "sector", "industry"])
    )
    # Ranks over all rows only label groups: the edges depend on which stocks share a
    # sector or industry, never on the labels' values.
    uni = uni.with_columns(
        pl.Series("key", code_hash(uni["code"].to_numpy()), dtype=pl.UInt64),
        pl.col("code").rank("dense").cast(pl.Int64).alias("code_rank"),  # breaks equal hashes
        pl.col("sector").rank("dense").cast(pl.Int64).alias("sec"),
        pl.struct("sector", "industry").rank("dense").cast(pl.Int64).alias("ind"),
    )
    t = rows_valid_on_snapshots(trading, uni)
    if t.height == 0:
        return _empty_static()
    snap = t["snapshot"].to_physical().cast(pl.Int64).to_numpy()
    sec, ind, key, code_rank = (t[c].to_numpy() for c in ("sec", "ind", "key", "code_rank"))
    # Industry level.
    order = np.lexsort((code_rank, key, ind, sec, snap))
    g_ind = _group_ids(snap[order], ind[order])
    s, d = ring_edges(g_ind, np.full(order.size, max_degree))
    ind_src, ind_dst = order[s], order[d]
    deg = np.bincount(ind_src, minlength=snap.size)
    # Sector level: the budget is what the busiest industry of the sector left over.
    order = np.lexsort((code_rank, key, sec, snap))
    g_sec = _group_ids(snap[order], sec[order])
    used = np.zeros(g_sec.max() + 1, dtype=np.int64)
    np.maximum.at(used, g_sec, deg[order])
    budget = np.maximum(max_degree - used, 0)[g_sec]
    s, d = ring_edges(g_sec, budget)
    sec_src, sec_dst = order[s], order[d]
    cross = ind[sec_src] != ind[sec_dst]
    sec_src, sec_dst = sec_src[cross], sec_dst[cross]
    parts = [_static_frame(t, ind_src, ind_dst, 1.0)]
    if sector_weight > 0:  # a zero weight would be an edge that carries nothing
        parts.append(_static_frame(t, sec_src, sec_dst, sector_weight))
    return pl.concat(parts)


def _group_ids(*keys: np.ndarray) -> np.ndarray:
    """Run ids of consecutive equal key tuples (keys already sorted)."""
    change = np.zeros(keys[0].size, dtype=bool)
    if change.size:
        change[0] = True
        for k in keys:
            change[1:] |= k[1:] != k[:-1]
    return np.cumsum(change) - 1


def _static_frame(t: pl.DataFrame, src: np.ndarray, dst: np.ndarray, weight: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "snapshot": t["snapshot"].gather(src),
            "src": t["code"].gather(src),
            "dst": t["code"].gather(dst),
            "weight": pl.Series(np.full(src.size, weight), dtype=pl.Float64),
        }
    )


def _empty_static() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"snapshot": pl.Date, "src": pl.Utf8, "dst": pl.Utf8, "weight": pl.Float64}
    )


def table_edges(trading: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Relation-table links valid on the snapshot whose two endpoints both trade on it.

    Self-links are dropped, null weights count as 1, and duplicate (src, dst)
    rows valid on the same snapshot are collapsed to their mean weight. Direction
    is kept as given.
    """
    links = (
        with_validity(rows)
        .select("src", "dst", pl.col("weight").cast(pl.Float64).fill_null(1.0), *VALIDITY)
        .filter((pl.col("src") != pl.col("dst")) & pl.col("weight").is_finite())
        .with_row_index("_row")
    )
    edges = (
        trading.rename({"code": "src"})
        .join(links, on="src", how="inner")
        .filter(valid_on("snapshot"))
        .join(trading.rename({"code": "dst"}), on=["snapshot", "dst"], how="inner")
    )
    if links.select("src", "dst").is_duplicated().any():
        # Averaged in table order, so a static table's means are the ones it always had.
        edges = edges.sort("_row").group_by("snapshot", "src", "dst", maintain_order=True).agg(pl.col("weight").mean())
    return edges.select("snapshot", "src", "dst", "weight")
