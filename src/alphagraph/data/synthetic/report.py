"""How strong the planted signal is in a generated market (docs/synthetic_market.md)."""

from __future__ import annotations

import polars as pl

from alphagraph.data.synthetic.components import COMPONENTS
from alphagraph.data.synthetic.frames import Market
from alphagraph.runtime.config import SignalConfig


def signal_report(market: Market, horizons: tuple[int, ...] = (1, 5)) -> dict:
    """Measure the planted signal: oracle (Rank)IC per horizon, per-component RankIC at 1 day,
    and each component's share of the oracle's cross-sectional variance.

    ``variance_share[k]`` = mean_t var_t(c_k) / mean_t var_t(alpha);
    ``covariance_share[k]`` = mean_t cov_t(c_k, alpha) / mean_t var_t(alpha) (sums to 1).
    """
    cols = ["alpha"] + [f"alpha_{k}" for k in COMPONENTS]
    panel = _forward_returns(market.prices, horizons).join(
        market.oracle, on=["date", "code"], how="inner"
    )
    report: dict = {"n_dates": panel["date"].n_unique(), "n_rows": panel.height}
    for h in horizons:
        ic = _daily_ic(panel, ["alpha"], f"ret_{h}d")
        report[f"rank_ic_{h}d"] = ic["rank_alpha"].mean()
        report[f"rank_icir_{h}d"] = ic["rank_alpha"].mean() / ic["rank_alpha"].std()
        report[f"ic_{h}d"] = ic["pearson_alpha"].mean()
    comp_ic = _daily_ic(panel, cols[1:], f"ret_{horizons[0]}d")
    report[f"component_rank_ic_{horizons[0]}d"] = {
        k: comp_ic[f"rank_alpha_{k}"].mean() for k in COMPONENTS
    }
    moments = (
        panel.group_by("date")
        .agg(
            [pl.col(c).var(ddof=0).alias(f"var_{c}") for c in cols]
            + [pl.cov(c, "alpha", ddof=0).alias(f"cov_{c}") for c in cols[1:]]
        )
        .sort("date")  # a fixed order keeps the report's floats reproducible
    )
    total = moments["var_alpha"].mean()
    report["variance_share"] = {k: moments[f"var_alpha_{k}"].mean() / total for k in COMPONENTS}
    report["covariance_share"] = {k: moments[f"cov_alpha_{k}"].mean() / total for k in COMPONENTS}
    return report


def nominal_shares(signal: SignalConfig) -> dict[str, float]:
    """Each component's nominal variance share a_k^2 / sum_j a_j^2 (for comparison)."""
    strengths = {k: getattr(signal, k) for k in COMPONENTS}
    total = sum(a * a for a in strengths.values())
    return {k: (a * a / total if total else 0.0) for k, a in strengths.items()}


def _forward_returns(prices: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """``ret_{h}d`` = close over the stock's next h trading days / close - 1 (null at the end)."""
    return (
        prices.select("date", "code", "close")
        .sort("code", "date")
        .with_columns(
            (pl.col("close").shift(-h).over("code") / pl.col("close") - 1.0).alias(f"ret_{h}d")
            for h in horizons
        )
        .drop("close")
    )


def _daily_ic(panel: pl.DataFrame, cols: list[str], target: str) -> pl.DataFrame:
    """Per-date Spearman (``rank_<col>``) and Pearson (``pearson_<col>``) correlation with ``target``."""
    return (
        panel.filter(pl.col(target).is_not_null())
        .group_by("date")
        .agg(
            [pl.corr(c, target, method="spearman").alias(f"rank_{c}") for c in cols]
            + [pl.corr(c, target).alias(f"pearson_{c}") for c in cols]
            + [pl.len().alias("n")]
        )
        .filter(pl.col("n") >= 3)
        .fill_nan(None)
        .sort("date")
    )
