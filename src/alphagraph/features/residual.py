"""Residual training targets: the labels ``y_{h}d`` with their sector or market-beta component removed per date.

``train.target`` picks what the core model's regression and rank losses are
trained on (the direction and signal heads keep their labels, and every metric,
the validation selection metric included, still scores raw labels / returns):

- ``raw``: ``y_{h}d`` itself;
- ``sector_neutral``: ``y - mean(y | date, sector)``, the mean over the date's
  stocks of the same sector that have the label; each row's sector is its
  universe row valid on the date (``start``/``end``, inclusive, null =
  unbounded; the first valid row wins); rows without one form one "unknown"
  group per date;
- ``beta_neutral``: per date, the residual of the least-squares fit
  ``y ~ a + b x`` over the rows with the label, where ``x`` is the trailing
  60-day market beta ``f_beta_mkt_60`` (:data:`BETA_EXPOSURE`; the longest
  default window: a beta estimated on 60 daily returns is far less noisy than
  on 5-30). ``x`` is the normalized feature: a per-date affine transform of the
  raw beta, which leaves the residuals of a fit with an intercept unchanged
  (up to the feature's clipping, and missing betas at 0, the date's median).

Both use only the cross-section of date t (the labels of t are targets anyway;
sectors and the beta are known at t), so they add no look-ahead. Residuals are
not rescaled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from alphagraph.runtime.errors import UserError

TARGETS = ("raw", "sector_neutral", "beta_neutral")
BETA_EXPOSURE = "f_beta_mkt_60"
UNKNOWN_SECTOR = "unknown"  # ingest's placeholder sector when the user gives no universe file


def label_columns(horizons: Sequence[int]) -> list[str]:
    return [f"y_{h}d" for h in horizons]


def row_sectors(panel: pl.DataFrame, universe: pl.DataFrame) -> pl.Series:
    """Each panel row's sector on its date (Utf8, null where the universe has none)."""
    if "code" not in universe.columns or "sector" not in universe.columns:
        raise UserError(f"train.target: sector_neutral needs a universe with columns code and sector, it has {universe.columns}")
    table = universe.select(
        pl.col("code").cast(pl.Utf8),
        pl.col("sector").cast(pl.Utf8),
        *((pl.col(c) if c in universe.columns else pl.lit(None)).cast(pl.Date).alias(c) for c in ("start", "end")),
    ).with_row_index("_u")
    rows = panel.select("date", "code").with_row_index("_r")
    d = pl.col("date")
    valid = (pl.col("start").is_null() | (pl.col("start") <= d)) & (pl.col("end").is_null() | (pl.col("end") >= d))
    hit = rows.join(table, on="code", how="inner").filter(valid)
    hit = hit.filter(pl.col("_u") == pl.col("_u").min().over("_r"))  # several valid rows: the first wins
    return rows.join(hit.select("_r", "sector"), on="_r", how="left").sort("_r")["sector"]


def sector_neutral(panel: pl.DataFrame, universe: pl.DataFrame, horizons: Sequence[int]) -> np.ndarray:
    """Float32 [rows, H]: each label minus its (date, sector) mean; NaN where the label is null."""
    sector = row_sectors(panel, universe)
    known = sector.is_not_null() & (sector != UNKNOWN_SECTOR)
    if not bool(known.any()):
        raise UserError(
            "train.target: sector_neutral needs sectors, but no stock of the panel has one in the universe"
            " (data.universe_path, column sector); use train.target: raw or beta_neutral"
        )
    cols = label_columns(horizons)
    frame = panel.select("date", *cols).with_columns(
        sector.fill_null(UNKNOWN_SECTOR).alias("_sector"), *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in cols)
    )
    out = frame.select(*(pl.col(c) - pl.col(c).mean().over("date", "_sector") for c in cols))
    return out.to_numpy().astype(np.float32)


def beta_neutral(panel: pl.DataFrame, horizons: Sequence[int], exposure: str = BETA_EXPOSURE) -> np.ndarray:
    """Float32 [rows, H]: per date, each label's residual on [1, ``exposure``]; NaN where the label is null."""
    if exposure not in panel.columns:
        betas = sorted(c for c in panel.columns if c.startswith("f_beta_mkt_"))
        raise UserError(
            f"train.target: beta_neutral needs the panel column {exposure} (the 60-day market beta; features.windows"
            f" must include 60 and features.families relative); the panel has {betas or 'no beta column'}"
        )
    cols = label_columns(horizons)
    x = pl.col(exposure).cast(pl.Float64).fill_nan(None).fill_null(0.0)
    frame = panel.select("date", x.alias("_x"), *(pl.col(c).cast(pl.Float64).fill_nan(None) for c in cols))
    parts = []
    for c in cols:
        y, has = pl.col(c), pl.col(c).is_not_null()
        xm = pl.when(has).then(pl.col("_x")).mean().over("date")  # means over the rows that have the label
        dx, dy = pl.col("_x") - xm, y - y.mean().over("date")
        sxx = pl.when(has).then(dx * dx).sum().over("date")
        sxy = (dx * dy).sum().over("date")  # null where the label is: skipped by sum
        slope = pl.when(sxx > 1e-12).then(sxy / sxx).otherwise(0.0)  # a constant exposure: only the mean goes
        parts.append((dy - slope * dx).alias(c))
    return frame.select(parts).to_numpy().astype(np.float32)


def residual_targets(
    panel: pl.DataFrame, target: str, horizons: Sequence[int], universe: pl.DataFrame | None = None
) -> np.ndarray | None:
    """The loss targets [rows, H] of ``train.target`` for every panel row, or None for ``raw`` (the labels themselves)."""
    if target == "raw":
        return None
    if target == "sector_neutral":
        if universe is None:
            raise ValueError("sector_neutral targets need the universe")
        return sector_neutral(panel, universe, horizons)
    if target == "beta_neutral":
        return beta_neutral(panel, horizons)
    raise ValueError(f"train.target must be one of {TARGETS}, got {target!r}")
