"""Market regimes per date from past prices, and loss weights that give every regime of a fold's training dates equal weight.

With W = ``train.regime_window`` and the market calendar of the prices:

- r_i,t: the stock's close-to-close return from the previous market day (none
  when it did not trade on both), m_t: the equal-weight mean of the r_i,t of t
  (as :func:`alphagraph.evaluation.wins.market_returns`);
- ``vol_t``: standard deviation (ddof=1) of m over the last W market days up to
  and including t, defined once all W have a market return;
- ``corr_t``: mean over stocks of corr(r_i, m) over the same W days, for the
  stocks with at least ``max(3, W // 2)`` returns in them.

Both read prices dated <= t only (the close of t is known at t); the forward
returns and labels of the panel are never read. :func:`regime_weights` then
splits the fold's training dates at the medians of ``vol`` and ``corr`` over
those training dates (high = above the median): four regimes, low/high vol x
low/high correlation. A training date of regime r gets the loss weight
``1 / (K * share_r)``, K the number of regimes present and share_r the share of
the classified training dates in r: every regime then carries the same total
weight and the weights average 1. Training dates without statistics (the first
W market days) and every non-training date get weight 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from alphagraph.runtime.errors import UserError
from alphagraph.runtime.log import get_logger

REGIMES = ("low_vol_low_corr", "low_vol_high_corr", "high_vol_low_corr", "high_vol_high_corr")  # code 2 * high_vol + high_corr
CHUNK = 512  # stocks per block: memory [dates, CHUNK] per array

log = get_logger("regimes")


def _window_sum(a: np.ndarray, window: int) -> np.ndarray:
    """Sum over the last ``window`` rows up to and including each row (fewer at the start), from prefix sums."""
    cs = np.concatenate([np.zeros((1, *a.shape[1:])), np.cumsum(a, axis=0)])
    t = np.arange(1, a.shape[0] + 1)
    return cs[t] - cs[np.maximum(t - window, 0)]


def close_matrix(prices: pl.DataFrame) -> tuple[pl.Series, np.ndarray]:
    """(market dates, closes [dates, stocks] float64, NaN where the stock did not trade).

    Stocks are ordered by their first date, then code: a stock that appears
    after t lands after every stock of t, so sums over stocks up to t never
    see it (not even in their rounding).
    """
    cal = prices["date"].unique().sort()
    order = prices.group_by("code").agg(pl.col("date").min().alias("first")).sort("first", "code")
    ids = order.select("code").with_row_index("c")
    c = prices.select("code").join(ids, on="code", how="left", maintain_order="left")["c"].to_numpy()
    close = np.full((cal.len(), ids.height), np.nan)
    close[cal.search_sorted(prices["date"]).to_numpy(), c] = prices["close"].cast(pl.Float64).to_numpy()
    return cal, close


def _returns(close: np.ndarray) -> np.ndarray:
    """Close-to-close returns from the previous market day (NaN where the stock lacks either close)."""
    ret = np.full(close.shape, np.nan)
    ret[1:] = close[1:] / close[:-1] - 1
    return np.where(np.isfinite(ret), ret, np.nan)


def _row_sum(a: np.ndarray) -> np.ndarray:
    """Sum over stocks, left to right: trailing zero columns (stocks listed later) leave it bit-identical."""
    return np.cumsum(a, axis=1)[:, -1] if a.shape[1] else np.zeros(a.shape[0])


def market_state(prices: pl.DataFrame, window: int) -> pl.DataFrame:
    """``date, market_ret, vol, corr`` for every date of ``prices`` (null where not yet defined); see the module docstring."""
    if window < 2:
        raise ValueError(f"train.regime_window must be >= 2, got {window}")
    cal, close = close_matrix(prices)
    n_t, n_stocks = close.shape
    blocks = [slice(lo, min(lo + CHUNK, n_stocks)) for lo in range(0, n_stocks, CHUNK)]
    total, count = np.zeros(n_t), np.zeros(n_t)
    for b in blocks:  # stocks in blocks: memory [dates, CHUNK] per array
        r = _returns(close[:, b])
        total += _row_sum(np.nan_to_num(r))
        count += _row_sum(np.isfinite(r).astype(np.float64))
    mkt = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    has = np.isfinite(mkt)
    m0 = np.where(has, mkt, 0.0)
    n = _window_sum(has.astype(np.float64), window)
    s1, s2 = _window_sum(m0, window), _window_sum(m0 * m0, window)
    full = n == window
    vol = np.where(full, np.sqrt(np.maximum(s2 - s1 * s1 / window, 0.0) / (window - 1)), np.nan)

    min_obs = max(3, window // 2)
    corr_sum, corr_n = np.zeros(n_t), np.zeros(n_t)
    for b in blocks:
        r = _returns(close[:, b])
        v = np.isfinite(r) & has[:, None]
        rz, mz = np.where(v, r, 0.0), np.where(v, m0[:, None], 0.0)
        k = _window_sum(v.astype(np.float64), window)
        sr, sm = _window_sum(rz, window), _window_sum(mz, window)
        cov = k * _window_sum(rz * mz, window) - sr * sm
        var = (k * _window_sum(rz * rz, window) - sr * sr) * (k * _window_sum(mz * mz, window) - sm * sm)
        ok = (k >= min_obs) & (var > 1e-30)
        corr_sum += _row_sum(np.where(ok, cov / np.sqrt(np.where(ok, var, 1.0)), 0.0))
        corr_n += _row_sum(ok.astype(np.float64))
    corr = np.where(full & (corr_n > 0), corr_sum / np.maximum(corr_n, 1), np.nan)
    return pl.DataFrame({"date": cal}).with_columns(
        market_ret=pl.Series(mkt).fill_nan(None), vol=pl.Series(vol).fill_nan(None), corr=pl.Series(corr).fill_nan(None)
    )


def regime_weights(state: pl.DataFrame, train_dates: Sequence[Any] | np.ndarray, window: int | None = None) -> pl.DataFrame:
    """``date, regime, weight`` for every date of ``state`` (:func:`market_state`).

    ``regime`` (Int8, index into :data:`REGIMES`, null where undefined) uses
    thresholds from ``train_dates`` only; ``weight`` is the loss weight of a
    training date, 1 elsewhere (see the module docstring).
    """
    dates = pl.Series("date", np.asarray(train_dates, dtype="datetime64[D]")).cast(pl.Date)
    is_train = pl.col("date").is_in(dates.implode())
    defined = pl.col("vol").is_not_null() & pl.col("corr").is_not_null()
    train = state.filter(is_train & defined)
    if train.height == 0:
        raise UserError(
            f"train.regime_weighting: no training date has {window or 'regime_window'} market days of past returns"
            " in the prices; lower train.regime_window"
        )
    vol_med, corr_med = train["vol"].median(), train["corr"].median()
    regime = (2 * (pl.col("vol") > vol_med).cast(pl.Int8) + (pl.col("corr") > corr_med).cast(pl.Int8)).cast(pl.Int8)
    out = state.select("date", pl.when(defined).then(regime).alias("regime"), is_train.alias("_train"))
    counts = out.filter(pl.col("_train") & pl.col("regime").is_not_null()).group_by("regime").len()
    shares = counts.with_columns(share=pl.col("len") / pl.col("len").sum())
    k = shares.height
    table = shares.select("regime", (1.0 / (k * pl.col("share"))).alias("_w"))
    out = out.join(table, on="regime", how="left").with_columns(
        weight=pl.when(pl.col("_train") & pl.col("_w").is_not_null()).then(pl.col("_w")).otherwise(1.0)
    )
    summary = {REGIMES[r]: (n, round(1.0 / (k * n / train.height), 3)) for r, n in counts.sort("regime").iter_rows()}
    log.info("regime weighting over %d training dates (days, weight): %s", train.height, summary)
    return out.select("date", "regime", "weight").sort("date")


def row_weights(panel: pl.DataFrame, prices: pl.DataFrame, train_dates: Sequence[Any] | np.ndarray, window: int) -> np.ndarray:
    """Float32 [rows]: each panel row's loss weight, its date's :func:`regime_weights` weight (1 for dates without one)."""
    weights = regime_weights(market_state(prices, window), train_dates, window).select("date", "weight")
    rows = panel.select("date").with_row_index("_r").join(weights, on="date", how="left").sort("_r")
    return rows["weight"].fill_null(1.0).to_numpy().astype(np.float32)
