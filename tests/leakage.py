"""A reusable future-leakage harness (DESIGN.md, "Information set and leakage").

Every stage that builds inputs must pass the same check: change or delete all
data after a date t, rerun, and every output row dated <= t is identical.

    from tests.leakage import perturb_after, truncate_after, assert_unchanged_through

    base = build(prices)
    assert_unchanged_through(base, build(perturb_after(prices, t, seed=1)), t)
    assert_unchanged_through(base, build(truncate_after(prices, t)), t)

``toy_prices`` makes a small panel with the awkward cases (late listing,
delisting, suspensions) for such tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import polars as pl

PRICE_COLUMNS = ("open", "high", "low", "close")


def _as_date(t) -> dt.date:
    if isinstance(t, dt.datetime):
        return t.date()
    if isinstance(t, dt.date):
        return t
    if isinstance(t, np.datetime64):
        return t.astype("datetime64[D]").astype(dt.date)
    if isinstance(t, str):
        return dt.date.fromisoformat(t)
    raise TypeError(f"not a date: {t!r}")


def perturb_after(prices: pl.DataFrame, t, seed: int = 0, low: float = 0.5, high: float = 2.0) -> pl.DataFrame:
    """Every row dated after ``t`` gets random new prices and volume.

    Open, high, low and close of a row are multiplied by one random factor in
    [low, high) (so low <= open, close <= high still holds), and volume by another
    (kept >= 0 and rounded like share counts). Rows dated <= t are untouched.
    Any other numeric column is left as is.
    """
    t = _as_date(t)
    rng = np.random.default_rng(seed)
    n = prices.height
    price_factor = pl.Series(rng.uniform(low, high, n))
    volume_factor = pl.Series(rng.uniform(low, high, n))
    after = pl.col("date") > t
    exprs = [
        pl.when(after).then(pl.col(c) * price_factor).otherwise(pl.col(c)).alias(c)
        for c in PRICE_COLUMNS
        if c in prices.columns
    ]
    if "volume" in prices.columns:
        exprs.append(
            pl.when(after)
            .then((pl.col("volume") * volume_factor).round(0))
            .otherwise(pl.col("volume"))
            .cast(prices.schema["volume"])
            .alias("volume")
        )
    return prices.with_columns(exprs)


def truncate_after(prices: pl.DataFrame, t) -> pl.DataFrame:
    """Drop every row dated after ``t`` (as if the data ended at t)."""
    return prices.filter(pl.col("date") <= _as_date(t))


def _column_mismatch(a: pl.Series, b: pl.Series) -> str | None:
    """None if equal (exactly; null == null, NaN == NaN), else a description."""
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} vs {b.dtype}"
    na, nb = a.is_null().to_numpy(), b.is_null().to_numpy()
    if not np.array_equal(na, nb):
        i = int(np.argmax(na != nb))
        return f"null at row {i}: {a[i]!r} vs {b[i]!r}"
    if a.dtype.is_float():
        x = a.fill_null(0.0).to_numpy()
        y = b.fill_null(0.0).to_numpy()
        same = (x == y) | (np.isnan(x) & np.isnan(y))
    else:
        same = (a == b).fill_null(True).to_numpy()
    if not same.all():
        i = int(np.argmin(same))
        return f"row {i}: {a[i]!r} vs {b[i]!r}"
    return None


def assert_unchanged_through(
    before: pl.DataFrame,
    after: pl.DataFrame,
    t,
    keys: Iterable[str] = ("date", "code"),
    exclude: Iterable[str] = (),
) -> None:
    """Every row dated <= ``t`` is in both frames with exactly the same values.

    Rows are matched on ``keys``; all other columns except ``exclude`` are
    compared exactly (null == null, NaN == NaN, no tolerance). Raises
    AssertionError naming the first differing column, key and values.
    """
    t = _as_date(t)
    keys = list(keys)
    exclude = set(exclude)
    cols_b = [c for c in before.columns if c not in exclude]
    cols_a = [c for c in after.columns if c not in exclude]
    assert set(cols_b) == set(cols_a), (
        f"columns differ: only before {sorted(set(cols_b) - set(cols_a))}, only after {sorted(set(cols_a) - set(cols_b))}"
    )
    b = before.filter(pl.col("date") <= t).select(cols_b).sort(keys)
    a = after.filter(pl.col("date") <= t).select(cols_b).sort(keys)
    assert b.height > 0, f"no rows dated <= {t}: the check would be vacuous"
    assert b.height == a.height, f"rows dated <= {t}: {b.height} before vs {a.height} after"
    for k in keys:
        mismatch = _column_mismatch(b[k], a[k])
        assert mismatch is None, f"row keys differ in {k!r}: {mismatch}"
    for col in cols_b:
        if col in keys:
            continue
        mismatch = _column_mismatch(b[col], a[col])
        if mismatch is not None:
            row = int(mismatch.split("row ")[1].split(":")[0]) if "row " in mismatch else 0
            where = {k: b[k][row] for k in keys}
            raise AssertionError(f"{col!r} changed for a row dated <= {t} ({where}): {mismatch}")


def toy_prices(n_stocks: int = 8, n_days: int = 260, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A small random-walk OHLCV panel with the awkward cases, sorted by (date, code).

    Business days from 2020-01-01. Stock 1 lists late (day 100), stock 2 delists
    (after day 180), stock 3 has suspensions (days 50-54 and 120-121 missing),
    stock 4 lists in the last 15 days; the rest trade every day. Universe: three
    sectors; the last stock is missing from the universe.
    """
    rng = np.random.default_rng(seed)
    days = np.busday_offset(np.datetime64("2020-01-01"), np.arange(n_days), roll="forward")
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (n_days, n_stocks)), axis=0)) * rng.uniform(0.5, 3, n_stocks)
    open_ = close * np.exp(rng.normal(0, 0.006, close.shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.01, close.shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.01, close.shape)))
    volume = np.round(np.exp(rng.normal(11, 0.6, close.shape)))
    present = np.ones((n_days, n_stocks), dtype=bool)
    if n_stocks > 1:
        present[:100, 1] = False
    if n_stocks > 2:
        present[181:, 2] = False
    if n_stocks > 3:
        present[50:55, 3] = False
        present[120:122, 3] = False
    if n_stocks > 4:
        present[: n_days - 15, 4] = False
    di, si = np.nonzero(present)
    codes = np.array([f"C{i:02d}" for i in range(n_stocks)])
    prices = pl.DataFrame(
        {
            "date": days[di],
            "code": codes[si],
            "open": open_[di, si],
            "high": high[di, si],
            "low": low[di, si],
            "close": close[di, si],
            "volume": volume[di, si],
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    keep = codes[: max(1, n_stocks - 1)] if n_stocks > 1 else codes
    universe = pl.DataFrame(
        {
            "code": keep,
            "sector": [f"S{i % 3}" for i in range(len(keep))],
            "industry": [f"I{i % 5}" for i in range(len(keep))],
        }
    )
    return prices.sort("date", "code"), universe
