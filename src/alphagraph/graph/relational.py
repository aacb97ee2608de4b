"""Relational features: what a stock's graph neighbours did, as plain ``f_rel_*`` panel columns.

The ``lgbm_graph`` baseline (LightGBM on the normalized panel plus these columns). Per
relation type ``rel``, for each (date t, stock i) of the panel:

    f_rel_{rel}_ret_1d        edge-weighted mean of the neighbours' last 1-day return
    f_rel_{rel}_ret_5d        the same for the last 5-day return
    f_rel_{rel}_ret_1d_sum    edge-weighted sum of the neighbours' last 1-day return
    f_rel_{rel}_{name}        edge-weighted mean of the neighbours' normalized ``f_{name}``
    f_rel_{rel}_degree        in-degree: the stock's in-edges in the snapshot used on t

Neighbours and direction: an edge src -> dst carries src's message to dst, as in the
GNNs (PyG's source_to_target; ``alphagraph.graph.loader``), so a stock aggregates over
the sources of its in-edges: a customer over its suppliers (``supply_chain`` src =
supplier -> dst = customer; Cohen & Frazzini's customer momentum).

Snapshot rule (``alphagraph.graph.build``): snapshots are the price calendar's days
0, rebuild_every, 2 x rebuild_every, ...; date t uses the latest snapshot s <= t. A
snapshot with no edges of a relation gives no neighbours for that relation (not the
previous snapshot's edges).

Weights: w = |weight| x sign (signed: a negatively correlated neighbour counts with a
minus), mean = sum(w x) / sum(|w|) and sum = sum(w x), both over the neighbours that have
a value x on t (the others are skipped); null where none has one.

Returns: a stock's return over its last k own price rows, close(t) / close(k rows
earlier) - 1, as the features panel defines returns (one across a suspension spans the
gap); a stock without a price row on t has no return on t.

Standardisation (:func:`standardize`): each column is z-scored per date over the panel
rows ((x - mean) / std, ddof 1), clipped to +-``clip`` (``normalize.clip``), Float32; a
column constant on a date is 0 there. Nulls stay null (no neighbour with a value, or no
neighbours): LightGBM sends them down its learned missing-value branch, which keeps "no
neighbours" apart from "average neighbours". The degree is never null (0).

Information set: a row dated t reads prices dated <= t, the panel's cross-section of
t and the snapshot <= t, whose dates depend only on the calendar up to t: nothing later
(tests/test_relational.py perturbs the future).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import sparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import Params
from alphagraph.runtime.errors import UserError
from alphagraph.graph.build import snapshot_positions
from alphagraph.runtime.io import read_parquet
from alphagraph.features.normalize import feature_columns

PREFIX = "f_rel_"
NO_SNAPSHOT = -(2**31)  # a day before the first snapshot
RET_DAYS = (1, 5)


@dataclass(frozen=True)
class RelationalSpec:
    """What to compute: relation types, neighbour feature columns, the snapshot cadence."""

    relations: list[str]
    neighbour_features: list[str]
    rebuild_every: int


def spec_from_params(params: Params) -> RelationalSpec:
    """The spec of ``lgbm_graph`` (relations null = every one of ``graph.relations``)."""
    cfg = params.lgbm_graph
    rels = list(cfg.relations) if cfg.relations is not None else list(dict.fromkeys(params.graph.relations))
    return RelationalSpec(rels, list(cfg.neighbour_features), params.graph.rebuild_every)


def value_names(spec: RelationalSpec) -> list[tuple[str, str]]:
    """(neighbour value column, output suffix) pairs, in output order."""
    rets = [(f"last_ret_{k}d", f"ret_{k}d") for k in RET_DAYS]
    return rets + [(c, c.removeprefix("f_")) for c in spec.neighbour_features]


def column_names(spec: RelationalSpec) -> list[str]:
    """The ``f_rel_*`` columns, in output order."""
    cols = []
    for rel in spec.relations:
        cols += [f"{PREFIX}{rel}_{suffix}" for _, suffix in value_names(spec)]
        cols += [f"{PREFIX}{rel}_ret_1d_sum", f"{PREFIX}{rel}_degree"]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise UserError(f"lgbm_graph.neighbour_features: output columns collide: {dup}")
    return cols


# ------------------------------------------------------------------- inputs


def last_returns(prices: pl.DataFrame) -> pl.DataFrame:
    """``date, code, last_ret_{k}d``: return over the stock's last k own rows, ending at date."""
    close = pl.when(pl.col("close") > 0).then(pl.col("close").cast(pl.Float64))  # a non-positive price has no return
    return (
        prices.lazy()
        .select("date", "code", close.alias("close"))
        .sort("code", "date")
        .select(
            "date",
            "code",
            *[(pl.col("close") / pl.col("close").shift(k).over("code") - 1.0).alias(f"last_ret_{k}d") for k in RET_DAYS],
        )
        .with_columns(pl.col(f"last_ret_{k}d").fill_nan(None) for k in RET_DAYS)
        .collect()
    )


