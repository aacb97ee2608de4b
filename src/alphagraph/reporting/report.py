"""Leaderboard of the model stages: one table from ``metrics/{model}.json``.

Every figure is the pooled test-fold evaluation (the ``test`` dict each model
stage writes). Two outputs come from the same table:

* ``summary(board, tests)`` -> ``metrics/summary.json``, a DVC metric. It leaves
  out stage wall time so it is byte-identical across reruns.
* ``to_markdown(board, ..., tests=tests)`` -> ``reports/leaderboard.md``, for
  people. It does show stage time, so it is committed to git rather than being
  a DVC out.

``tests`` are pairwise Newey-West tests of the daily test RankIC series
(``plots/{model}/rank_ic.csv``, see :mod:`alphagraph.evaluation.significance`): is one
model's lead over another more than day-to-day noise?

The table is built in :mod:`.board`, its Markdown in :mod:`.markdown`, the run's facts in
:mod:`.facts`; this module reads the inputs and computes the summary and the tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from alphagraph.evaluation.significance import pairwise_rank_ic_tests
from alphagraph.reporting.board import (
    CEILINGS,
    FEASIBLE,
    MODELS,
    ORACLE,
    PER_HORIZON,
    SIGNIFICANCE_HORIZONS,
    TOPK,
    _order,
    best_model,
    board_columns,
    leaderboard,
    topk_horizon,
)
from alphagraph.reporting.facts import backtest_description, backtest_note, data_kept, fills_note, modelled_span, run_facts
from alphagraph.reporting.markdown import (
    DASH,
    SECTORS_SHOWN,
    _fmt,
    _pct,
    format_seconds,
    markdown_table,
    significance_markdown,
    to_markdown,
    topk_markdown,
    wins_markdown,
)

__all__ = [
    # moved to board, markdown and facts; importable from here as before
    "CEILINGS", "FEASIBLE", "MODELS", "ORACLE", "PER_HORIZON", "SIGNIFICANCE_HORIZONS", "TOPK", "best_model",
    "board_columns", "leaderboard", "topk_horizon",
    "DASH", "SECTORS_SHOWN", "_fmt", "_pct", "format_seconds", "markdown_table", "significance_markdown",
    "to_markdown", "topk_markdown", "wins_markdown",
    "backtest_description", "backtest_note", "data_kept", "fills_note", "modelled_span", "run_facts",
    # the inputs, the summary and the tests
    "RANK_IC_FILE", "SUMMARY_FILE", "ReportError", "summary", "significance_tests", "baseline_model",
    "significance_summary", "load_metrics", "significance_horizons", "load_rank_ic",
]

RANK_IC_FILE = "rank_ic.csv"

# Written by the report stage itself; never an input to it.
SUMMARY_FILE = "summary.json"


class ReportError(ValueError):
    """A metrics or timings file that cannot be read as the expected JSON."""


# ---------------------------------------------------------------------- summary


def summary(board: pl.DataFrame, tests: Mapping[int, pl.DataFrame] | None = None) -> dict[str, Any]:
    """``metrics/summary.json``: the best model and, with ``tests`` (:func:`significance_tests`), ``significance``.

    Each model's figures are its own ``metrics/{model}.json``; this file adds
    only what needs every model at once, so that ``dvc exp show`` stays narrow
    (see :func:`significance_summary`).
    """
    out: dict[str, Any] = {"best_model_rank_ic_1d": best_model(board)}
    if tests is not None:
        out["significance"] = significance_summary(tests)
    return out


# ----------------------------------------------------------------- significance


def significance_tests(series: Mapping[str, pl.DataFrame], horizons: Sequence[int]) -> dict[int, pl.DataFrame]:
    """Pairwise Newey-West tests of daily test RankIC, per horizon (``a, b, diff, se, t, n, lags``).

    At each horizon only the models whose series has that column and at least
    one value take part (an unavailable oracle writes an empty file).
    """
    def has(frame: pl.DataFrame, col: str) -> bool:
        return col in frame.columns and frame[col].drop_nulls().drop_nans().len() > 0

    return {
        h: pairwise_rank_ic_tests({m: series[m] for m in _order(series) if has(series[m], f"rank_ic_{h}d")}, h)
        for h in horizons
    }


def baseline_model(models: Iterable[str]) -> str | None:
    """The model every other is tested against in the summary: lgbm when present, else the first non-ceiling."""
    ordered = [m for m in _order(models) if m not in CEILINGS]
    return "lgbm" if "lgbm" in ordered else (ordered[0] if ordered else None)


def significance_summary(tests: Mapping[int, pl.DataFrame]) -> dict[str, dict[str, float | None]]:
    """``{"1d": {"core-lgbm": t}}``: the Newey-West t of each model's mean daily RankIC lead over the
    baseline (:func:`baseline_model`). The differences are in the headline files and every pair is in
    the leaderboard; here one number per model keeps ``dvc exp show`` narrow.
    """
    out = {}
    for h, test in tests.items():
        base = baseline_model(set(test["a"].to_list())) if test.height else None
        rows = test.filter(pl.col("b") == base, ~pl.col("a").is_in(CEILINGS)) if base else test.clear()
        out[f"{h}d"] = {f"{r['a']}-{r['b']}": None if r["t"] is None else round(r["t"], 3) for r in rows.iter_rows(named=True)}
    return out


# ---------------------------------------------------------------------- loading


def _read(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: unreadable metrics JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _is_model_metrics(doc: Mapping[str, Any]) -> bool:
    test = doc.get("test")
    return isinstance(test, Mapping) and "rank_ic_1d" in test


def load_metrics(metrics_dir: Path, detail_dir: Path | None = None) -> tuple[dict[str, dict], dict[str, dict]]:
    """Read ``(metrics, timings)`` from ``metrics_dir``; a model's figures from ``detail_dir/{model}.json``
    when that exists (the headline file in ``metrics_dir`` carries only some of them).

    ``metrics``: ``{model}.json`` for each known model present, plus any other
    ``*.json`` there whose ``test`` dict has ``rank_ic_1d`` (an ad-hoc model
    stage), never ``summary.json``. ``timings``: ``{stage: {"seconds", ...}}``
    merged from ``timings/*.json``. An unreadable file raises :class:`ReportError`
    naming it.
    """
    metrics_dir = Path(metrics_dir)
    metrics: dict[str, dict] = {}
    for path in sorted(metrics_dir.glob("*.json")):
        model = path.stem
        if path.name == SUMMARY_FILE:
            continue
        detail = Path(detail_dir) / path.name if detail_dir is not None else None
        doc = _read(detail if detail is not None and detail.exists() else path)
        if model in MODELS or _is_model_metrics(doc):
            metrics[model] = doc
    timings: dict[str, dict] = {}
    for path in sorted((metrics_dir / "timings").glob("*.json")):
        doc = _read(path)
        timings |= {stage: rec for stage, rec in doc.items() if isinstance(rec, dict)}
    return metrics, timings


def significance_horizons(horizons: Sequence[int]) -> list[int]:
    """The configured horizons among :data:`SIGNIFICANCE_HORIZONS`, else the first configured one."""
    return [h for h in SIGNIFICANCE_HORIZONS if h in horizons] or list(horizons[:1])


def load_rank_ic(plots_dir: Path, models: Iterable[str]) -> dict[str, pl.DataFrame]:
    """``{model: frame}`` of ``plots_dir/{model}/rank_ic.csv`` (date, rank_ic_{h}d), test days only.

    A model without the file is left out (an ad-hoc model stage may write no
    plots); an empty file (the oracle on a file source) is kept and the tests
    skip it. An unreadable file raises :class:`ReportError` naming it.
    """
    out = {}
    for model in models:
        path = Path(plots_dir) / model / RANK_IC_FILE
        if not path.exists():
            continue
        try:
            # Dates stay strings: they only need to line up across models.
            frame = pl.read_csv(path, schema_overrides={"date": pl.String}, infer_schema_length=None)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise ReportError(f"{path}: unreadable daily RankIC CSV ({exc})") from None
        values = [c for c in frame.columns if c.startswith("rank_ic_")]
        if "date" not in frame.columns:
            raise ReportError(f"{path}: no date column (has {frame.columns})")
        try:
            out[model] = frame.select("date", *(pl.col(c).cast(pl.Float64) for c in values))
        except pl.exceptions.PolarsError as exc:
            raise ReportError(f"{path}: RankIC columns are not numbers ({exc})") from None
    return out
