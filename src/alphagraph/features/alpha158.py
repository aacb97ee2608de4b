"""Qlib's Alpha158 families: kbar, price (row-wise), rolling and volume (per stock, over windows).

Definitions follow qlib/contrib/data/loader.py (see shared/reference/alpha158.md),
including its 1e-12 guards, with two documented choices:

* Min periods: a rolling feature is null until the stock has a full window of
  its own rows: ``d`` rows for level windows (MA, STD, SLOPE, RSQR, RESI, MAX,
  MIN, QTLU/QTLD, RANK, RSV, IMAX/IMIN/IMXD, CORR, VMA, VSTD) and ``d + 1`` rows
  for windows of returns or differences and for ROC (ROC, CORD, CNT*, SUM*,
  WVMA, VSUM*). Qlib uses min_periods=1.
* SLOPE/RSQR/RESI regress close on the row index within the window; RESI is the
  residual of the last row; IMAX/IMIN are 1-based positions of the first
  extreme counted from the oldest row of the window, divided by d (Qlib's
  IdxMax/d); RANK is the percentile rank of today's close in the window with
  average ties (pandas ``rank(pct=True)``).

Non-finite results (e.g. a correlation over a constant window, a volume ratio
after a zero-volume day) become null; a window containing a non-finite input
(e.g. log(volume/previous volume + 1) after a zero-volume day) is null.
"""

from __future__ import annotations

import numpy as np

from alphagraph.features.context import ChunkData, Emit
from alphagraph.features.rolling import flat, lag, rolling_quantiles, rolling_rank, s1, s2, sk

EPS = 1e-12
# A centred sum of squares below this fraction of the raw sum of squares is rounding
# noise: the window is constant (variance 0, correlation undefined).
REL_ZERO = 1e-12


def kbar_price(o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray, families: list[str]) -> dict[str, np.ndarray]:
    """Row-wise kbar and price features (each row uses only its own OHLC)."""
    out: dict[str, np.ndarray] = {}
    if "kbar" in families:
        rng = h - l + EPS
        top = np.maximum(o, c)
        bot = np.minimum(o, c)
        out["f_kmid"] = (c - o) / o
        out["f_klen"] = (h - l) / o
        out["f_kmid2"] = (c - o) / rng
        out["f_kup"] = (h - top) / o
        out["f_kup2"] = (h - top) / rng
        out["f_klow"] = (bot - l) / o
        out["f_klow2"] = (bot - l) / rng
        out["f_ksft"] = (2 * c - h - l) / o
        out["f_ksft2"] = (2 * c - h - l) / rng
    if "price" in families:
        out["f_open0"] = o / c
        out["f_high0"] = h / c
        out["f_low0"] = l / c
        out["f_typical0"] = (h + l + c) / 3.0 / c
    return out


# ------------------------------------------------------------------ window statistics


def centred_ss(S1: np.ndarray, S2: np.ndarray, d: int) -> np.ndarray:
    """sum (x - mean)^2 over the window from centred sums; rounding noise -> exactly 0 (NaN stays NaN)."""
    ss = S2 - S1 * S1 / d
    np.putmask(ss, ss <= REL_ZERO * S2, 0.0)
    return ss


def moments(ch: ChunkData, key: str, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, centred sum of squares, S1) of a prepared series over windows of d."""

    def build():
        X, _, XX = ch.pair(key, key, d)
        S1 = flat(s1(X, d))
        S2 = flat(s2(XX, X, X, d))
        mean = ch.centers(X) + S1 / d
        return mean, centred_ss(S1, S2, d), S1

    return ch.get(f"M:{key}:{d}", build)


def corr(ch: ChunkData, kx: str, ky: str, d: int) -> np.ndarray:
    """Rolling Pearson correlation of two prepared series."""
    X, Y, XY = ch.pair(kx, ky, d)
    _, sxx, S1x = moments(ch, kx, d)
    _, syy, S1y = moments(ch, ky, d)
    sxy = flat(s2(XY, X, Y, d)) - S1x * S1y / d
    den = np.sqrt(sxx * syy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, sxy / np.where(den > 0, den, 1.0), np.nan)


def std_from_ss(ss: np.ndarray, d: int) -> np.ndarray:
    return np.sqrt(ss / (d - 1))


def _ratio_sums(ch: ChunkData, kpos: str, kneg: str, kabs: str, d: int):
    sp = flat(s1(ch.series(kpos, d), d))
    sn = flat(s1(ch.series(kneg, d), d))
    sa = flat(s1(ch.series(kabs, d), d)) + EPS
    return sp / sa, sn / sa, (sp - sn) / sa


def _log_volume_change(v: np.ndarray) -> np.ndarray:
    """log(volume / previous volume + 1): inf or NaN after a zero-volume day (such windows are null)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(v / lag(v, 1) + 1.0)


def prepare_returns(ch: ChunkData) -> None:
    ch.summed("ret", lambda: ch.ret, lead=1, finite=True)


