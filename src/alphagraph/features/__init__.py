"""Features and targets of the panel (the ``features`` stage's library).

Public interface::

    compute_features(prices, universe, cfg)  -> date, code, f_* (same rows and order as prices)
    compute_targets(prices, horizons, label_delay, signal_threshold)
                                              -> date, code, ret_{h}d, dir_{h}d, sig_{h}d
    feature_families(cfg)                     -> {family: [f_* columns]}
    feature_names(cfg)                        -> all f_* columns, in output order
    family_null_shares(panel, cfg)            -> {family: share of null cells}
    build_panel(prices, universe, cfg)        -> (panel, metrics) in memory (features.panel)
    build_panel_file(prices, universe, cfg, path)
                                              -> metrics; the same panel written to Parquet in
                                                 bounded memory, by blocks of stocks (features.stream)

Families (``features.families``): kbar, price, rolling, volume (Qlib's Alpha158, 158
columns with the default windows), relative (market/sector excess returns, beta to
the market) and technical (RSI, MACD, ATR, realized volatility and its regime). Names,
definitions and min periods: :mod:`alphagraph.features.families`,
:mod:`alphagraph.features.alpha158`, :mod:`alphagraph.features.extra`.

Information set: a row dated t uses only its stock's rows dated <= t and the
cross-section of date t, bit for bit (tests/test_features.py perturbs and deletes
the future and compares exactly). The universe is read point in time too: a row's
sector is its stock's universe row valid on the row's date (``start``/``end``, null =
unbounded; a universe without them is static). Output floats are Float32 by default
(``dtype=pl.Float64`` for full precision; all arithmetic is float64); missing is null.

Speed: per stock, windows are computed with vectorized numpy kernels
(:mod:`alphagraph.features.rolling`) on chunks of stocks, on a thread pool
(``n_threads``, ``$ALPHAGRAPH_THREADS``). bench/features.py compares with a pandas
reference on 800 stocks x 3,000 days, bench/qlib.py with Qlib's Alpha158 handler.

Memory: the features stage computes one block of stocks at a time (the cross-sectional
inputs come from a cheap first pass over the whole panel) and writes the panel
incrementally, so its peak memory follows the block, not the panel
(:mod:`alphagraph.features.stream`; bench/scale.py measures it).
"""

from importlib import import_module
from typing import Any

# Loaded on first use: the model stages import ``alphagraph.features.normalize``, which runs this
# file, and need none of the kernels (whose imports, scipy.signal's above all, cost ~0.6 s a process).
_HOMES = {
    "compute_features": "compute",
    "compute_targets": "targets",
    "FAMILIES": "families",
    "family_columns": "families",
    "family_null_shares": "families",
    "feature_families": "families",
    "feature_names": "families",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
