"""Graph snapshots for every relation, as one long edges frame.

Snapshot rule: the calendar is the sorted unique dates of ``prices``; snapshots
are ``calendar[0::rebuild_every]``. A snapshot dated s uses only data dated
<= s and is used for the dates in [s, next snapshot). The last calendar day is
deliberately *not* forced to be a snapshot: then the snapshot dates up to any
day t depend only on the calendar up to t, so deleting later data changes no
snapshot dated <= t.

Only stocks trading on s (a price row dated s) get edges in snapshot s.

Side-file relations (sector_industry from the universe, the relation-table
ones) use only the side rows valid on s (``start``/``end``, see
:mod:`alphagraph.graph.static`). A side table without validity dates is applied
to every snapshot: ``point_in_time.<relation>`` in the metrics is false and a
warning says so, since today's sector map or supply chain on past snapshots is
look-ahead.

With ``graph.residualize_sector`` the rolling correlation also reads the
universe: each stock's returns are residualized on its sector's leave-one-out
mean return (after the market, when ``graph.residualize_market``), the
sector being the one valid on the snapshot date; the same point-in-time rule
and warning then apply to ``rolling_correlation``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from alphagraph.runtime.config import ConfigError, GraphConfig
from alphagraph.runtime.errors import UserError
from alphagraph.graph.correlation import correlation_top_k, min_observations, residualize, sector_mean_loo
from alphagraph.graph.static import (
    VALIDITY,
    has_validity_dates,
    rows_valid_on_snapshots,
    sector_industry_edges,
    table_edges,
    with_validity,
)
from alphagraph.runtime.log import get_logger

CORRELATION = "rolling_correlation"
SECTOR_INDUSTRY = "sector_industry"
# RSR's Wikidata company links (alphagraph.data.rsr_relations): one static snapshot taken after the sample.
WIKIDATA = "wikidata"
TABLE_RELATIONS = ("competitor", "supply_chain", "fund_similarity", WIKIDATA)
RELATIONS = (CORRELATION, SECTOR_INDUSTRY, *TABLE_RELATIONS)

EDGE_SCHEMA: dict[str, pl.DataType] = {
    "snapshot": pl.Date(),
    "relation": pl.Utf8(),
    "src": pl.Utf8(),
    "dst": pl.Utf8(),
    "weight": pl.Float32(),
    "sign": pl.Int8(),
    "rho": pl.Float32(),
}
EDGE_SORT = ["snapshot", "relation", "src", "dst"]


@dataclass(frozen=True)
class Market:
    """Dense [days, stocks] view of the prices; columns are codes in sorted order."""

    calendar: np.ndarray  # datetime64[D], sorted unique trading days
    codes: pl.Series  # Utf8, sorted
    close: np.ndarray  # [T, N] float64, NaN where the stock did not trade
    returns: np.ndarray  # [T, N] close-to-close, NaN unless traded on t-1 and t
    market: np.ndarray  # [T] equal-weight mean of that day's returns


def build_edges(
    prices: pl.DataFrame,
    universe: pl.DataFrame,
    relations: pl.DataFrame,
    cfg: GraphConfig,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Edges of every requested relation for every snapshot, plus metrics/graph.json."""
    _check_config(cfg)
    log = get_logger("graph")
    mkt = dense_market(prices)
    snaps = snapshot_positions(mkt.calendar.size, cfg.rebuild_every)
    trading = trading_frame(mkt, snaps)
    parts: list[pl.DataFrame] = []
    skipped: dict[str, str] = {}
    for rel in dict.fromkeys(cfg.relations):  # de-duplicated, order kept
        frame, reason = _relation_edges(rel, mkt, snaps, trading, universe, relations, cfg)
        if reason is not None:
            log.info("relation %s skipped: %s", rel, reason)
            skipped[rel] = reason
            continue
        parts.append(frame)
    edges = sort_edges(pl.concat(parts) if parts else empty_edges())
    built = [r for r in dict.fromkeys(cfg.relations) if r not in skipped]
    point_in_time = {r: has_validity_dates(_side_table(r, universe, relations)) for r in built if r != CORRELATION}
    if cfg.residualize_sector and CORRELATION in built:  # the correlation then reads the universe's sectors
        point_in_time[CORRELATION] = has_validity_dates(universe)
    static = [r for r, pit in point_in_time.items() if not pit]
    if static:
        log.warning(
            "static side files (no start/end validity dates) for %s: the same rows apply to every snapshot, "
            "which is look-ahead for past snapshots when they describe today's sector map or supply chain",
            ", ".join(static),
        )
    if WIKIDATA in static:
        log.warning(
            "wikidata: RSR's Wikidata company links were collected once, after the sample, and apply to every"
            " snapshot: look-ahead in the same way as a static industry map (metrics: point_in_time.wikidata false)"
        )
    metrics = graph_metrics(edges, trading, built, skipped, point_in_time)
    log.info(
        "%d snapshots, %d edges, mean degree %.2f", metrics["snapshots"], metrics["edges_total"], metrics["mean_degree"]
    )
    return edges, metrics


