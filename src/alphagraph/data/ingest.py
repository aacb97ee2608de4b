"""The ingest stage: the synthetic market or the user's files -> canonical raw tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from alphagraph.runtime import paths
from alphagraph.runtime.config import DataConfig, Params
from alphagraph.data.validate import validate_prices
from alphagraph.runtime.io import write_json, write_parquet
from alphagraph.runtime.log import get_logger

ORACLE_SCHEMA = {
    "date": pl.Date,
    "code": pl.Utf8,
    "alpha": pl.Float64,
    "alpha_reversal": pl.Float64,
    "alpha_momentum": pl.Float64,
    "alpha_volume_price": pl.Float64,
    "alpha_sector_spillover": pl.Float64,
    "alpha_supply_chain": pl.Float64,
}
# start/end: validity of a point-in-time row (inclusive; null = unbounded), always present.
UNIVERSE_SCHEMA = {
    "code": pl.Utf8,
    "sector": pl.Utf8,
    "industry": pl.Utf8,
    "listed": pl.Date,
    "delisted": pl.Date,
    "start": pl.Date,
    "end": pl.Date,
}
RELATIONS_SCHEMA = {
    "src": pl.Utf8,
    "dst": pl.Utf8,
    "relation": pl.Utf8,
    "weight": pl.Float64,
    "start": pl.Date,
    "end": pl.Date,
}

log = get_logger("ingest")


@dataclass(frozen=True)
class RawData:
    """The four raw tables of DESIGN.md plus what ingest counted on the way."""

    prices: pl.DataFrame
    universe: pl.DataFrame
    relations: pl.DataFrame
    oracle: pl.DataFrame
    dropped: dict[str, int]
    split_suspects: pl.DataFrame
    relations_true: pl.DataFrame | None = None  # synthetic only; no model reads it
    benchmark: pl.DataFrame | None = None  # date, return: set by ingest (data.benchmark_path or the equal-weight universe)
    benchmark_source: str = "equal_weight"
    tickers_missing: int = 0
    zero_open_rows: int = 0
    point_in_time_universe: bool = False
    point_in_time_relations: bool = False


def ingest(params: Params) -> RawData:
    """Produce the raw tables for ``params.data.source``; raises on invalid input."""
    raw = _from_synthetic(params) if params.data.source == "synthetic" else _from_files(params)
    return _with_benchmark(raw, params.data)


def _with_benchmark(raw: RawData, cfg: DataConfig) -> RawData:
    from alphagraph.data.benchmark import EQUAL_WEIGHT, check_coverage, equal_weight_benchmark, read_benchmark

    if cfg.benchmark_path is None:
        return replace(raw, benchmark=equal_weight_benchmark(raw.prices), benchmark_source=EQUAL_WEIGHT)
    if not _inside(cfg.benchmark_path, "inputs"):
        log.warning("data.benchmark_path=%s lies outside inputs/: DVC will not rerun ingest when it changes", cfg.benchmark_path)
    bench = read_benchmark(cfg.benchmark_path, cfg.date_format)
    check_coverage(bench, raw.prices["date"].min(), raw.prices["date"].max(), cfg.benchmark_path)
    return replace(raw, benchmark=bench, benchmark_source=cfg.benchmark_path)


def _from_synthetic(params: Params) -> RawData:
    from alphagraph.data.synthetic import generate_market
    from alphagraph.data.validate import detect_splits

    market = generate_market(params.data.synthetic, params.data.synthetic.market_seed)
    # The generator is trusted but not exempt: the same invariants as user data.
    prices, _ = validate_prices(market.prices, "synthetic market", "error")
    return RawData(
        prices=prices,
        universe=_conform(market.universe, UNIVERSE_SCHEMA),
        relations=_conform(market.relations, RELATIONS_SCHEMA),
        oracle=market.oracle.select(list(ORACLE_SCHEMA)),
        relations_true=_conform(market.relations_true, RELATIONS_SCHEMA),
        point_in_time_relations=True,  # supply links and fund co-holdings carry validity dates
        dropped={},
        split_suspects=detect_splits(prices, params.data.split_ratio_threshold),
    )


def _from_files(params: Params) -> RawData:
    from alphagraph.data.file_source import load_file_source

    cfg = params.data
    for key, value in (("data.path", cfg.path), ("data.universe_path", cfg.universe_path),
                       ("data.relations_path", cfg.relations_path)):
        if value is not None and not _inside(value, "inputs"):
            log.warning("%s=%s lies outside inputs/: DVC will not rerun ingest when it changes", key, value)
    src = load_file_source(cfg)
    universe = src.universe if src.universe is not None else _unknown_universe(src.prices)
    universe = _with_listing_dates(universe, src.prices)
    relations = src.relations if src.relations is not None else pl.DataFrame(schema=RELATIONS_SCHEMA)
    if len(src.split_suspects):
        log.warning(
            "%d one-day close moves beyond %.0f%% look like unadjusted splits (first: %s)",
            len(src.split_suspects),
            100 * cfg.split_ratio_threshold,
            src.split_suspects.head(3).to_dicts(),
        )
    return RawData(
        prices=src.prices,
        universe=_conform(universe, UNIVERSE_SCHEMA),
        relations=_conform(relations, RELATIONS_SCHEMA),
        # oracle.parquet is a declared DVC out, so a file source writes it empty.
        oracle=pl.DataFrame(schema=ORACLE_SCHEMA),
        dropped=dict(src.dropped),
        split_suspects=src.split_suspects,
        tickers_missing=src.tickers_missing,
        zero_open_rows=src.zero_open_rows,
        point_in_time_universe=src.point_in_time_universe,
        point_in_time_relations=src.point_in_time_relations,
    )


def _inside(path: str, folder: str) -> bool:
    return Path(folder).resolve() in Path(path).resolve().parents


def _conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """The table's columns in schema order; absent ones (validity dates of a static file) are null."""
    absent = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in frame.columns]
    return frame.with_columns(absent).select(pl.col(name).cast(dtype) for name, dtype in schema.items())