def neighbour_values(prices: pl.DataFrame, panel: pl.DataFrame, spec: RelationalSpec) -> pl.DataFrame:
    """``date, code`` + every value a neighbour passes on (returns from prices, features from the panel)."""
    check_features(panel, spec)
    feats = panel.select(
        "date", "code", *[pl.col(c).cast(pl.Float64).fill_nan(None) for c in spec.neighbour_features]
    )
    # Outer on keys: a neighbour with a price row but no panel row still passes its returns, and vice versa.
    return last_returns(prices).join(feats, on=["date", "code"], how="full", coalesce=True)


def check_features(panel: pl.DataFrame, spec: RelationalSpec) -> None:
    have = set(feature_columns(panel))
    missing = [c for c in spec.neighbour_features if c not in have]
    if missing:
        some = ", ".join(sorted(have)[:8])
        raise UserError(
            f"lgbm_graph.neighbour_features: {missing} not feature columns of the normalized panel"
            f" (features.families and features.windows decide which exist; some that do: {some}, ...)"
        )


def snapshot_map(prices: pl.DataFrame, edges: pl.DataFrame, dates: pl.Series, rebuild_every: int) -> pl.DataFrame:
    """``date, snapshot``: the snapshot each of ``dates`` uses (null before the first one).

    Snapshots follow the graph stage's rule on the price calendar; edges dated on any
    other day mean the edges and params disagree (a stale graph stage).
    """
    calendar = prices["date"].unique().sort()
    snaps = pl.DataFrame({"snapshot": calendar.gather(snapshot_positions(calendar.len(), rebuild_every))})
    stray = edges.select("snapshot").unique().join(snaps, on="snapshot", how="anti")
    if stray.height:
        raise UserError(
            f"edges: snapshot {stray['snapshot'].min()} is not a snapshot day of graph.rebuild_every ="
            f" {rebuild_every} on the price calendar: the graph stage ran with other params or prices; rerun it"
        )
    days = pl.DataFrame({"date": dates.unique().sort()})
    return days.join_asof(snaps, left_on="date", right_on="snapshot", strategy="backward")


# -------------------------------------------------------------- computation