def rolling_family(ch: ChunkData, windows: list[int], emit: Emit) -> None:
    c, v = ch.c, ch.v
    ch.summed("close", lambda: c, center=True, finite=True)
    ch.summed("logvol", lambda: np.log(v + 1.0), center=True, finite=True)
    prepare_returns(ch)
    ch.summed("dlogvol", lambda: _log_volume_change(v), lead=1)
    dc = ch.dclose
    ch.summed("up", finite=True, build=lambda: (dc > 0).astype(np.float64), lead=1)
    ch.summed("down", finite=True, build=lambda: (dc < 0).astype(np.float64), lead=1)
    ch.summed("gain", finite=True, build=lambda: np.maximum(dc, 0.0), lead=1)
    ch.summed("loss", finite=True, build=lambda: np.maximum(-dc, 0.0), lead=1)
    ch.summed("absdiff", finite=True, build=lambda: np.abs(dc), lead=1)
    hi = ch.extremes("high", "max")
    lo = ch.extremes("low", "min")
    ranks = rolling_rank(c, windows)
    for d in windows:
        kbar = (d - 1) / 2.0
        emit(f"f_roc_{d}", lag(c, d) / c, d)
        mean, ss, S1 = moments(ch, "close", d)
        emit(f"f_ma_{d}", mean / c, d - 1)
        emit(f"f_std_{d}", std_from_ss(ss, d) / c, d - 1)
        sxy = flat(sk(ch.series("close", d), d)) - kbar * S1
        sxx = d * (d * d - 1) / 12.0
        slope = sxy / sxx
        emit(f"f_slope_{d}", slope / c, d - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            emit(f"f_rsqr_{d}", np.where(ss > 0, sxy * sxy / (sxx * np.where(ss > 0, ss, 1.0)), np.nan), d - 1)
        emit(f"f_resi_{d}", (c - (mean + slope * kbar)) / c, d - 1)
        mx, imx = hi.query(d)
        mn, imn = lo.query(d)
        emit(f"f_max_{d}", mx / c, d - 1)
        emit(f"f_min_{d}", mn / c, d - 1)
        qu, qd = rolling_quantiles(c, d, [0.8, 0.2])
        emit(f"f_qtlu_{d}", qu / c, d - 1)
        emit(f"f_qtld_{d}", qd / c, d - 1)
        emit(f"f_rank_{d}", ranks[d], d - 1)
        emit(f"f_rsv_{d}", (c - mn) / (mx - mn + EPS), d - 1)
        emit(f"f_imax_{d}", (imx + 1.0) / d, d - 1)
        emit(f"f_imin_{d}", (imn + 1.0) / d, d - 1)
        emit(f"f_imxd_{d}", (imx - imn) / d, d - 1)
        emit(f"f_corr_close_volume_{d}", corr(ch, "close", "logvol", d), d - 1)
        emit(f"f_corr_ret_volchg_{d}", corr(ch, "ret", "dlogvol", d), d)
        cntp = flat(s1(ch.series("up", d), d)) / d
        cntn = flat(s1(ch.series("down", d), d)) / d
        emit(f"f_cntp_{d}", cntp, d)
        emit(f"f_cntn_{d}", cntn, d)
        emit(f"f_cntd_{d}", cntp - cntn, d)
        sp, sn, sd = _ratio_sums(ch, "gain", "loss", "absdiff", d)
        emit(f"f_sump_{d}", sp, d)
        emit(f"f_sumn_{d}", sn, d)
        emit(f"f_sumd_{d}", sd, d)
    ch.drop("high", "low", "close", "logvol", "up", "down", "gain", "loss", "absdiff", "dlogvol")


def volume_family(ch: ChunkData, windows: list[int], emit: Emit) -> None:
    v = ch.v
    ch.summed("vol", lambda: v, center=True, finite=True)
    prepare_returns(ch)
    ch.summed("wvol", finite=True, build=lambda: np.abs(ch.ret) * v, lead=1)
    dv = ch.dvol
    ch.summed("vgain", finite=True, build=lambda: np.maximum(dv, 0.0), lead=1)
    ch.summed("vloss", finite=True, build=lambda: np.maximum(-dv, 0.0), lead=1)
    ch.summed("vabs", finite=True, build=lambda: np.abs(dv), lead=1)
    for d in windows:
        mean, ss, _ = moments(ch, "vol", d)
        emit(f"f_vma_{d}", mean / (v + EPS), d - 1)
        emit(f"f_vstd_{d}", std_from_ss(ss, d) / (v + EPS), d - 1)
        wmean, wss, _ = moments(ch, "wvol", d)
        emit(f"f_wvma_{d}", std_from_ss(wss, d) / (wmean + EPS), d)
        sp, sn, sd = _ratio_sums(ch, "vgain", "vloss", "vabs", d)
        emit(f"f_vsump_{d}", sp, d)
        emit(f"f_vsumn_{d}", sn, d)
        emit(f"f_vsumd_{d}", sd, d)
        with np.errstate(divide="ignore", invalid="ignore"):
            emit(f"f_abvol_{d}", v / lag(mean, 1), d)
    ch.drop("vol", "wvol", "vgain", "vloss", "vabs")


__all__ = ["kbar_price", "rolling_family", "volume_family", "moments", "corr", "std_from_ss"]
