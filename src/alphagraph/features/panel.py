"""The features stage's output: features and targets joined into one panel."""

from __future__ import annotations

from typing import Any

import polars as pl

from alphagraph.runtime.config import FeaturesConfig
from alphagraph.features.compute import compute_features
from alphagraph.features.families import feature_families
from alphagraph.features.targets import compute_targets


def build_panel(prices: pl.DataFrame, universe: pl.DataFrame, cfg: FeaturesConfig) -> tuple[pl.DataFrame, dict[str, Any]]:
    """``date, code, f_* (Float32), ret/dir/sig_{h}d``, sorted by (date, code), and its metrics."""
    feats = compute_features(prices, universe, cfg)
    targets = compute_targets(prices, cfg.horizons, cfg.label_delay, cfg.signal_threshold)
    fcols = [c for c in feats.columns if c.startswith("f_")]
    panel = (
        feats.with_columns(pl.col(fcols).cast(pl.Float32))
        .join(targets, on=["date", "code"], how="left")
        .sort("date", "code")
    )
    nulls = panel.select(pl.col(fcols).null_count()).row(0, named=True)
    n = panel.height
    null_share = {c: (nulls[c] / n if n else float("nan")) for c in fcols}
    ret_null = {h: (panel[f"ret_{h}d"].null_count() / n if n else float("nan")) for h in cfg.horizons}
    return panel, panel_metrics(n, fcols, null_share, ret_null, cfg)


def panel_metrics(
    rows: int, fcols: list[str], null_share: dict[str, float], ret_null: dict[int, float], cfg: FeaturesConfig
) -> dict[str, Any]:
    """``metrics/features.json`` from the per-column null shares (shared with the streamed stage)."""
    families = {fam: cols for fam, cols in feature_families(cfg).items() if cols}
    return {
        "rows": rows,
        "n_features": len(fcols),
        "null_share": round(sum(null_share.values()) / max(len(fcols), 1), 6),
        **{f"family.{fam}.n_features": len(cols) for fam, cols in families.items()},
        **{
            f"family.{fam}.null_share": round(sum(null_share[c] for c in cols) / len(cols), 6)
            for fam, cols in families.items()
        },
        **{f"target.ret_{h}d.null_share": round(float(ret_null[h]), 6) for h in cfg.horizons},
    }
