"""The day-by-day recursion that ties the dynamics, the supply links and the planted components together."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphagraph.data.synthetic.components import (
    COMPONENTS,
    _raw_signals,
    _shares,
    _signal_inputs,
    _SignalInputs,
    _standardize,
    _strength_paths,
)
from alphagraph.data.synthetic.dynamics import _drivers, _Dynamics
from alphagraph.data.synthetic.relations import _Edges, _Links, _SupplyEvents
from alphagraph.data.synthetic.streams import _rng
from alphagraph.data.synthetic.universe import _Universe
from alphagraph.runtime.config import SyntheticConfig


@dataclass(frozen=True)
class _Paths:
    log_close: np.ndarray  # (T, n) latent log close
    log_prev: np.ndarray  # (T, n) latent log close of the previous day
    total_sd: np.ndarray  # (T, n) conditional sd of the day's return
    log_volume: np.ndarray  # (T, n)
    components: np.ndarray  # (K, T, n) planted alpha components, 0 where not traded
    supply: _Links  # the true supply links, with the share each had when it began


def _simulate(
    cfg: SyntheticConfig,
    dyn: _Dynamics,
    uni: _Universe,
    traded: np.ndarray,
    suppliers: _Edges,
    events: _SupplyEvents,
    seed: int,
) -> _Paths:
    """Day-by-day recursion: the alpha planted at t moves the return t -> t+1.

    Signals use only what is observable at the close of t: observed closes
    (a return over a suspension spans the gap), volumes, and the conditional
    volatility. Non-traded stock-days carry no alpha.
    """
    n_days, n = traded.shape
    d = _drivers(dyn, uni, n_days, seed)
    spec = _signal_inputs(cfg, dyn, uni, suppliers)
    strength = spec.strengths * _strength_paths(cfg, spec.strengths, n_days, _rng(seed, "signal.strength"))
    sup_idx, sup_raw = spec.sup_idx.copy(), spec.sup_raw.copy()
    sup_w = _shares(sup_raw)
    first_share = sup_w.copy()  # the share of each initial link on day 0
    event_share = np.zeros(len(events.day))
    bounds = np.searchsorted(events.day, np.arange(n_days + 1))

    log_close = np.empty((n_days, n))
    log_volume = np.empty((n_days, n))
    comps = np.zeros((len(COMPONENTS), n_days, n))
    cum_u = np.zeros((n_days + 1, n))  # running sum of vol-scaled observed returns
    logp = d.log_price0.copy()
    last_logp = np.zeros(n)
    last_t = np.full(n, -1, dtype=np.int64)
    vol_ewma = np.full(n, np.nan)
    alpha = np.zeros(n)
    lo, hi = dyn.return_bounds

    for t in range(n_days):
        today = slice(bounds[t], bounds[t + 1])
        if today.start < today.stop:  # supply links die and are replaced from today on
            c, k = events.customer[today], events.slot[today]
            sup_idx[c, k] = events.supplier[today]
            sup_raw[c, k] = events.raw[today]
            sup_w = _shares(sup_raw)
            event_share[today] = sup_w[c, k]
        r = np.clip(d.common[t] + d.idio[t] + alpha, lo, hi)
        logp = logp + np.log1p(r)
        log_close[t] = logp
        rows = np.flatnonzero(traded[t])
        seen = rows[last_t[rows] >= 0]
        # Vol-scaled observed return; a gap of g days is scaled by sqrt(g).
        u = np.zeros(n)
        gap = t - last_t[seen]
        u[seen] = (logp[seen] - last_logp[seen]) / (d.total_sd[t, seen] * np.sqrt(gap))
        last_logp[rows] = logp[rows]
        last_t[rows] = t
        cum_u[t + 1] = cum_u[t] + u

        log_volume[t] = d.volume_base[t] + dyn.volume_abs_return * np.abs(u)
        abnormal = np.zeros(n)
        prior = rows[~np.isnan(vol_ewma[rows])]
        abnormal[prior] = log_volume[t, prior] - vol_ewma[prior]
        vol_ewma[rows] = np.where(
            np.isnan(vol_ewma[rows]),
            log_volume[t, rows],
            vol_ewma[rows] + dyn.volume_ewma * (log_volume[t, rows] - vol_ewma[rows]),
        )

        raw = _raw_signals(u, abnormal, cum_u, t, rows, spec, sup_idx, sup_w)
        z = _standardize(raw, rows, dyn.zscore_clip)
        comps[:, t] = d.idio_sd_next[t] * strength[t][:, None] * z
        alpha = np.zeros(n)
        for part in comps[:, t]:  # same order as the oracle's sum of its columns
            alpha = alpha + part

    log_prev = np.vstack([d.log_price0[None], log_close[:-1]])
    supply = _supply_links(spec, first_share, events, event_share, n_days)
    return _Paths(log_close, log_prev, d.total_sd, log_volume, comps, supply)


def _supply_links(
    spec: _SignalInputs, first_share: np.ndarray, events: _SupplyEvents, event_share: np.ndarray, n_days: int
) -> _Links:
    """Every true supply link with its life: a slot's link ends the day before its next event."""
    n, k = spec.sup_idx.shape
    used = spec.sup_raw > 0
    cust0, slot0 = np.nonzero(used)
    customer = np.concatenate([cust0, events.customer])
    slot = np.concatenate([slot0, events.slot])
    start = np.concatenate([np.zeros(len(cust0), dtype=np.int64), events.day])
    supplier = np.concatenate([spec.sup_idx[used], events.supplier])
    share = np.concatenate([first_share[used], event_share])
    order = np.lexsort((start, slot, customer))
    customer, slot, start, supplier, share = (a[order] for a in (customer, slot, start, supplier, share))
    same_slot_next = np.r_[(customer[1:] == customer[:-1]) & (slot[1:] == slot[:-1]), False]
    end = np.where(same_slot_next, np.r_[start[1:], 0] - 1, n_days - 1)
    lived = end >= start  # a slot that changed twice in one day kept only the later supplier
    return _Links(supplier[lived], customer[lived], share[lived], start[lived], end[lived])