def _check_config(cfg: GraphConfig) -> None:
    if cfg.corr_window < 2:
        raise ConfigError(f"graph.corr_window must be >= 2, got {cfg.corr_window}")
    if cfg.top_k < 1:
        raise ConfigError(f"graph.top_k must be >= 1, got {cfg.top_k}")
    if cfg.rebuild_every < 1:
        raise ConfigError(f"graph.rebuild_every must be >= 1, got {cfg.rebuild_every}")
    if cfg.max_industry_degree < 0:
        raise ConfigError(f"graph.max_industry_degree must be >= 0, got {cfg.max_industry_degree}")
    if not 0 < cfg.corr_min_obs <= 1:
        raise ConfigError(f"graph.corr_min_obs must be in (0, 1], got {cfg.corr_min_obs}")


def _relation_edges(
    rel: str,
    mkt: Market,
    snaps: np.ndarray,
    trading: pl.DataFrame,
    universe: pl.DataFrame,
    relations: pl.DataFrame,
    cfg: GraphConfig,
) -> tuple[pl.DataFrame, str | None]:
    """One relation's edges in the output schema, or a reason to skip it."""
    if rel == CORRELATION:
        if mkt.calendar.size == 0:
            return empty_edges(), "no prices"
        sectors = snapshot_sectors(mkt, snaps, universe) if cfg.residualize_sector else None
        frame = correlation_edges(mkt, snaps, cfg, sectors)
        if frame.height == 0:
            get_logger("graph").warning(
                "rolling_correlation: no stock has %.0f%% of a %d-day window of returns on any snapshot",
                100 * cfg.corr_min_obs, cfg.corr_window,
            )
        return frame, None
    if rel == SECTOR_INDUSTRY:
        missing = {"code", "sector", "industry"} - set(universe.columns)
        if missing or universe.height == 0:
            return empty_edges(), "universe has no sector/industry data"
        frame = sector_industry_edges(trading, universe, cfg.max_industry_degree, cfg.sector_weight)
        return _finish_static(frame, rel), None
    rows = _side_table(rel, universe, relations)
    if rows.height == 0:
        return empty_edges(), "no rows in the relations table"
    return _finish_static(table_edges(trading, rows), rel), None


def _side_table(rel: str, universe: pl.DataFrame, relations: pl.DataFrame) -> pl.DataFrame:
    """The side rows a non-price relation is built from (the universe, or its relation-table rows)."""
    if rel == SECTOR_INDUSTRY:
        return universe
    return relations.filter(pl.col("relation") == rel) if "relation" in relations.columns else relations.clear()


def _finish_static(frame: pl.DataFrame, rel: str) -> pl.DataFrame:
    """Add relation, sign (+1) and rho (null) and cast to the edge schema."""
    return frame.with_columns(
        pl.lit(rel).alias("relation"),
        pl.lit(1).alias("sign"),
        pl.lit(None).alias("rho"),
    ).select(pl.col(c).cast(t) for c, t in EDGE_SCHEMA.items())


def sort_edges(edges: pl.DataFrame) -> pl.DataFrame:
    """Sort by (snapshot, relation, src, dst) through one integer key.

    Same order as sorting the four columns (codes and relation names ranked in
    their sorted order), several times faster on millions of string rows.
    """
    codes = pl.concat([edges["src"], edges["dst"]]).unique().sort()
    names = edges["relation"].unique().sort()
    n_snap, n_rel, n_code = edges["snapshot"].n_unique(), names.len(), codes.len()
    if n_snap * n_rel * n_code * n_code >= 2**62:  # the key would overflow: sort the columns
        return edges.sort(EDGE_SORT)
    rank = lambda col, cats: pl.col(col).cast(pl.Enum(cats)).to_physical().cast(pl.Int64)
    key = (
        (pl.col("snapshot").rank("dense").cast(pl.Int64) * n_rel + rank("relation", names)) * n_code
        + rank("src", codes)
    ) * n_code + rank("dst", codes)
    return edges.sort(key, maintain_order=True)


def empty_edges() -> pl.DataFrame:
    """An edges frame with no rows and the full schema."""
    return pl.DataFrame(schema=EDGE_SCHEMA)


