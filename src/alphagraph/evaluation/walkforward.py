"""Shared plumbing of the model stages: inputs per fold, evaluation, and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from alphagraph.runtime import paths
from alphagraph.evaluation.backtest import Market
from alphagraph.runtime.config import Params
from alphagraph.runtime.errors import UserError
from alphagraph.evaluation.evaluate import evaluate, next_day_returns
from alphagraph.runtime.io import read_json, read_parquet, write_csv, write_json, write_parquet
from alphagraph.evaluation.split import Fold, assign_split, load_folds


def label_reach(params: Params) -> int:
    """Trading days a label looks ahead: max(horizon) + label delay."""
    return max(params.features.horizons) + params.features.label_delay


def split_for(panel: pl.DataFrame, fold: Fold, params: Params) -> pl.DataFrame:
    return assign_split(panel, fold, label_reach(params))


def realized_returns(panel: pl.DataFrame, horizons: list[int], prices: pl.DataFrame | None = None) -> pl.DataFrame:
    """``date, code, ret_{h}d, r_next`` and the ``dir_{h}d`` / ``sig_{h}d`` labels the panel has, for the evaluator."""
    if prices is None:
        prices = read_parquet(paths.PRICES, columns=["date", "code", "close"])
    labels = [c for h in horizons for c in (f"dir_{h}d", f"sig_{h}d") if c in panel.columns]
    cols = [f"ret_{h}d" for h in horizons] + labels
    return panel.select("date", "code", *cols).join(next_day_returns(prices), on=["date", "code"], how="left")


def market_data() -> tuple[pl.DataFrame, Market]:
    """The raw closes and the top-k backtest's market (closes and benchmark)."""
    prices = read_parquet(paths.PRICES, columns=["date", "code", "close"])
    return prices, Market.from_frames(prices, read_parquet(paths.BENCHMARK), str(paths.BENCHMARK))


def oracle_rank_ic_1d(path: Path = paths.METRICS / "oracle.json") -> float | None:
    """The oracle's pooled test RankIC at 1 day, when the market has a planted truth."""
    if not path.exists():
        return None
    return read_json(path).get("test", {}).get("rank_ic_1d")


# Headline figures of a model's metrics JSON (read in `dvc exp show`), at each headline horizon.
HEADLINE = ("ic", "rank_ic", "rank_icir", "sharpe", "sharpe_net", "turnover")
HEADLINE_HORIZONS = (1, 5)
# The top-k dropout backtest's figures that rank Qlib's table, at the first headline horizon only
# (drawdown and turnover are in the detail file and the leaderboard: `dvc exp show` stays narrow).
HEADLINE_TOPK = ("topk_excess_return", "topk_information_ratio")


def headline_horizons(horizons: list[int]) -> list[int]:
    """The configured horizons among :data:`HEADLINE_HORIZONS`, else the first configured one."""
    return [h for h in HEADLINE_HORIZONS if h in horizons] or list(horizons[:1])


def headline(metrics: dict[str, Any], horizons: list[int]) -> dict[str, Any]:
    """``metrics/{model}.json``: the pooled test figures of :data:`HEADLINE` at the headline horizons,
    :data:`HEADLINE_TOPK` at the first, and the share of the oracle's RankIC; the rest stays in the detail file."""
    test = metrics.get("test", {})
    first = headline_horizons(horizons)[0]
    keys = [f"{m}_{h}d" for h in headline_horizons(horizons) for m in HEADLINE] + ["rank_ic_1d_vs_oracle"]
    keys += [f"{m}_{first}d" for m in HEADLINE_TOPK]
    out: dict[str, Any] = {k: metrics[k] for k in ("available",) if k in metrics}
    return out | {"test": {k: test[k] for k in keys if k in test}}


def evaluate_and_write(
    name: str,
    predictions: pl.DataFrame,
    panel: pl.DataFrame,
    params: Params,
    extra: dict[str, Any] | None = None,
    oracle_ic: float | None = None,
    predictions_path: Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``predictions``; write predictions, the headline metrics JSON, the detail JSON and plot CSVs.

    ``metrics/{name}.json`` holds :func:`headline`; ``reports/models/{name}.json``
    every figure (per fold, validation, training). Returns the latter.
    """
    horizons = params.features.horizons
    prices, market = market_data()
    metrics, series = evaluate(
        predictions,
        realized_returns(panel, horizons, prices),
        horizons,
        params.eval,
        oracle_rank_ic_1d=oracle_ic,
        name=name,
        market=market,
    )
    _require_headline(name, metrics, predictions, params)
    metrics |= extra or {}
    write_parquet(predictions.sort("fold", "date", "code"), predictions_path or paths.PREDICTIONS / f"{name}.parquet")
    plots = paths.PLOTS / name
    write_csv(series["rank_ic"], plots / "rank_ic.csv")
    write_csv(series["cum_return"], plots / "cum_return.csv")
    if "topk" in series:
        write_csv(series["topk"], plots / "topk.csv")
    write_json(metrics, paths.DETAIL / f"{name}.json")
    write_json(headline(metrics, params.features.horizons), paths.METRICS / f"{name}.json")
    return metrics


def _require_headline(name: str, metrics: dict[str, Any], predictions: pl.DataFrame, params: Params) -> None:
    """A stage never finishes with null headline metrics: say which knob makes them undefined."""
    h = params.features.horizons[0]
    keys = [f"rank_ic_{h}d", f"ic_{h}d", f"sharpe_{h}d"]
    missing = [k for k in keys if metrics["test"].get(k) is None]
    if not missing:
        return
    test = predictions.filter(pl.col("split") == "test")
    widest = int(test.group_by("date").len()["len"].max() or 0)
    need_book = int(np.ceil(1 / params.eval.quantile))
    raise UserError(
        f"{name}: test metrics {', '.join('test.' + k for k in missing)} are undefined: the widest test"
        f" cross-section has {widest} stocks, a daily rank correlation needs at least 3 and the"
        f" long-short book at least 1 / eval.quantile = {need_book} (or the predictions are constant)."
        " Use more stocks (normalize.min_stocks keeps dates with fewer out) or a larger eval.quantile"
    )