def _unknown_universe(prices: pl.DataFrame) -> pl.DataFrame:
    codes = prices.select(pl.col("code").unique().sort())
    return codes.with_columns(sector=pl.lit("unknown"), industry=pl.lit("unknown"))


def _with_listing_dates(universe: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """Fill ``listed``/``delisted`` from the first/last trading day where absent."""
    if {"listed", "delisted"} <= set(universe.columns):
        return universe
    last_day = prices["date"].max()
    spans = prices.group_by("code").agg(listed=pl.col("date").min(), last=pl.col("date").max())
    spans = spans.with_columns(
        delisted=pl.when(pl.col("last") < last_day).then(pl.col("last")).otherwise(None)
    ).drop("last")
    base = universe.drop([c for c in ("listed", "delisted") if c in universe.columns])
    order = [c for c in ("code", "start") if c in base.columns]  # point-in-time: a code has many rows
    return base.join(spans, on="code", how="inner").sort(order, nulls_last=False)


def ingest_metrics(raw: RawData, source: str) -> dict[str, Any]:
    """The flat metrics of ``metrics/ingest.json``."""
    p = raw.prices
    dropped = {f"dropped.{k}": int(v) for k, v in sorted(raw.dropped.items())}
    per_relation = raw.relations.group_by("relation").len()
    relations = {f"relations.{r}": int(n) for r, n in per_relation.sort("relation").iter_rows()}
    return {
        "source": source,
        "rows": p.height,
        "stocks": p["code"].n_unique(),
        "days": p["date"].n_unique(),
        "first_date": str(p["date"].min()),
        "last_date": str(p["date"].max()),
        "dropped_rows": int(sum(raw.dropped.values())),
        **dropped,
        "split_suspects": raw.split_suspects.height,
        "tickers_missing": raw.tickers_missing,
        "zero_open_rows": raw.zero_open_rows,
        "point_in_time_universe": raw.point_in_time_universe,
        "point_in_time_relations": raw.point_in_time_relations,
        **relations,
        "oracle_rows": raw.oracle.height,
        "benchmark": raw.benchmark_source,
    }


def write_raw(raw: RawData, metrics: dict[str, Any], metrics_path: Path) -> list[str]:
    """Write every raw table and the metrics; return the written paths."""
    outs = {
        paths.PRICES: raw.prices,
        paths.UNIVERSE: raw.universe,
        paths.RELATIONS: raw.relations,
        # Written empty for a file source: the out is declared in dvc.yaml.
        paths.RELATIONS_TRUE: raw.relations_true if raw.relations_true is not None
        else pl.DataFrame(schema=RELATIONS_SCHEMA),
        paths.ORACLE: raw.oracle,
        paths.BENCHMARK: raw.benchmark,
    }
    for path, frame in outs.items():
        write_parquet(frame, path)
    write_json(metrics, metrics_path)
    return [str(p) for p in (*outs, metrics_path)]