# ---------------------------------------------------------------- dense market


def dense_market(prices: pl.DataFrame) -> Market:
    """Pivot long prices into dense close/return matrices (vectorized scatter)."""
    dates = prices["date"].cast(pl.Date).to_physical().to_numpy()  # days since epoch
    calendar_days = prices["date"].cast(pl.Date).unique().sort().to_physical().to_numpy()
    calendar = calendar_days.astype("datetime64[D]")
    codes = prices["code"].unique().sort()
    day = np.searchsorted(calendar_days, dates)
    col = prices["code"].cast(pl.Enum(codes)).to_physical().to_numpy().astype(np.int64)
    close = np.full((calendar.size, codes.len()), np.nan)
    close[day, col] = prices["close"].cast(pl.Float64).to_numpy()
    close[~(close > 0)] = np.nan  # a non-positive price has no return
    returns = np.full_like(close, np.nan)
    returns[1:] = close[1:] / close[:-1] - 1.0
    return Market(calendar=calendar, codes=codes, close=close, returns=returns, market=_market_return(returns))


def _market_return(returns: np.ndarray) -> np.ndarray:
    """Equal-weight mean return per day over the stocks with a return that day.

    Summed over the day's values in code order (reduceat on the flattened
    finite entries): unlike a row-wise nansum, the result does not depend on
    how many other (absent) stocks the matrix has, which keeps snapshots
    bit-identical when later data is deleted.
    """
    finite = np.isfinite(returns)
    count = finite.sum(axis=1)
    values = returns[finite]
    out = np.full(returns.shape[0], np.nan)
    has = count > 0
    if values.size:
        starts = (np.cumsum(count) - count)[has]
        out[has] = np.add.reduceat(values, starts) / count[has]
    return out


def snapshot_positions(n_days: int, every: int) -> np.ndarray:
    """Calendar positions of the snapshots: 0, every, 2 * every, ..."""
    return np.arange(0, n_days, every, dtype=np.int64)


def trading_frame(mkt: Market, snaps: np.ndarray) -> pl.DataFrame:
    """(snapshot, code) for every stock with a price on each snapshot date."""
    s, c = np.nonzero(np.isfinite(mkt.close[snaps]))
    return pl.DataFrame(
        {"snapshot": pl.Series(mkt.calendar[snaps[s]], dtype=pl.Date), "code": mkt.codes.gather(c)}
    )


# ---------------------------------------------------------- correlation edges


def correlation_edges(mkt: Market, snaps: np.ndarray, cfg: GraphConfig, sectors: np.ndarray | None = None) -> pl.DataFrame:
    """Top-k rolling-correlation edges for every snapshot (src=neighbour -> dst=stock).

    ``sectors`` [snapshots, codes] (:func:`snapshot_sectors`): residualize on the sector too.
    """
    min_obs = min_observations(cfg.corr_window, cfg.corr_min_obs)
    snap_ix, src, dst, rho = [], [], [], []
    with blas_threads(cfg.blas_threads):
        for s, i in enumerate(snaps):  # loop over snapshots; each one is a few matrix products
            sector = None if sectors is None else sectors[s]
            cols, x = snapshot_window(mkt, int(i), cfg, min_obs, sector)
            if cols.size < 2:
                continue
            e = correlation_top_k(x, min_obs, cfg.top_k, cfg.include_negative)
            snap_ix.append(np.full(e.src.size, i))
            src.append(cols[e.src])
            dst.append(cols[e.dst])
            rho.append(e.rho)
    if not snap_ix:
        return empty_edges()
    rho_all = np.concatenate(rho)
    frame = pl.DataFrame(
        {
            "snapshot": pl.Series(mkt.calendar[np.concatenate(snap_ix)], dtype=pl.Date),
            "src": mkt.codes.gather(np.concatenate(src)),
            "dst": mkt.codes.gather(np.concatenate(dst)),
            "weight": np.abs(rho_all),
            "sign": np.sign(rho_all),
            "rho": rho_all,
        }
    )
    return frame.with_columns(pl.lit(CORRELATION).alias("relation")).select(
        pl.col(c).cast(t) for c, t in EDGE_SCHEMA.items()
    )


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit BLAS threads inside the block (n <= 0, or no threadpoolctl: unchanged)."""
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:
        threadpool_limits = None
    if n <= 0 or threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield


def snapshot_window(
    mkt: Market, i: int, cfg: GraphConfig, min_obs: int, sector: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Eligible columns at calendar position ``i`` and their [W, n] window of returns.

    The window is the last ``corr_window`` calendar days up to and including
    day i (fewer at the start of the calendar). A stock is eligible when it
    trades on day i, has at least ``min_obs`` returns in the window, and its
    returns are not constant. Residualized on the market when configured.
    With ``sector`` (a sector id per code, -1 = none) also on the sector: the
    OLS slope on the leave-one-out equal-weight mean return of the stock's
    sector (over every stock of the sector with a return that day), that mean
    itself residualized on the market first when the returns are, so the two
    steps are the joint regression on market and sector (Frisch-Waugh). A day
    without a sector peer contributes a sector return of 0; a stock without a
    sector keeps its returns. Only data dated <= day i is read.
    """
    lo = max(0, i - cfg.corr_window + 1)
    window = mkt.returns[lo : i + 1]
    obs = np.isfinite(window)
    # Constant returns (e.g. a stale price) have no correlation.
    with np.errstate(invalid="ignore"):
        spread = np.where(obs, window, -np.inf).max(axis=0) - np.where(obs, window, np.inf).min(axis=0)
    eligible = np.isfinite(mkt.close[i]) & (obs.sum(axis=0) >= min_obs) & (spread > 0)
    cols = np.flatnonzero(eligible)
    x = window[:, cols]
    if cfg.residualize_market:
        x = residualize(x, mkt.market[lo : i + 1])
    if sector is not None:
        f = sector_mean_loo(window, sector)[:, cols]
        if cfg.residualize_market:
            f = residualize(f, mkt.market[lo : i + 1])
        x = residualize(x, np.where(np.isfinite(f), f, 0.0))
    return cols, x


