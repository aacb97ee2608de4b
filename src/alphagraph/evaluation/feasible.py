"""The feasible ceiling: the planted components of the synthetic market recomputed from what a model sees.

The oracle (:mod:`alphagraph.evaluation.oracle`) knows latent things: the true links, the
GARCH volatility and the strengths m_k(t). Here every input is observable at
the close of t: prices, volumes, the sectors and the *observed* relations file.
The functional forms and constants of ``synthetic._Dynamics`` are known, the
latent states are not (docs/synthetic_market.md, "Two ceilings").

Two combinations of the per-date z-scores z_k(t):

* ``static``: sigma(t) * sum_k a_k z_k(t) with the configured strengths a_k;
* ``rolling``: sigma(t) * sum_k b_k(t) z_k(t), b_k(t) an exponentially decayed mean of
  past per-date cross-sectional OLS slopes of the vol-scaled realized label on z_k,
  using only labels realized by the close of t.

Everything is on a (T, n) date x stock grid; only recursions loop over days,
vectorized over the stocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from alphagraph.runtime.config import FeasibleConfig, SignalConfig
from alphagraph.data.synthetic import COMPONENTS, _Dynamics
from alphagraph.evaluation.evaluate import daily_ic
from alphagraph.evaluation.oracle import signal_predictions
from alphagraph.evaluation.split import Fold, validation_before_test

VARIANTS: tuple[str, ...] = ("static", "rolling")
# A date's regression needs clearly more stocks than regressors (5 slopes and an intercept).
MIN_REGRESSION_STOCKS = 12


@dataclass(frozen=True)
class Grid:
    """Prices on the (T, n) grid of the trading calendar x codes; NaN where a stock did not trade."""

    dates: pl.Series  # (T,) Date
    codes: list[str]  # (n,)
    traded: np.ndarray  # (T, n) bool
    log_close: np.ndarray  # (T, n)
    log_volume: np.ndarray  # (T, n)


@dataclass(frozen=True)
class Components:
    """The five z-scored components (K, T, n) and the vol estimates, all known at the close of t."""

    grid: Grid
    z: np.ndarray  # (K, T, n), 0 where not traded
    scale: np.ndarray  # (T, n) estimated idiosyncratic vol of the next return, NaN where not traded


# --------------------------------------------------------------------------- grid


def price_grid(prices: pl.DataFrame) -> Grid:
    """Scatter ``prices`` onto the (date, code) grid; the calendar is every date some stock traded."""
    dates = prices["date"].unique().sort()
    codes = prices["code"].unique().sort()
    t = np.searchsorted(dates.to_numpy(), prices["date"].to_numpy())
    i = np.searchsorted(codes.to_numpy(), prices["code"].to_numpy())
    shape = (len(dates), len(codes))
    traded = np.zeros(shape, dtype=bool)
    traded[t, i] = True
    log_close = np.full(shape, np.nan)
    log_close[t, i] = np.log(np.maximum(prices["close"].cast(pl.Float64).to_numpy(), 1e-12))
    log_volume = np.full(shape, np.nan)
    # Volume 0 (a vendor placeholder) would be -inf: one share is the floor.
    log_volume[t, i] = np.log(np.maximum(prices["volume"].cast(pl.Float64).fill_null(1.0).to_numpy(), 1.0))
    return Grid(dates, codes.to_list(), traded, log_close, log_volume)


def _previous_traded(traded: np.ndarray) -> np.ndarray:
    """(T, n) index of the stock's previous traded day before t (-1: none)."""
    T = traded.shape[0]
    idx = np.where(traded, np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # last traded day <= t
    return np.vstack([np.full((1, traded.shape[1]), -1), last[:-1]])


def log_returns(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Observed log return since the previous traded day and its gap in days; NaN / 0 where undefined."""
    prev = _previous_traded(grid.traded)
    ok = grid.traded & (prev >= 0)
    cols = np.broadcast_to(np.arange(grid.traded.shape[1]), prev.shape)
    before = grid.log_close[np.maximum(prev, 0), cols]
    r = np.where(ok, grid.log_close - before, np.nan)
    gap = np.where(ok, np.arange(len(prev))[:, None] - prev, 0)
    return r, gap


# --------------------------------------------------------------------- volatility


def garch_filter(x: np.ndarray, seen: np.ndarray, a: float, b: float, prior_obs: float) -> np.ndarray:
    """(T + 1, n) variance forecasts: row t uses x of days < t only.

    v(t+1) = (1 - a - b) L(t) + a x(t) + b v(t) on the days a stock has an
    observation ``x`` (a squared daily return), unchanged otherwise. L is the
    long-run variance, unknown per stock: the stock's running mean of x shrunk
    to the pooled running mean with ``prior_obs`` pseudo-observations (a stock
    without an observation yet gets the pooled mean).
    """
    T, n = x.shape
    xs = np.where(seen, x, 0.0)
    own_sum = np.cumsum(xs, axis=0)
    own_cnt = np.cumsum(seen, axis=0).astype(np.float64)
    pooled = np.cumsum(xs.sum(axis=1)) / np.maximum(np.cumsum(seen.sum(axis=1)), 1)
    long_run = (own_sum + prior_obs * pooled[:, None]) / (own_cnt + prior_obs)  # includes day t
    v = np.empty((T + 1, n))
    v[0] = np.nan
    state = np.full(n, np.nan)
    for t in range(T):
        s = seen[t]
        fresh = s & np.isnan(state)
        state = np.where(fresh, long_run[t], state)  # a stock's first observation starts it
        upd = s & ~fresh
        state = np.where(upd, (1 - a - b) * long_run[t] + a * x[t] + b * state, state)
        # A stock without an observation yet (a new listing) gets the pooled long-run variance.
        v[t + 1] = np.where(np.isnan(state), pooled[t] if pooled[t] > 0 else np.nan, state)
    return v


def _group_mean(values: np.ndarray, weights: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """(T, n) mean of ``values`` over each stock's group per date (weights 0/1); exact per-row sums."""
    sums = np.zeros((n_groups, values.shape[0]))
    counts = np.zeros((n_groups, values.shape[0]))
    np.add.at(sums, group, (values * weights).T)
    np.add.at(counts, group, weights.T)
    mean = sums / np.maximum(counts, 1.0)
    return mean[group].T


# --------------------------------------------------------------------- components


def _sector_ids(universe: pl.DataFrame, codes: list[str]) -> tuple[np.ndarray, int]:
    """Sector id per code (the latest universe row of a code); a code without a sector is its own group."""
    uni = universe.select("code", "sector")
    if "start" in universe.columns:
        uni = universe.sort("start", nulls_last=False).select("code", "sector")
    sector = dict(zip(uni["code"].to_list(), uni["sector"].to_list()))  # the last row of a code wins
    names = [sector.get(c) for c in codes]
    labels = {s: k for k, s in enumerate(sorted({s for s in names if s is not None}))}
    ids = np.array([labels[s] if s is not None else len(labels) + j for j, s in enumerate(names)], dtype=np.int64)
    return ids, int(ids.max()) + 1 if len(ids) else 0


def _supply_links(relations: pl.DataFrame, grid: Grid) -> tuple[np.ndarray, ...]:
    """Observed supply links as (src, dst, weight, first day, last day) index arrays on the grid."""
    links = relations.filter(pl.col("relation") == "supply_chain") if "relation" in relations.columns else relations.clear()
    code_idx = {c: i for i, c in enumerate(grid.codes)}
    src = np.array([code_idx.get(c, -1) for c in links["src"].to_list()], dtype=np.int64)
    dst = np.array([code_idx.get(c, -1) for c in links["dst"].to_list()], dtype=np.int64)
    w = links["weight"].cast(pl.Float64).fill_null(0.0).to_numpy() if links.height else np.empty(0)
    days = grid.dates.to_numpy()
    T = len(days)
    start = links["start"].to_numpy() if links.height else np.empty(0, dtype=days.dtype)
    end = links["end"].to_numpy() if links.height else np.empty(0, dtype=days.dtype)
    # Null start: older than the sample; null end: alive to its end.
    first = np.where(np.isnat(start), 0, np.searchsorted(days, start, side="left"))
    last = np.where(np.isnat(end), T - 1, np.searchsorted(days, end, side="right") - 1)
    keep = (src >= 0) & (dst >= 0) & (src != dst) & (w > 0) & (last >= first)
    return src[keep], dst[keep], w[keep], first[keep], last[keep]


def supply_signal(u: np.ndarray, relations: pl.DataFrame, grid: Grid, nonlinearity: float) -> np.ndarray:
    """(T, n) share-weighted f(u) of each customer's observed suppliers alive at t, f(u) = u (1 + c |u|).

    Shares are the observed weights of the links alive on t normalized per customer.
    """
    T, n = u.shape
    src, dst, w, first, last = _supply_links(relations, grid)
    out = np.zeros((T, n))
    if len(src) == 0:
        return out
    t = np.arange(T)[:, None]
    weight = np.where((t >= first) & (t <= last), w, 0.0)  # (T, L)
    us = u[:, src]
    numer, total = np.zeros((n, T)), np.zeros((n, T))
    np.add.at(numer, dst, (weight * us * (1.0 + nonlinearity * np.abs(us))).T)
    np.add.at(total, dst, weight.T)
    return np.divide(numer, total, out=out.T.copy(), where=total > 0).T


def zscore(raw: np.ndarray, rows: np.ndarray, clip: float) -> np.ndarray:
    """Per-date z-scores of ``raw`` (..., T, n) over the stocks ``rows`` (T, n), winsorized at ``clip``.

    As ``synthetic._zscore``: population sd, 0 off ``rows``, on constant dates and on dates with < 2 stocks.
    """
    cnt = rows.sum(axis=-1, keepdims=True)
    v = np.where(rows, raw, 0.0)
    mean = v.sum(axis=-1, keepdims=True) / np.maximum(cnt, 1)
    centred = np.where(rows, raw - mean, 0.0)
    sd = np.sqrt((centred**2).sum(axis=-1, keepdims=True) / np.maximum(cnt, 1))
    ok = (sd > 0) & (cnt >= 2)
    z = np.divide(centred, sd, out=np.zeros_like(centred), where=ok & rows)
    return np.clip(z, -clip, clip)


def standardize(raw: np.ndarray, rows: np.ndarray, clip: float) -> np.ndarray:
    """(K, T, n) z-scores; volume-price orthogonalized against reversal per date, as ``synthetic._standardize``."""
    z = zscore(raw, rows, clip)
    rev, vp = z[0], z[2]
    denom = (rev * rev).sum(axis=1, keepdims=True)
    coef = np.divide((vp * rev).sum(axis=1, keepdims=True), denom, out=np.zeros_like(denom), where=denom > 0)
    resid = zscore(np.where(rows, vp - coef * rev, 0.0), rows, clip)
    z[2] = np.where(denom > 0, resid, vp)
    return z


def feasible_components(
    prices: pl.DataFrame, universe: pl.DataFrame, relations: pl.DataFrame, nonlinearity: float, cfg: FeasibleConfig
) -> Components:
    """The five planted components at the close of each date, from observables only (module docstring)."""
    dyn = _Dynamics()
    grid = price_grid(prices)
    rows = grid.traded
    r, gap = log_returns(grid)
    seen = ~np.isnan(r)
    daily = np.where(seen, r / np.sqrt(np.maximum(gap, 1)), 0.0)  # a gap of g days: per-day scale
    # Total vol of day t from returns before t (the simulator's total_sd(t) is known at t - 1, up to the regime).
    total_var = garch_filter(daily**2, seen, dyn.garch_a, dyn.garch_b, cfg.vol_prior_days)[:-1]
    u = np.where(seen, daily / np.sqrt(total_var), 0.0)
    u = np.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0)

    cum_u = np.vstack([np.zeros((1, u.shape[1])), np.cumsum(u, axis=0)])
    end = np.arange(1, len(u) + 1)
    reversal = -(cum_u[end] - cum_u[np.maximum(0, end - dyn.reversal_days)])
    momentum = cum_u[np.maximum(0, end - dyn.momentum_skip)] - cum_u[np.maximum(0, end - dyn.momentum_days)]

    abnormal = np.zeros_like(u)
    ewma = np.full(u.shape[1], np.nan)
    for t in range(len(u)):  # EWMA of log volume over the stock's traded days (the simulator's)
        lv, tr = grid.log_volume[t], rows[t]
        prior = tr & ~np.isnan(ewma)
        abnormal[t] = np.where(prior, lv - ewma, 0.0)
        ewma = np.where(tr, np.where(np.isnan(ewma), lv, ewma + dyn.volume_ewma * (lv - ewma)), ewma)
    volume_price = abnormal * np.sign(u)

    sector, n_sectors = _sector_ids(universe, grid.codes)
    spillover = _group_mean(u, rows.astype(np.float64), sector, n_sectors)
    supply = supply_signal(u, relations, grid, nonlinearity)
    raw = np.stack([reversal, momentum, volume_price, spillover, supply])
    z = standardize(raw, rows, dyn.zscore_clip)

    # Idiosyncratic vol of the next return: the GARCH recursion on returns net of the sector's mean return.
    resid = np.where(seen, daily - _group_mean(daily, seen.astype(np.float64), sector, n_sectors), 0.0)
    idio_var = garch_filter(resid**2, seen, dyn.garch_a, dyn.garch_b, cfg.vol_prior_days)[1:]  # includes day t
    scale = np.where(rows, np.sqrt(idio_var), np.nan)
    return Components(grid, z, scale)


# ------------------------------------------------------------------ combinations


def static_alpha(comp: Components, signal: SignalConfig) -> np.ndarray:
    """(T, n) sigma(t) * sum_k a_k z_k(t): the planted formula with m_k(t) = 1."""
    a = np.array([getattr(signal, k) for k in COMPONENTS])
    return comp.scale * np.tensordot(a, comp.z, axes=1)


def realized_labels(grid: Grid, label_delay: int) -> np.ndarray:
    """(T, n) the 1-day label of s (close(s+d) -> close(s+d+1), own rows), NaN unless it ends on day s+d+1.

    Only labels of stocks that trade on each of the next d + 1 days are kept, so
    the label of s is realized exactly at the close of s + d + 1 (no stock's later end leaks in).
    """
    T = grid.traded.shape[0]
    close = np.exp(grid.log_close)
    d = int(label_delay)
    y = np.full(close.shape, np.nan)
    if T > d + 1:
        run = grid.traded[: T - d - 1].copy()
        for k in range(1, d + 2):
            run &= grid.traded[k : T - d - 1 + k]
        y[: T - d - 1] = np.where(run, close[d + 1 :] / close[d : T - 1] - 1.0, np.nan)
    return y


def daily_slopes(comp: Components, labels: np.ndarray) -> np.ndarray:
    """(T, K) per-date OLS slopes of label / sigma on the z_k (with an intercept); NaN on thin dates."""
    K, T, n = comp.z.shape
    y = labels / comp.scale
    ok = np.isfinite(y) & comp.grid.traded
    X = np.concatenate([np.ones((1, T, n)), comp.z]).transpose(1, 2, 0) * ok[..., None]  # (T, n, K + 1)
    yy = np.where(ok, y, 0.0)
    xtx = np.einsum("tni,tnj->tij", X, X)
    xty = np.einsum("tni,tn->ti", X, yy)
    good = ok.sum(axis=1) >= MIN_REGRESSION_STOCKS
    good &= np.linalg.cond(np.where(good[:, None, None], xtx, np.eye(K + 1))) < 1e8
    beta = np.full((T, K + 1), np.nan)
    if good.any():
        beta[good] = np.linalg.solve(xtx[good], xty[good][..., None])[..., 0]
    return beta[:, 1:]


def decayed_strengths(slopes: np.ndarray, label_delay: int, halflife: float) -> np.ndarray:
    """(T, K) b_k(t): exponentially decayed mean of the slopes of dates s with s + d + 1 <= t (NaN before any)."""
    T, K = slopes.shape
    lag = int(label_delay) + 1
    lam = 0.5 ** (1.0 / halflife)
    have = np.isfinite(slopes).all(axis=1)
    num, den = np.zeros(K), 0.0
    out = np.full((T, K), np.nan)
    for t in range(T):
        s = t - lag  # the newest date whose label is realized by the close of t
        num, den = lam * num, lam * den
        if s >= 0 and have[s]:
            num, den = num + slopes[s], den + 1.0
        if den > 0:
            out[t] = num / den
    return out


def rolling_alpha(comp: Components, label_delay: int, halflife: float) -> tuple[np.ndarray, np.ndarray]:
    """(T, n) sigma(t) * sum_k b_k(t) z_k(t) and the (T, K) strengths b_k(t) behind it."""
    slopes = daily_slopes(comp, realized_labels(comp.grid, label_delay))
    b = decayed_strengths(slopes, label_delay, halflife)
    return comp.scale * np.einsum("tk,ktn->tn", b, comp.z), b


def feasible_alphas(
    prices: pl.DataFrame,
    universe: pl.DataFrame,
    relations: pl.DataFrame,
    signal: SignalConfig,
    nonlinearity: float,
    label_delay: int,
    cfg: FeasibleConfig,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``date, code, static, rolling`` (one row per prices row) and ``date, b_{k}`` (the rolling strengths).

    With ``label_delay`` d both variants stay forecasts made at t (never shifted
    like the oracle's ``delayed_alpha``): the rolling slopes are fitted on the
    delayed label, so they learn how much of each component is left d days on.
    """
    comp = feasible_components(prices, universe, relations, nonlinearity, cfg)
    grid = comp.grid
    rolling, b = rolling_alpha(comp, label_delay, cfg.halflife)
    t, i = np.nonzero(grid.traded)
    frame = pl.DataFrame(
        {
            "date": grid.dates.gather(t),
            "code": pl.Series(grid.codes, dtype=pl.Utf8).gather(i),
            "static": static_alpha(comp, signal)[t, i],
            "rolling": rolling[t, i],
        }
    ).with_columns(pl.col("static", "rolling").fill_nan(None))
    strengths = pl.DataFrame({"date": grid.dates} | {f"b_{k}": b[:, j] for j, k in enumerate(COMPONENTS)})
    return frame, strengths


# ------------------------------------------------------------------- predictions


def feasible_predictions(
    alphas: pl.DataFrame, variant: str, panel: pl.DataFrame, folds: list[Fold], horizons: list[int], reach: int
) -> pl.DataFrame:
    """Val and test rows of every fold with ``pred_{h}d`` = the variant's alpha (the oracle's layout)."""
    keyed = panel.select("date", "code").join(alphas.select("date", "code", variant), on=["date", "code"], how="left")
    return signal_predictions(keyed, variant, folds, horizons, reach)


def pooled_rank_ic(predictions: pl.DataFrame, realized: pl.DataFrame, split: str, horizon: int = 1) -> float | None:
    """Mean daily RankIC of ``pred_{h}d`` with ``ret_{h}d`` over the rows of ``split`` in every fold.

    ``val``: only the days before the first test day (a later fold's validation days are test days).
    """
    rows = validation_before_test(predictions) if split == "val" else predictions.filter(pl.col("split") == split)
    if rows.is_empty():
        return None
    frame = rows.join(realized.select("date", "code", f"ret_{horizon}d"), on=["date", "code"], how="left")
    # Per fold, then pooled: a date in two folds' windows counts once per fold, as each fold predicts it.
    daily = [daily_ic(part, f"pred_{horizon}d", f"ret_{horizon}d") for _, part in frame.group_by("fold", maintain_order=True)]
    values = pl.concat(daily)["rank_ic"] if daily else pl.Series([], dtype=pl.Float64)
    mean = values.mean() if values.len() else None
    return round(float(mean), 6) if mean is not None and np.isfinite(mean) else None  # as the evaluator rounds


def choose_variant(
    predictions: dict[str, pl.DataFrame], realized: pl.DataFrame, horizon: int = 1
) -> tuple[str, dict[str, Any]]:
    """The variant with the higher validation RankIC at ``horizon`` (static on a tie or when undefined).

    Only ``split == "val"`` rows before the first test day decide; the test figures are computed beside it for the report.
    Returns the choice and ``{"val": {...}, "test": {...}}`` keyed ``rank_ic_{h}d_{variant}``.
    """
    val = {v: pooled_rank_ic(p, realized, "val", horizon) for v, p in predictions.items()}
    choice = max(predictions, key=lambda v: (val[v] if val[v] is not None else -np.inf, v == "static"))
    test = {v: pooled_rank_ic(p, realized, "test", horizon) for v, p in predictions.items()}
    return choice, {
        "val": {f"rank_ic_{horizon}d_{v}": x for v, x in val.items()},
        "test": {f"rank_ic_{horizon}d_{v}": x for v, x in test.items()},
    }
