"""Features and targets of the panel (the ``features`` stage's library).

Public interface::

    compute_features(prices, universe, cfg)  -> date, code, f_* (same rows/order as prices)
    compute_targets(prices, horizons, label_delay, signal_threshold)
                                              -> date, code, ret_{h}d, dir_{h}d, sig_{h}d
    feature_families(cfg)                     -> {family: [f_* columns]}
    feature_names(cfg)                        -> all f_* columns, in output order

Families, names and definitions: :mod:`alphagraph.features.families`.
"""

from alphagraph.features.compute import compute_features
from alphagraph.features.families import FAMILIES, family_columns, feature_families, feature_names
from alphagraph.features.targets import compute_targets

__all__ = [
    "FAMILIES",
    "compute_features",
    "compute_targets",
    "family_columns",
    "feature_families",
    "feature_names",
]