def snapshot_sectors(mkt: Market, snaps: np.ndarray, universe: pl.DataFrame) -> np.ndarray:
    """Int64 [snapshots, codes]: each code's sector id (dense rank of the name) valid on each snapshot; -1 = none.

    The universe row valid on the snapshot date (``start``/``end``) counts, as
    for the sector_industry edges: a sector change dated d reaches no earlier snapshot.
    """
    if {"code", "sector"} - set(universe.columns):
        raise UserError("graph.residualize_sector: the universe has no code/sector columns; set it to false")
    table = with_validity(universe.select("code", "sector", *(c for c in VALIDITY if c in universe.columns)))
    table = table.drop_nulls(["code", "sector"]).with_columns(
        pl.col("code").cast(pl.Utf8), (pl.col("sector").cast(pl.Utf8).rank("dense").cast(pl.Int64) - 1).alias("_sector")
    )
    grid = pl.DataFrame(
        {"snapshot": pl.Series(mkt.calendar[snaps], dtype=pl.Date), "_s": np.arange(snaps.size, dtype=np.int64)}
    ).join(pl.DataFrame({"code": mkt.codes, "_c": np.arange(mkt.codes.len(), dtype=np.int64)}), how="cross")
    rows = rows_valid_on_snapshots(grid, table)
    out = np.full((snaps.size, mkt.codes.len()), -1, dtype=np.int64)
    out[rows["_s"].to_numpy(), rows["_c"].to_numpy()] = rows["_sector"].to_numpy()
    return out


# -------------------------------------------------------------------- metrics


def graph_metrics(
    edges: pl.DataFrame,
    trading: pl.DataFrame,
    built: list[str],
    skipped: dict[str, str],
    point_in_time: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Edges per relation (total, mean per snapshot), mean in-degree, skipped relations.

    ``point_in_time``: for each built side-file relation, whether its side table
    carries validity dates (false = one static table for every snapshot).
    """
    n_snap = trading["snapshot"].n_unique()
    node_days = max(trading.height, 1)
    per_rel = {}
    for rel in built:
        rel_edges = edges.filter(pl.col("relation") == rel)
        per_rel[rel] = {
            "edges_total": rel_edges.height,
            "edges_per_snapshot": _round(rel_edges.height / max(n_snap, 1)),
            "mean_degree": _round(rel_edges.height / node_days),
            "nodes_with_edges": _round(rel_edges.select("snapshot", "dst").n_unique() / node_days),
        }
    return {
        "snapshots": n_snap,
        "nodes_per_snapshot": _round(trading.height / max(n_snap, 1)),
        "edges_total": edges.height,
        "edges_per_snapshot": _round(edges.height / max(n_snap, 1)),
        "mean_degree": _round(edges.height / node_days),
        "relations": per_rel,
        "skipped": skipped,
        "point_in_time": dict(point_in_time or {}),
    }


def _round(x: float) -> float:
    return round(float(x), 4) if math.isfinite(x) else 0.0