def relational_raw(
    panel: pl.DataFrame, prices: pl.DataFrame, edges: pl.DataFrame, spec: RelationalSpec
) -> pl.DataFrame:
    """``date, code`` of ``panel`` (same rows, same order) + the raw ``f_rel_*`` columns (Float64; degree Int32).

    The neighbours' values sit in a dense [day, stock, value] grid (NaN: none); per relation
    and snapshot, the sums over in-edges are sparse products with that snapshot's
    [dst, src] weight matrices, for all the days that use it at once.
    """
    keys = panel.select("date", "code")
    smap = snapshot_map(prices, edges, keys["date"], spec.rebuild_every)
    # Integer code ids index the grid's stock axis.
    codes = pl.Enum(pl.concat([keys["code"], prices["code"], edges["src"], edges["dst"]]).unique().sort())
    n_codes = codes.categories.len()
    ids = lambda c: pl.col(c).cast(codes).to_physical().cast(pl.Int64).alias(c)
    pairs = value_names(spec)
    value_cols = [col for col, _ in pairs]
    day_key = lambda frame: frame.get_column("date").cast(pl.Int32).to_numpy()
    calendar = day_key(smap)  # the panel's dates, sorted: the grid's day axis
    n_days = calendar.size
    values = neighbour_values(prices, panel, spec).select("date", ids("code"), *value_cols)
    value_day = day_key(values)
    at = np.searchsorted(calendar, value_day)
    on_day = calendar[np.minimum(at, n_days - 1)] == value_day if n_days else np.zeros(values.height, bool)
    grid = np.full((n_days, n_codes, len(value_cols)), np.nan)
    grid[at[on_day], values["code"].to_numpy()[on_day]] = values.select(value_cols).to_numpy(order="c")[on_day]
    has = ~np.isnan(grid)
    filled = np.where(has, grid, 0.0)
    ret1 = value_cols.index("last_ret_1d")
    row_day, row_code = np.searchsorted(calendar, day_key(keys)), keys.select(ids("code")).to_series().to_numpy()
    snap_of_day = smap.get_column("snapshot").cast(pl.Int32).fill_null(NO_SNAPSHOT).to_numpy()

    out = {}
    for rel in spec.relations:  # one pass per relation type
        e = edges.filter(pl.col("relation") == rel).select(
            pl.col("snapshot").cast(pl.Int32), ids("src"), ids("dst"),
            w=(pl.col("weight").cast(pl.Float64).abs() * pl.col("sign").cast(pl.Float64)),
            a=pl.col("weight").cast(pl.Float64).abs(),
        )
        res = np.full((n_days, n_codes, len(pairs) + 1), np.nan)  # the means, then the 1-day sum
        degree = np.zeros((n_days, n_codes), dtype=np.int32)
        for (snap,), part in e.partition_by("snapshot", as_dict=True, maintain_order=True).items():
            days = np.flatnonzero(snap_of_day == snap)
            if days.size == 0:
                continue
            src, dst = part["src"].to_numpy(), part["dst"].to_numpy()
            shape = (n_codes, n_codes)
            w = sparse.csr_matrix((part["w"].to_numpy(), (dst, src)), shape=shape)
            a = sparse.csr_matrix((part["a"].to_numpy(), (dst, src)), shape=shape)
            ones = sparse.csr_matrix((np.ones(src.size), (dst, src)), shape=shape)
            # [stock, day x value] blocks of the days that use this snapshot
            x = filled[days].transpose(1, 0, 2).reshape(n_codes, -1)
            m = has[days].transpose(1, 0, 2).reshape(n_codes, -1).astype(np.float64)
            num, den = (w @ x).reshape(n_codes, days.size, -1), (a @ m).reshape(n_codes, days.size, -1)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(den > 0, num / den, np.nan)
            any_ret = (ones @ has[days, :, ret1].T.astype(np.float64)) > 0  # [stock, day]: some neighbour has a 1-day return
            block = np.concatenate([mean, np.where(any_ret, num[:, :, ret1], np.nan)[:, :, None]], axis=2)
            res[days] = block.transpose(1, 0, 2)
            degree[days] = np.bincount(dst, minlength=n_codes).astype(np.int32)
        cols = [f"{PREFIX}{rel}_{suffix}" for _, suffix in pairs] + [f"{PREFIX}{rel}_ret_1d_sum"]
        picked = res[row_day, row_code]
        out |= {c: pl.Series(c, picked[:, j]).fill_nan(None) for j, c in enumerate(cols)}
        out[f"{PREFIX}{rel}_degree"] = pl.Series(f"{PREFIX}{rel}_degree", degree[row_day, row_code], dtype=pl.Int32)
    return keys.hstack([out[c] for c in column_names(spec)])


def standardize(frame: pl.DataFrame, cols: list[str], clip: float) -> pl.DataFrame:
    """Per-date z-score of ``cols``, clipped to +-clip, Float32; nulls stay null, a constant column is 0."""

    def z(c: str) -> pl.Expr:
        x = pl.col(c).cast(pl.Float64)
        mean, std = x.mean().over("date"), x.std().over("date")
        scaled = pl.when(x.is_null()).then(None).when(std > 1e-12).then((x - mean) / std).otherwise(0.0)
        return scaled.clip(-clip, clip).cast(pl.Float32).alias(c)

    return frame.with_columns(z(c) for c in cols)


