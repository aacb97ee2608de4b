"""Families beyond Alpha158: market/sector-relative returns, beta to the market, technicals.

relative
    ``ret_k`` is the stock's simple return over its last k rows, close(t)/close(t-k rows) - 1.
    ``f_mkt_excess_ret_k`` = ret_k - (equal-weight mean of ret_k over all stocks that have
    one on date t); ``f_sector_excess_ret_k`` the same within the stock's sector on date t
    (from its universe row valid on t; null when it has none). Both use only the
    cross-section of date t.
    ``f_beta_mkt_d`` = cov(r, m) / var(m) over the stock's last d daily returns r, with m the
    market return of the same dates (equal-weight mean daily return of the date). Over a
    suspension the stock's return spans the gap while m is the market's return of the day
    it resumes.
technical
    RSI, ATR: EMAs with alpha = 1/14 (Wilder), ``adjust=False``, started at the first
    return; null until 14 returns (15 rows). MACD: EMA(12) - EMA(26) of close (started
    at the first row, null until 26 rows), signal = EMA(9) of that line (null until 34
    rows), all divided by close. rvol_d: standard deviation (ddof=1) of the last d daily
    returns. vol_regime_10_60 = rvol_10 / rvol_60.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alphagraph.features.alpha158 import moments, std_from_ss
from alphagraph.features.context import ChunkData, Emit
from alphagraph.features.families import (
    ATR_WINDOW,
    MACD_FAST,
    MACD_SIGNAL,
    MACD_SLOW,
    RSI_WINDOW,
    VOL_REGIME,
)
from alphagraph.features.rolling import ema, flat, lag, s1, s2


def relative_chunk(ch: ChunkData, windows: list[int], horizons: list[int], emit: Emit, emit_tmp: Emit) -> None:
    """Per-stock part of the relative family: k-row returns (to be demeaned) and beta."""
    c = ch.c
    for k in horizons:
        emit_tmp(f"ret_{k}", c / lag(c, k) - 1.0, k)
    ch.summed("ret", lambda: ch.ret, lead=1, finite=True)
    ch.summed("mkt", lambda: ch.m, lead=1)
    for d in windows:
        R, M, RM = ch.pair("ret", "mkt", d)
        _, smm, S1m = moments(ch, "mkt", d)
        S1r = flat(s1(R, d))
        srm = flat(s2(RM, R, M, d)) - S1r * S1m / d
        with np.errstate(invalid="ignore", divide="ignore"):
            beta = np.where(smm > 0, srm / np.where(smm > 0, smm, 1.0), np.nan)
        emit(f"f_beta_mkt_{d}", beta, d)
    ch.drop("mkt")


def technical_family(ch: ChunkData, windows: list[int], emit: Emit) -> None:
    c, h, l = ch.c, ch.h, ch.l
    dc = ch.dclose
    a = 1.0 / RSI_WINDOW
    gain = ema(np.maximum(dc, 0.0), a, start=1)
    loss = ema(np.maximum(-dc, 0.0), a, start=1)
    tot = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        emit(f"f_rsi_{RSI_WINDOW}", np.where(tot > 0, gain / np.where(tot > 0, tot, 1.0), np.nan), RSI_WINDOW)
    fast = ema(c, 2.0 / (MACD_FAST + 1), 0)
    slow = ema(c, 2.0 / (MACD_SLOW + 1), 0)
    line = fast - slow
    signal = ema(line, 2.0 / (MACD_SIGNAL + 1), 0)
    emit("f_macd", line / c, MACD_SLOW - 1)
    emit("f_macd_signal", signal / c, MACD_SLOW + MACD_SIGNAL - 2)
    emit("f_macd_hist", (line - signal) / c, MACD_SLOW + MACD_SIGNAL - 2)
    cp = lag(c, 1)
    tr = np.maximum(h - l, np.maximum(np.abs(h - cp), np.abs(l - cp)))
    atr = ema(tr, 1.0 / ATR_WINDOW, start=1)
    emit(f"f_atr_{ATR_WINDOW}", atr / c, ATR_WINDOW)
    ch.summed("ret", lambda: ch.ret, lead=1, finite=True)
    vols: dict[int, np.ndarray] = {}
    short, long = VOL_REGIME
    for d in sorted(set(windows) | {short, long}):
        _, ss, _ = moments(ch, "ret", d)
        vols[d] = std_from_ss(ss, d)
    for d in windows:
        emit(f"f_rvol_{d}", vols[d], d)
    with np.errstate(invalid="ignore", divide="ignore"):
        emit(f"f_vol_regime_{short}_{long}", vols[short] / vols[long], long)


def cross_section_means(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean of the finite ``values`` per group (a date, or a date x sector cell).

    ``np.bincount`` adds the values of a group one by one in panel row order, so a
    date's mean is bit-for-bit the same whatever other dates the panel holds (the
    leakage tests compare exactly). NaN where a group has no finite value.
    """
    ok = np.isfinite(values)
    g = group[ok]
    sums = np.bincount(g, weights=values[ok], minlength=n_groups)
    counts = np.bincount(g, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def relative_means(
    r: np.ndarray, date_idx: np.ndarray, n_dates: int, row_sector: np.ndarray, n_sectors: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-date mean of the k-row returns ``r`` and per-(date, sector) mean (None without sectors)."""
    mkt = cross_section_means(r, date_idx, n_dates)
    if not n_sectors:
        return mkt, None
    has_sector = row_sector >= 0
    cell = date_idx * n_sectors + np.maximum(row_sector, 0)
    return mkt, cross_section_means(np.where(has_sector, r, np.nan), cell, n_dates * n_sectors)


def relative_post(
    tmp: dict[str, np.ndarray], horizons: list[int], date_idx: np.ndarray, n_dates: int,
    row_sector: np.ndarray, write: Callable[[str, np.ndarray], None],
    means: dict[int, tuple[np.ndarray, np.ndarray | None]] | None = None, n_sectors: int | None = None,
) -> None:
    """Cross-sectional part of the relative family, from the per-row k-row returns.

    ``row_sector``: sector id of every row (the stock's sector on that row's date, so a
    stock that changes sector moves between cells), -1 where it has no sector then.
    ``means``: the per-date and per-(date, sector) means of every horizon when they were
    computed on a larger panel than these rows (a block of stocks; see
    :func:`relative_means`), else computed here from the rows.
    """
    if n_sectors is None:
        n_sectors = int(row_sector.max()) + 1 if len(row_sector) else 0
    has_sector = row_sector >= 0
    cell = date_idx * max(n_sectors, 1) + np.maximum(row_sector, 0)
    for k in horizons:
        r = tmp.pop(f"ret_{k}")
        mkt, sec = means[k] if means is not None else relative_means(r, date_idx, n_dates, row_sector, n_sectors)
        write(f"f_mkt_excess_ret_{k}", r - mkt[date_idx])
        if sec is not None:
            sec_row = np.where(has_sector, sec[cell], np.nan)
        else:
            sec_row = np.full(len(r), np.nan)
        write(f"f_sector_excess_ret_{k}", r - sec_row)
