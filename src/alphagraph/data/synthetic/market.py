"""The entry point: each part of the market drawn from its own named stream, then written as frames."""

from __future__ import annotations

from alphagraph.data.synthetic.dynamics import _Dynamics
from alphagraph.data.synthetic.frames import Market, _frames, _ohlc
from alphagraph.data.synthetic.relations import (
    _competitors,
    _fund_links,
    _Links,
    _observe,
    _sector_affinity,
    _supply_chain,
    _supply_events,
)
from alphagraph.data.synthetic.simulate import _simulate
from alphagraph.data.synthetic.streams import _rng
from alphagraph.data.synthetic.universe import _calendar, _trading_mask, _universe
from alphagraph.runtime.config import SyntheticConfig


def generate_market(cfg: SyntheticConfig, seed: int) -> Market:
    """Generate the synthetic market for ``cfg``; bit-identical for the same ``seed``."""
    dyn = _Dynamics()
    dates = _calendar(cfg, _rng(seed, "calendar"))
    n_days = len(dates)
    uni = _universe(cfg, n_days, _rng(seed, "universe"))
    traded = _trading_mask(cfg, uni, n_days, seed)
    competitors = _Links.always(_competitors(uni, cfg.competitors_per_stock, _rng(seed, "competitors")), n_days)
    supply_rng = _rng(seed, "supply_chain")
    affinity = _sector_affinity(uni.n_sectors, supply_rng)
    suppliers = _supply_chain(uni, cfg.suppliers_per_stock, supply_rng, affinity)
    events = _supply_events(uni, suppliers, affinity, cfg.supply_life_days, n_days, _rng(seed, "supply_chain.dynamics"))
    funds = _fund_links(uni, cfg, n_days, _rng(seed, "funds"))
    paths = _simulate(cfg, dyn, uni, traded, suppliers, events, seed)
    ohlc = _ohlc(paths, seed)
    true = {"competitor": competitors, "supply_chain": paths.supply, "fund_similarity": funds}
    rng = _rng(seed, "observed")
    observed = {
        name: _observe(links, cfg.observed, len(uni.codes), rng, symmetric=name != "supply_chain")
        for name, links in true.items()
    }
    return _frames(dates, uni, traded, paths, ohlc, observed, true)