def relational_features(
    panel: pl.DataFrame, prices: pl.DataFrame, edges: pl.DataFrame, spec: RelationalSpec, clip: float
) -> pl.DataFrame:
    """``date, code`` of ``panel`` (same rows and order) + standardized ``f_rel_*`` columns."""
    return standardize(relational_raw(panel, prices, edges, spec), column_names(spec), clip)


def coverage(raw: pl.DataFrame, spec: RelationalSpec) -> dict[str, dict[str, float]]:
    """Per relation: share of rows with an in-edge, with a neighbour's 1-day return, and the mean degree."""
    out = {}
    n = max(raw.height, 1)
    for rel in spec.relations:
        deg = raw[f"{PREFIX}{rel}_degree"]
        out[rel] = {
            "rows_with_neighbours": round(int((deg > 0).sum()) / n, 4),
            "rows_with_neighbour_return": round(int(raw[f"{PREFIX}{rel}_ret_1d"].is_not_null().sum()) / n, 4),
            "mean_degree": round(float(deg.mean() or 0.0), 4),
        }
    return out


def add_relational_features(
    panel: pl.DataFrame, prices: pl.DataFrame, edges: pl.DataFrame, spec: RelationalSpec, clip: float
) -> tuple[pl.DataFrame, dict[str, dict[str, float]]]:
    """``panel`` with the standardized ``f_rel_*`` columns appended, and the per-relation coverage."""
    clash = [c for c in column_names(spec) if c in panel.columns]
    if clash:
        raise UserError(f"normalized panel already has relational columns {clash[:3]}: is it the normalize stage's output?")
    raw = relational_raw(panel, prices, edges, spec)
    cols = column_names(spec)
    feats = standardize(raw, cols, clip)
    return panel.hstack(feats.select(cols)), coverage(raw, spec)


# -------------------------------------------------------------- stage helpers


def with_relational(panel: pl.DataFrame, params: Params, log: logging.Logger) -> tuple[pl.DataFrame, dict]:
    """The panel plus the ``f_rel_*`` columns, and the metrics entry that records them."""
    spec = spec_from_params(params)
    edges = read_parquet(paths.EDGES)
    prices = read_parquet(paths.PRICES, columns=["date", "code", "close"])
    absent = sorted(set(spec.relations) - set(edges["relation"].unique().to_list()))
    if absent:  # skipped by the graph stage (no side data): their columns are empty, not an error
        log.warning("no edges of %s in %s: their relational features are empty", ", ".join(absent), paths.EDGES)
    panel, cover = add_relational_features(panel, prices, edges, spec, params.normalize.clip)
    n = len(column_names(spec))
    log.info(
        "%d relational features (%d relations x %d), neighbour features %s",
        n, len(spec.relations), n // max(len(spec.relations), 1), spec.neighbour_features,
    )
    for rel, c in cover.items():
        log.info(
            "%s: rows with in-neighbours %.1f%%, with a neighbour's 1-day return %.1f%%, mean in-degree %.2f",
            rel, 100 * c["rows_with_neighbours"], 100 * c["rows_with_neighbour_return"], c["mean_degree"],
        )
    return panel, {"relational": {"features": n, "coverage": cover}}


def log_relational_gain(importance: pl.DataFrame, log: logging.Logger) -> None:
    """Share of the total gain that went to relational features, per horizon, and the top ones at 1 day."""
    rel = pl.col("feature").str.starts_with("f_rel_")
    share = importance.group_by("horizon").agg((pl.col("gain").filter(rel).sum() / pl.col("gain").sum()).alias("share"))
    for h, s in share.sort("horizon").iter_rows():
        log.info("horizon %dd: relational features take %.1f%% of the gain", h, 100 * (s or 0.0))
    first = importance["horizon"].min()
    top = (
        importance.filter(rel & (pl.col("horizon") == first))
        .group_by("feature").agg(pl.col("gain").sum())
        .sort("gain", descending=True).head(5)
    )
    log.info("top relational features at %dd: %s", first, ", ".join(top["feature"].to_list()))
