"""The top-k backtest's benchmark: the equal-weight universe, or a user's index file (``data.benchmark_path``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from alphagraph.data.file_source import read_table
from alphagraph.data.validate import DataError, coerce_numeric, parse_dates

SCHEMA = {"date": pl.Date, "return": pl.Float64}
EQUAL_WEIGHT = "equal_weight"


def equal_weight_benchmark(prices: pl.DataFrame) -> pl.DataFrame:
    """``date, return``: the mean close-to-close return of the stocks that traded on a day and the market day before."""
    cal = prices.select(pl.col("date").unique().sort()).with_row_index("t")
    px = prices.select("date", "code", "close").join(cal, on="date")
    prev = px.select("code", (pl.col("t") + 1).alias("t"), pl.col("close").alias("prev"))
    rets = px.join(prev, on=["code", "t"], how="inner").select("date", r=pl.col("close") / pl.col("prev") - 1)
    daily = rets.group_by("date").agg(pl.col("r").mean().alias("return"))
    return cal.select("date").join(daily, on="date", how="left").sort("date").with_columns(pl.col("return").cast(pl.Float64))


def read_benchmark(path: str | Path, date_format: str | None = None) -> pl.DataFrame:
    """A user's index file (CSV or Parquet; columns ``date`` and ``close`` or ``return``) -> ``date, return``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: benchmark file not found (data.benchmark_path)")
    frame = read_table(path)
    lower = {c.strip().lower(): c for c in frame.columns}
    value = next((lower[c] for c in ("close", "return") if c in lower), None)
    if "date" not in lower or value is None:
        raise DataError(
            f"{path}: a benchmark needs a date column and a close (index level) or return column;"
            f" found {', '.join(frame.columns) or 'none'}"
        )
    source = f"{path}"
    frame = frame.select(pl.col(lower["date"]).alias("date"), pl.col(value).alias("value"))
    frame = parse_dates(frame, "date", date_format, source)
    frame = coerce_numeric(frame, ["value"], source, "error", context=("date",)).select("date", "value")
    bad = frame.filter(pl.col("date").is_null() | pl.col("value").is_null() | ~pl.col("value").is_finite())
    if bad.height:
        raise DataError(f"{path}: {bad.height} row(s) with an empty date or a missing/non-finite {value}, first: {bad.row(0)}")
    if frame["date"].is_duplicated().any():
        dup = frame.filter(pl.col("date").is_duplicated())["date"][0]
        raise DataError(f"{path}: date {dup} appears more than once")
    frame = frame.sort("date")
    if value == lower.get("close"):
        if (frame["value"] <= 0).any():
            raise DataError(f"{path}: column {value}: index levels must be > 0, first bad date {frame.filter(pl.col('value') <= 0)['date'][0]}")
        frame = frame.select("date", (pl.col("value") / pl.col("value").shift(1) - 1).alias("return"))
    else:
        if (frame["value"] <= -1).any():
            raise DataError(f"{path}: column {value}: a daily return <= -1 (a total loss) on {frame.filter(pl.col('value') <= -1)['date'][0]}")
        frame = frame.rename({"value": "return"})
    if frame.height < 2:
        raise DataError(f"{path}: a benchmark needs at least 2 days, got {frame.height}")
    return frame.with_columns(pl.col("return").cast(pl.Float64))
