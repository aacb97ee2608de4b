"""Cross-sectional normalization of the features panel and per-date training labels.

Every statistic is computed within one date, so a row dated t depends only on
that date's cross-section: normalization cannot leak the future.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtri

from alphagraph.config import NormalizeConfig
from alphagraph.errors import UserError

MAD_TO_STD = 1.4826
MISSING_SHARE = "missing_share"


def feature_columns(panel: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The model-input columns of a panel (``f_*``), in panel order."""
    names = panel.collect_schema().names() if isinstance(panel, pl.LazyFrame) else panel.columns
    return [c for c in names if c.startswith("f_")]


def normalize_panel(
    panel: pl.DataFrame, cfg: NormalizeConfig, horizons: list[int]
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Robust per-date z-scores of ``f_*`` plus labels ``y_{h}d``; returns (panel, stats).

    Features: (x - median) / (1.4826 * MAD) per date, falling back to the
    standard deviation where MAD is 0 (a feature that is mostly one value) and
    to 0 where both are; clipped to +-``cfg.clip``; inf -> null -> 0 with the
    row's share of missing features kept in ``missing_share``. Dates with
    fewer than ``cfg.min_stocks`` stocks are dropped and counted.
    """
    feats = feature_columns(panel)
    missing_rets = [f"ret_{h}d" for h in horizons if f"ret_{h}d" not in panel.columns]
    if missing_rets:
        raise KeyError(f"features panel: missing target columns {missing_rets}")
    counts = panel.group_by("date").len()
    small = counts.filter(pl.col("len") < cfg.min_stocks)
    if small.height == counts.height:
        most = int(counts["len"].max() or 0)
        raise UserError(
            f"normalize: no date has normalize.min_stocks = {cfg.min_stocks} stocks (the most on any date"
            f" is {most}): a cross-section that small cannot be normalized or ranked; add stocks or lower"
            " normalize.min_stocks"
        )
    lf = panel.lazy().join(small.lazy().select("date"), on="date", how="anti")

    finite = [pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in feats]
    lf = lf.with_columns(finite)
    lf = lf.with_columns(
        (pl.sum_horizontal([pl.col(c).is_null() for c in feats]) / max(len(feats), 1))
        .cast(pl.Float32)
        .alias(MISSING_SHARE)
    )
    lf = lf.with_columns([(pl.col(c) - pl.col(c).median().over("date")).alias(c) for c in feats])
    lf = lf.with_columns([_scaled(c, cfg.clip) for c in feats])
    lf = lf.with_columns([_label(h, cfg.label, cfg.clip) for h in horizons])
    out = lf.sort(["date", "code"]).collect()
    if cfg.label == "rankgauss":
        out = _rank_gauss_labels(out, horizons)
    stats = {
        "rows": out.height,
        "dates": out["date"].n_unique(),
        "dates_dropped_min_stocks": small.height,
        "rows_dropped_min_stocks": int(small["len"].sum()),
        "features": len(feats),
        "missing_share_mean": float(out[MISSING_SHARE].mean() or 0.0),
    }
    return out, stats


def _scaled(c: str, clip: float) -> pl.Expr:
    """Centred column divided by its robust per-date scale, clipped, nulls -> 0."""
    x = pl.col(c)
    mad = x.abs().median().over("date") * MAD_TO_STD
    std = x.std().over("date")
    scale = pl.when(mad > 1e-12).then(mad).when(std > 1e-12).then(std).otherwise(None)
    return (x / scale).clip(-clip, clip).fill_null(0.0).fill_nan(0.0).cast(pl.Float32).alias(c)


def _label(h: int, kind: str, clip: float) -> pl.Expr:
    """Per-date z-score of ``ret_{h}d`` (rank-gauss is applied after collect)."""
    r = pl.col(f"ret_{h}d")
    if kind == "rankgauss":
        return r.alias(f"y_{h}d")
    z = (r - r.mean().over("date")) / r.std().over("date")
    return z.clip(-clip, clip).cast(pl.Float32).alias(f"y_{h}d")


def _rank_gauss_labels(panel: pl.DataFrame, horizons: list[int]) -> pl.DataFrame:
    """Replace ``y_{h}d`` with the Gaussian quantile of its per-date rank."""
    exprs = []
    for h in horizons:
        r = pl.col(f"ret_{h}d")
        u = (r.rank("average").over("date") - 0.5) / r.count().over("date")
        exprs.append(u.alias(f"y_{h}d"))
    ranked = panel.with_columns(exprs)
    cols = {}
    for h in horizons:
        u = ranked[f"y_{h}d"].to_numpy(allow_copy=True).astype(np.float64)
        cols[f"y_{h}d"] = pl.Series(f"y_{h}d", ndtri(u), dtype=pl.Float64).cast(pl.Float32)
    return ranked.with_columns(list(cols.values())).with_columns(
        [pl.col(f"y_{h}d").fill_nan(None) for h in horizons]
    )
