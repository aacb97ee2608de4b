"""The leaderboard table: one row per model of its pooled test figures, in display order; the
markdown, the summary metric and the HTML page all read this one frame."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

# Display order. The oracle is the planted expected return judged by the same
# evaluator: the ceiling on the synthetic market, not a model that competes. The
# feasible ceiling (alphagraph.evaluation.feasible) is the same signal recomputed from what a
# model sees: a ceiling too, never the best model.
MODELS = ("oracle", "feasible", "lgbm", "lgbm_graph", "gat", "core")
ORACLE = "oracle"
FEASIBLE = "feasible"
CEILINGS = (ORACLE, FEASIBLE)

# Horizons of the pairwise significance tests, when configured: summary.json is
# read in `dvc exp show`, so it carries only these headline pairs.
SIGNIFICANCE_HORIZONS = (1, 5)

# Test-dict metrics reported per horizon, in column order.
PER_HORIZON = ("rank_ic", "ic", "icir", "sharpe", "sharpe_net", "max_drawdown", "turnover")

# Top-k dropout backtest figures (Qlib's table) on the board, at the first headline horizon.
TOPK = ("topk_excess_return", "topk_information_ratio", "topk_max_drawdown", "topk_turnover")

# ------------------------------------------------------------------------ table


def _number(value: Any) -> float | None:
    """A finite float, or None: missing keys, strings and NaN all become null."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _order(names: Iterable[str]) -> list[str]:
    names = set(names)
    return [m for m in MODELS if m in names] + sorted(names - set(MODELS))


def topk_horizon(horizons: Sequence[int]) -> int:
    """The horizon of the top-k figures in ``metrics/{model}.json``: 1 day, else 5, else the first."""
    return next((h for h in SIGNIFICANCE_HORIZONS if h in horizons), horizons[0])


def board_columns(horizons: Sequence[int]) -> list[str]:
    """The numeric columns of :func:`leaderboard`, in order (without ``model``)."""
    cols = [f"{metric}_{h}d" for h in horizons for metric in PER_HORIZON]
    cols += [f"{metric}_{topk_horizon(horizons)}d" for metric in TOPK]
    return [*cols, "frac_oracle_1d", "frac_feasible_1d", "stage_seconds"]


def leaderboard(
    metrics: Mapping[str, Mapping[str, Any]],
    horizons: Sequence[int],
    timings: Mapping[str, Mapping[str, Any]] | None = None,
) -> pl.DataFrame:
    """One row per model (``MODELS`` order, then unknown names sorted) of pooled test metrics.

    ``metrics`` maps a model name to its parsed ``metrics/{model}.json``; absent
    models are skipped, and so is an oracle or feasible file marked ``"available": false``
    (a file data source has no planted truth). A missing key gives null.
    ``frac_feasible_1d`` = a model's test RankIC 1d / the feasible ceiling's (null without one).
    ``timings`` maps a stage name to its ``{"seconds", ...}`` record.
    """
    timings = timings or {}
    value_cols = board_columns(horizons)
    rows = []
    for model in _order(metrics):
        doc = metrics[model] or {}
        if doc.get("available") is False:
            continue
        test = doc.get("test")
        test = test if isinstance(test, Mapping) else {}
        row: dict[str, Any] = {"model": model}
        row |= {col: _number(test.get(col)) for col in value_cols[:-3]}
        # The oracle's own ratio is 1 by definition; its file does not carry it.
        row["frac_oracle_1d"] = 1.0 if model == ORACLE else _number(test.get("rank_ic_1d_vs_oracle"))
        row["frac_feasible_1d"] = None
        stage = timings.get(model)
        row["stage_seconds"] = _number(stage.get("seconds")) if isinstance(stage, Mapping) else None
        rows.append(row)
    # Shares of the feasible ceiling, computed here: model stages do not read its file.
    feasible = next((r["rank_ic_1d"] for r in rows if r["model"] == FEASIBLE), None) if "rank_ic_1d" in value_cols else None
    if feasible is not None and feasible > 0:
        for row in rows:
            row["frac_feasible_1d"] = None if row["rank_ic_1d"] is None else row["rank_ic_1d"] / feasible
    # An explicit schema keeps all-null columns Float64 (and an empty board well-typed).
    schema = {"model": pl.String} | {col: pl.Float64 for col in value_cols}
    return pl.DataFrame(rows, schema=schema, orient="row")


# ---------------------------------------------------------------------- summary


def best_model(board: pl.DataFrame, column: str = "rank_ic_1d") -> str | None:
    """The model (not a ceiling) with the highest ``column`` (first in display order on a tie)."""
    if column not in board.columns:
        return None
    ranked = (
        board.filter(~pl.col("model").is_in(CEILINGS), pl.col(column).is_not_null())
        .sort(column, descending=True, maintain_order=True)
    )
    return ranked["model"][0] if ranked.height else None
