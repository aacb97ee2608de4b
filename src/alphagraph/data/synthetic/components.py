"""The planted signal: the expected-return components, their strengths over time and their z-scores.

The feasible ceiling (alphagraph.evaluation.feasible) recomputes these forms from
what a model sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphagraph.data.synthetic.dynamics import _Dynamics
from alphagraph.data.synthetic.relations import _Edges
from alphagraph.data.synthetic.universe import _Universe
from alphagraph.runtime.config import SyntheticConfig


COMPONENTS: tuple[str, ...] = (
    "reversal",
    "momentum",
    "volume_price",
    "sector_spillover",
    "supply_chain",
)


@dataclass(frozen=True)
class _SignalInputs:
    """Inputs of the planted components (the supply links at the first day; events change them)."""

    sector: np.ndarray  # (n,) sector id
    n_sectors: int
    sup_idx: np.ndarray  # (n, k) supplier indices per customer slot
    sup_raw: np.ndarray  # (n, k) raw supply weights (0 for padding); shares = raw / row sum
    reversal_days: int
    momentum_days: int
    momentum_skip: int
    strengths: np.ndarray  # (K,) a_k in COMPONENTS order
    nonlinearity: float


def _signal_inputs(cfg: SyntheticConfig, dyn: _Dynamics, uni: _Universe, suppliers: _Edges) -> _SignalInputs:
    """Pack the supplier lists into (n, k) slot arrays so a day's supply signal is one gather."""
    n = len(uni.codes)
    counts = np.bincount(suppliers.dst, minlength=n)
    k = max(1, int(counts.max()) if n and len(suppliers.dst) else 1)
    idx = np.zeros((n, k), dtype=np.int64)
    w = np.zeros((n, k))
    order = np.argsort(suppliers.dst, kind="stable")
    dst = suppliers.dst[order]
    slot = np.arange(len(dst)) - np.searchsorted(dst, dst)
    idx[dst, slot] = suppliers.src[order]
    w[dst, slot] = suppliers.weight[order]
    return _SignalInputs(
        sector=uni.sector,
        n_sectors=uni.n_sectors,
        sup_idx=idx,
        sup_raw=w,
        reversal_days=dyn.reversal_days,
        momentum_days=dyn.momentum_days,
        momentum_skip=dyn.momentum_skip,
        strengths=np.array([getattr(cfg.signal, k) for k in COMPONENTS], dtype=np.float64),
        nonlinearity=cfg.supply_nonlinearity,
    )


def _shares(raw: np.ndarray) -> np.ndarray:
    total = raw.sum(axis=1, keepdims=True)
    return np.divide(raw, total, out=np.zeros_like(raw), where=total > 0)


def _strength_paths(cfg: SyntheticConfig, strengths: np.ndarray, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """(T, K) multipliers m_k(t) of each component's strength, with E[m_k^2] = 1.

    m_k(t) = g(t) (1 + x_k(t)) / sqrt(1 + sd_k^2): a common amplitude g (lognormal
    AR(1): stretches where every signal is weak, as in real markets) times a
    component's own AR(1) x_k around 0 with sd_k = v sqrt(a_max / a_k), so the
    weaker components vary more and are the ones that occasionally flip sign.
    Both start stationary; the multiplier of day t is part of the planted alpha of t.
    """
    K = len(strengths)
    v = cfg.strength_variation
    if v == 0 or n_days == 0:
        return np.ones((n_days, K))
    ratio = np.divide(strengths.max(), strengths, out=np.ones(K), where=strengths > 0)
    sd = v * np.sqrt(ratio)
    y = _ar1(rng.standard_normal((n_days, K + 1)), cfg.strength_persistence)
    amplitude = np.exp(v * y[:, :1] - v * v)
    return amplitude * (1.0 + sd * y[:, 1:]) / np.sqrt(1.0 + sd * sd)


def _ar1(eps: np.ndarray, phi: float) -> np.ndarray:
    """Unit-variance AR(1) paths along axis 0, stationary from the first row."""
    out = np.empty_like(eps)
    out[0] = eps[0]
    step = np.sqrt(1.0 - phi * phi)
    for t in range(1, len(eps)):
        out[t] = phi * out[t - 1] + step * eps[t]
    return out


def _zscore(raw: np.ndarray, rows: np.ndarray, clip: float) -> np.ndarray:
    """Cross-sectional z-scores of each row of ``raw`` (k, n) over stocks ``rows``,
    winsorized at ``clip``; 0 for other stocks and for constant rows."""
    out = np.zeros_like(raw)
    if len(rows) < 2:
        return out
    v = raw[:, rows]
    centred = v - v.mean(axis=1, keepdims=True)
    sd = np.sqrt((centred**2).mean(axis=1, keepdims=True))
    out[:, rows] = np.clip(np.divide(centred, sd, out=np.zeros_like(v), where=sd > 0), -clip, clip)
    return out


def _raw_signals(
    u: np.ndarray,
    abnormal: np.ndarray,
    cum_u: np.ndarray,
    t: int,
    rows: np.ndarray,
    spec: _SignalInputs,
    sup_idx: np.ndarray,
    sup_w: np.ndarray,
) -> np.ndarray:
    """(K, n) raw component values at the close of t, in COMPONENTS order.

    ``u`` is the day's vol-scaled observed return (0 where not traded), ``cum_u``
    its running sum (row t + 1 includes day t), ``abnormal`` the log volume over
    its trailing average.
    """
    end = t + 1
    reversal = -(cum_u[end] - cum_u[max(0, end - spec.reversal_days)])
    momentum = cum_u[max(0, end - spec.momentum_skip)] - cum_u[max(0, end - spec.momentum_days)]
    volume_price = abnormal * np.sign(u)
    traded = np.zeros(len(u))
    traded[rows] = 1.0
    sec_sum = np.bincount(spec.sector, weights=u, minlength=spec.n_sectors)
    sec_cnt = np.bincount(spec.sector, weights=traded, minlength=spec.n_sectors)
    spillover = (sec_sum / np.maximum(sec_cnt, 1.0))[spec.sector]
    # Large supplier moves carry more than their share: f(u) = u (1 + c |u|).
    us = u[sup_idx]
    supply = (us * (1.0 + spec.nonlinearity * np.abs(us)) * sup_w).sum(axis=1)
    return np.stack([reversal, momentum, volume_price, spillover, supply])


def _standardize(raw: np.ndarray, rows: np.ndarray, clip: float) -> np.ndarray:
    """Per-component z-scores; volume-price is orthogonalized against reversal first."""
    z = _zscore(raw, rows, clip)
    rev, vp = z[0, rows], z[2, rows]
    denom = float(rev @ rev)
    if denom > 0:
        # Without this, volume-price would partly duplicate reversal (volume tracks |return|).
        resid = np.zeros_like(z[2:3])
        resid[0, rows] = vp - (float(vp @ rev) / denom) * rev
        z[2] = _zscore(resid, rows, clip)[0]
    return z
