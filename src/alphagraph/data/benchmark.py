"""The top-k backtest's benchmark: the equal-weight universe, or a user's index file (``data.benchmark_path``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from alphagraph.data.file_source import read_table
from alphagraph.data.validate import DataError, coerce_numeric, parse_dates
from alphagraph.runtime.log import get_logger

log = get_logger("data.benchmark")

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


def check_coverage(bench: pl.DataFrame, first: dt.date, last: dt.date, path: str | Path) -> None:
    """The index must reach the prices' last day ``last``; one that starts after ``first`` is a warning.

    The top-k backtest needs the index's return on every day of the test windows.
    Ingest does not know the split (its params are ``data``), but every scheme's
    last test window ends on the data's last day, so an index that stops earlier
    always fails. A test window may start well after the data's first day
    (walk-forward: after the training and validation windows), so an index that
    starts late is often fine; the backtest stops, naming the day, where it is not.
    """
    b_first, b_last = bench["date"].min(), bench["date"].max()
    if b_last < first or b_first > last:
        raise DataError(
            f"{path}: the benchmark's dates {b_first}..{b_last} do not overlap the prices' {first}..{last}"
            " (data.benchmark_path)"
        )
    if b_last < last:
        raise DataError(
            f"{path}: the benchmark index ends on {b_last}, before the prices' last day {last}"
            " (data.benchmark_path): the top-k backtest needs the index's return on every day of the"
            f" test windows, and the last one ends on the data's last day. Extend the index to {last},"
            f" set data.end: {b_last} to stop the prices there too, or set data.benchmark_path: null"
            " (the equal-weight universe)"
        )
    if b_first > first:
        log.warning(
            "%s: the benchmark index starts on %s, after the prices' first day %s (data.benchmark_path):"
            " the top-k backtest will stop if a test window starts before %s; extend the index back to"
            " %s, or set data.start: %s",
            path, b_first, first, b_first, first, b_first,
        )
