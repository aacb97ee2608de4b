"""The market's own dynamics, apart from the planted signal: factors, regimes, GARCH noise, volume.

:class:`_Dynamics` holds their constants; the feasible ceiling
(alphagraph.evaluation.feasible) reads them too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphagraph.data.synthetic.streams import _rng
from alphagraph.data.synthetic.universe import _Universe


@dataclass(frozen=True)
class _Dynamics:
    """Stylized-fact parameters, daily units; pairs are (calm, turbulent)."""

    market_vol: tuple[float, float] = (0.009, 0.022)
    sector_vol: tuple[float, float] = (0.006, 0.010)
    industry_vol: tuple[float, float] = (0.005, 0.007)
    idio_mult: tuple[float, float] = (1.0, 1.3)
    p_calm_to_turbulent: float = 0.01
    p_turbulent_to_calm: float = 0.05
    drift: float = 0.0003
    idio_vol_median: float = 0.016
    idio_vol_dispersion: float = 0.3
    garch_a: float = 0.07
    garch_b: float = 0.91
    tail_df: float = 5.0
    return_bounds: tuple[float, float] = (-0.5, 1.0)
    zscore_clip: float = 3.0
    # Look-back windows of the own-history components, in trading days of the calendar.
    reversal_days: int = 3
    momentum_days: int = 60
    momentum_skip: int = 5
    volume_abs_return: float = 0.4
    volume_vol: float = 1.0
    attention_ar: float = 0.9
    attention_sd: float = 0.25
    volume_noise_sd: float = 0.3
    volume_ewma: float = 0.05


def _student_t(rng: np.random.Generator, df: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance (fat tails, comparable scale)."""
    return rng.standard_t(df, size) * np.sqrt((df - 2.0) / df)


def _regimes(n_days: int, dyn: _Dynamics, rng: np.random.Generator) -> np.ndarray:
    """Calm (0) / turbulent (1) Markov chain, starting calm."""
    u = rng.random(n_days)
    out = np.zeros(n_days, dtype=np.int64)
    state = 0
    for t in range(n_days):
        flip = dyn.p_calm_to_turbulent if state == 0 else dyn.p_turbulent_to_calm
        state = 1 - state if u[t] < flip else state
        out[t] = state
    return out


def _garch(eps: np.ndarray, long_run_var: np.ndarray, dyn: _Dynamics) -> np.ndarray:
    """GARCH(1,1) conditional variance, (T + 1, n): row t is known at the close of t - 1."""
    a, b = dyn.garch_a, dyn.garch_b
    omega = long_run_var * (1.0 - a - b)
    cap = 50.0 * long_run_var  # keeps a rare run of extreme shocks from exploding
    h = np.empty((eps.shape[0] + 1, eps.shape[1]))
    h[0] = long_run_var
    for t in range(eps.shape[0]):
        h[t + 1] = np.minimum(omega + (a * eps[t] ** 2 + b) * h[t], cap)
    return h


def _attention(shape: tuple[int, int], dyn: _Dynamics, rng: np.random.Generator) -> np.ndarray:
    """Persistent AR(1) trading-interest shocks in log volume."""
    out = np.empty(shape)
    out[0] = rng.standard_normal(shape[1]) * dyn.attention_sd
    shocks = rng.standard_normal(shape) * dyn.attention_sd * np.sqrt(1 - dyn.attention_ar**2)
    for t in range(1, shape[0]):
        out[t] = dyn.attention_ar * out[t - 1] + shocks[t]
    return out


@dataclass(frozen=True)
class _Drivers:
    """Everything about the returns that does not depend on the planted alpha."""

    common: np.ndarray  # (T, n) drift + factor returns
    idio: np.ndarray  # (T, n) idiosyncratic returns
    total_sd: np.ndarray  # (T, n) conditional sd of the day's return
    idio_sd_next: np.ndarray  # (T, n) idio sd of the next day's return, known at close t
    volume_base: np.ndarray  # (T, n) log volume without the |return| term
    log_price0: np.ndarray  # (n,)


def _drivers(dyn: _Dynamics, uni: _Universe, n_days: int, seed: int) -> _Drivers:
    """Factor structure, GARCH idiosyncratic noise, regimes and volume drivers."""
    n = len(uni.codes)
    rng = _rng(seed, "loadings")
    beta_m = np.clip(rng.normal(1.0, 0.3, n), 0.2, 2.0)
    beta_s = np.clip(rng.normal(1.0, 0.3, n), 0.0, 2.0)
    beta_i = np.clip(rng.normal(1.0, 0.3, n), 0.0, 2.0)
    idio_lr = dyn.idio_vol_median * np.exp(dyn.idio_vol_dispersion * rng.standard_normal(n))
    log_price0 = np.log(30.0) + 0.8 * rng.standard_normal(n)
    log_shares = np.log(5e5) + 1.0 * rng.standard_normal(n)

    regime = _regimes(n_days, dyn, _rng(seed, "regime"))
    mkt_sd = np.asarray(dyn.market_vol)[regime]
    sec_sd = np.asarray(dyn.sector_vol)[regime][:, None]
    ind_sd = np.asarray(dyn.industry_vol)[regime][:, None]
    mkt = _student_t(_rng(seed, "factor.market"), dyn.tail_df, n_days) * mkt_sd
    sec = _student_t(_rng(seed, "factor.sector"), dyn.tail_df, (n_days, uni.n_sectors)) * sec_sd
    ind = _student_t(_rng(seed, "factor.industry"), dyn.tail_df, (n_days, uni.n_industries)) * ind_sd
    common = (
        dyn.drift
        + beta_m * mkt[:, None]
        + beta_s * sec[:, uni.sector]
        + beta_i * ind[:, uni.industry]
    )

    eps = _student_t(_rng(seed, "idio"), dyn.tail_df, (n_days, n))
    h = _garch(eps, idio_lr**2, dyn)
    mult = np.asarray(dyn.idio_mult)[regime][:, None]
    idio_sd = np.sqrt(h[:-1]) * mult
    factor_var = (beta_m * mkt_sd[:, None]) ** 2 + (beta_s * sec_sd) ** 2 + (beta_i * ind_sd) ** 2
    volume_base = (
        log_shares
        + dyn.volume_vol * np.log(idio_sd / idio_lr)
        + _attention((n_days, n), dyn, _rng(seed, "volume.attention"))
        + dyn.volume_noise_sd * _rng(seed, "volume.noise").standard_normal((n_days, n))
    )
    return _Drivers(
        common=common,
        idio=idio_sd * eps,
        total_sd=np.sqrt(factor_var + idio_sd**2),
        # The regime of t is known at t; next day's regime is not, so it is not used.
        idio_sd_next=np.sqrt(h[1:]) * mult,
        volume_base=volume_base,
        log_price0=log_price0,
    )
