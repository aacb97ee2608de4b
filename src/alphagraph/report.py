"""Leaderboard of the model stages: one table from ``metrics/{model}.json``.

Every figure is the pooled test-fold evaluation (the ``test`` dict each model
stage writes). Two outputs come from the same table:

* ``summary(board, tests)`` -> ``metrics/summary.json``, a DVC metric. It leaves
  out stage wall time so it is byte-identical across reruns.
* ``to_markdown(board, ..., tests=tests)`` -> ``reports/leaderboard.md``, for
  people. It does show stage time, so it is committed to git rather than being
  a DVC out.

``tests`` are pairwise Newey-West tests of the daily test RankIC series
(``plots/{model}/rank_ic.csv``, see :mod:`alphagraph.significance`): is one
model's lead over another more than day-to-day noise?
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from alphagraph.config import Params
from alphagraph.significance import pairwise_rank_ic_tests
from alphagraph.split import Fold

# Display order. The oracle is the planted expected return judged by the same
# evaluator: the ceiling on the synthetic market, not a model that competes. The
# feasible ceiling (alphagraph.feasible) is the same signal recomputed from what a
# model sees: a ceiling too, never the best model.
MODELS = ("oracle", "feasible", "lgbm", "lgbm_graph", "gat", "core")
ORACLE = "oracle"
FEASIBLE = "feasible"
CEILINGS = (ORACLE, FEASIBLE)

# Horizons of the pairwise significance tests, when configured: summary.json is
# read in `dvc exp show`, so it carries only these headline pairs.
SIGNIFICANCE_HORIZONS = (1, 5)
RANK_IC_FILE = "rank_ic.csv"

# Test-dict metrics reported per horizon, in column order.
PER_HORIZON = ("rank_ic", "ic", "icir", "sharpe", "sharpe_net", "max_drawdown", "turnover")

# Top-k dropout backtest figures (Qlib's table) on the board, at the first headline horizon.
TOPK = ("topk_excess_return", "topk_information_ratio", "topk_max_drawdown", "topk_turnover")

# Written by the report stage itself; never an input to it.
SUMMARY_FILE = "summary.json"

DASH = "—"


class ReportError(ValueError):
    """A metrics or timings file that cannot be read as the expected JSON."""


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


# --------------------------------------------------------------------- markdown


def _fmt(value: float | None, decimals: int) -> str:
    if value is None:
        return DASH
    text = f"{value:.{decimals}f}"
    # "-0.0000" reads like a sign that means something; it does not.
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _pct(value: float | None, decimals: int = 1) -> str:
    return DASH if value is None else f"{_fmt(100 * value, decimals)}%"


def format_seconds(seconds: float | None) -> str:
    """Wall time as ``8.3s``, ``42s``, ``1m 52s`` or ``2h 03m``; ``—`` when unknown."""
    if seconds is None:
        return DASH
    if seconds < 10:
        return f"{seconds:.1f}s"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total // 3600}h {total % 3600 // 60:02d}m"


def markdown_table(header: list[str], align: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def to_markdown(
    board: pl.DataFrame,
    horizons: Sequence[int],
    show: Sequence[int] = (1, 5),
    tests: Mapping[int, pl.DataFrame] | None = None,
    wins: Mapping[str, pl.DataFrame] | None = None,
    backtest: str | None = None,
    execution_lag: int = 1,
) -> str:
    """A Markdown leaderboard of ``board`` (deterministic; ends with a newline).

    ``backtest`` describes the top-k dropout backtest (:func:`backtest_note`) for its table;
    ``execution_lag`` says when the long-short book trades.

    With ``wins`` (``{"sector", "regime", "stocks"}`` frames of :mod:`alphagraph.wins`)
    a section says where each model wins.

    The main table shows RankIC / IC / ICIR and gross / net Sharpe for each
    horizon in ``show`` that is also in ``horizons``, then drawdown and turnover
    at the shortest of them; a second table gives RankIC at every horizon; with
    ``tests`` (:func:`significance_tests`) a last section gives the pairwise
    Newey-West tests.
    """
    shown = [h for h in show if h in horizons] or list(horizons[:1])
    short = min(shown)
    best = best_model(board)
    # The "/ feasible" column only when a feasible ceiling with data is on the board.
    feasible = "frac_feasible_1d" in board.columns and board["frac_feasible_1d"].drop_nulls().len() > 0

    header, align = ["Model"], ["---"]
    for h in shown:
        header += [f"RankIC {h}d", f"IC {h}d", f"ICIR {h}d"]
    for h in shown:
        header += [f"Sharpe {h}d", f"Sharpe net {h}d"]
    header += [f"Max DD {short}d", f"Turnover {short}d", "Oracle share", *(["/ feasible"] if feasible else []), "Stage time"]
    align += ["---:"] * (len(header) - 1)

    rows = []
    for r in board.iter_rows(named=True):
        get = r.get  # a horizon missing from the board reads as null
        name = {ORACLE: "oracle (ceiling)", FEASIBLE: "feasible (ceiling from observables)"}.get(r["model"], r["model"])
        cells = [f"**{name}**" if r["model"] == best else name]
        for h in shown:
            cells += [_fmt(get(f"rank_ic_{h}d"), 4), _fmt(get(f"ic_{h}d"), 4), _fmt(get(f"icir_{h}d"), 2)]
        for h in shown:
            cells += [_fmt(get(f"sharpe_{h}d"), 2), _fmt(get(f"sharpe_net_{h}d"), 2)]
        cells += [
            _pct(get(f"max_drawdown_{short}d")),
            _fmt(get(f"turnover_{short}d"), 2),
            _pct(get("frac_oracle_1d"), 0),
            *([_pct(get("frac_feasible_1d"), 0)] if feasible else []),
            format_seconds(get("stage_seconds")),
        ]
        rows.append(cells)

    lines = [
        "# Leaderboard",
        "",
        "Pooled test folds of the walk-forward split (the `test` dict of `reports/models/{model}.json`). "
        + (
            "The oracle is the planted expected return, i.e. the ceiling on this synthetic market, not a model."
            if ORACLE in board["model"].to_list()
            else "There is no ceiling: the data carries no planted truth (a file source), so no oracle row "
            "and no oracle share."
        ),
        "",
        *markdown_table(header, align, rows),
        "",
        f"Best model by test RankIC 1d: **{best}**." if best else "No model has a test RankIC 1d.",
        "",
        "- RankIC / IC: mean daily Spearman / Pearson correlation of prediction and realized h-day return; "
        "ICIR: its mean over its standard deviation.",
        "- Sharpe: annualized, long-short top/bottom-quantile book held in overlapping h-day tranches, "
        f"{fills_note(execution_lag)}; the same-close figures (idealized) are in `reports/models/*.json` "
        "as `*_same_close_*`; net: after trading costs (`eval.cost_bps`). Where an oracle is shown (the synthetic market) a Sharpe "
        "is a calibration against the planted signal, not a forecast of live performance: no market impact, "
        "no borrow costs, a signal that is there by construction.",
        f"- Max DD: largest fall of the cumulative gross {short}d P&L; "
        f"turnover: mean daily sum of absolute weight changes (gross exposure 2).",
        "- Oracle share: test RankIC 1d as a share of the oracle's. "
        + (
            "/ feasible: as a share of the feasible ceiling's, the planted components recomputed from what a "
            "model sees (observed relations, estimated volatility, strengths fixed or fitted on past days; "
            "docs/synthetic_market.md, \"Two ceilings\"). "
            if feasible
            else ""
        )
        + "Stage time: wall time of the stage's last run (`metrics/timings/`).",
        "",
    ]

    lines += topk_markdown(board, horizons, backtest)

    if len(horizons) > len(shown):
        header = ["Model", *(f"RankIC {h}d" for h in horizons)]
        rows = [[r["model"], *(_fmt(r.get(f"rank_ic_{h}d"), 4) for h in horizons)] for r in board.iter_rows(named=True)]
        lines += ["## RankIC by horizon", "", *markdown_table(header, ["---"] + ["---:"] * len(horizons), rows), ""]

    if tests is not None:
        lines += significance_markdown(tests)
    if wins is not None:
        lines += wins_markdown(wins)

    return "\n".join(lines).rstrip("\n") + "\n"


def fills_note(execution_lag: int) -> str:
    """When the books trade (``eval.execution_lag``), said plainly."""
    if execution_lag == 0:
        return "same-close fills (execution lag 0: idealized, the score needs the close it trades at)"
    when = "the next session's close" if execution_lag == 1 else f"the close {execution_lag} sessions later"
    return f"fills at {when} after each prediction (execution lag {execution_lag})"


def backtest_note(
    topk: int, n_drop: int, open_cost: float, close_cost: float, min_cost: float, benchmark: str,
    execution_lag: int = 1, annualization: float = 252.0, delisting: str = "sell",
) -> str:
    """One sentence of the top-k backtest's settings, for the tables that show it."""
    dead = "sold at their last close" if delisting == "sell" else "held as dead positions (Qlib)"
    return (
        f"top {topk}, n_drop {n_drop}, open cost {open_cost:.2%}, close cost {close_cost:.2%}, minimum cost"
        f" {min_cost:g}, {fills_note(execution_lag)}, {annualization:g} days a year, delisted stocks {dead};"
        f" benchmark: {benchmark}"
    )


def backtest_description(params: Params, benchmark: str) -> str:
    """:func:`backtest_note` of ``eval.backtest``; ``benchmark``: what ingest used (``equal_weight`` or a file)."""
    bt = params.eval.backtest
    name = "the equal-weight universe" if benchmark == "equal_weight" else f"the index in {benchmark}"
    return backtest_note(
        bt.topk, bt.n_drop, bt.open_cost, bt.close_cost, bt.min_cost, name,
        params.eval.execution_lag, bt.annualization, bt.delisting,
    )


def _kept_share(kept: int, total: int) -> str:
    """``kept / total`` in % to one decimal, never rounded to 100% while something was dropped, nor to 0% while kept."""
    share = 100.0 * kept / total if total else 100.0
    if kept < total:
        share = min(share, 99.9)
    if kept > 0:
        share = max(share, 0.1)
    return f"{share:.1f}%"


# Ingest's `dropped.<reason>` counts that are not price rows (the universe's and the relations' rows).
_SIDE_REASONS = ("universe_", "relations_")


def data_kept(
    ingest: Mapping[str, Any], features: Mapping[str, Any], normalize: Mapping[str, Any], min_stocks: int
) -> str | None:
    """What each data stage kept of what it read (``metrics/{ingest,features,normalize}.json``); None without them.

    Ingest drops invalid price rows (per reason in ``dropped.*``), features drops none
    (warm-up windows stay, as nulls), normalize drops dates with fewer than
    ``normalize.min_stocks`` stocks.
    """
    parts = []
    if isinstance(ingest.get("rows"), int):
        reasons = {k.removeprefix("dropped."): int(v) for k, v in ingest.items()
                   if k.startswith("dropped.") and not k.removeprefix("dropped.").startswith(_SIDE_REASONS) and v}
        # A source without per-reason counts (synthetic) reports only the total.
        dropped = sum(reasons.values()) if any(k.startswith("dropped.") for k in ingest) else int(ingest.get("dropped_rows", 0))
        read = ingest["rows"] + dropped
        if dropped:
            top = ", ".join(f"{k} {v:,}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
            parts.append(f"ingest {_kept_share(ingest['rows'], read)} of price rows ({dropped:,} of {read:,} dropped"
                         + (f": {top}" if top else "") + ")")
        else:
            parts.append(f"ingest all {read:,} price rows")
    if isinstance(features.get("rows"), int):
        read = ingest.get("rows") if isinstance(ingest.get("rows"), int) else features["rows"]
        nulls = features.get("null_share")
        note = f" (warm-up windows kept: {100 * nulls:.1f}% of feature values null)" if isinstance(nulls, (int, float)) else ""
        kept = "all rows" if features["rows"] >= read else f"{_kept_share(features['rows'], read)} of rows"
        parts.append(f"features {kept}{note}")
    if isinstance(normalize.get("dates"), int):
        n_dates, n_rows = normalize.get("dates_dropped_min_stocks", 0), normalize.get("rows_dropped_min_stocks", 0)
        all_dates, all_rows = normalize["dates"] + n_dates, normalize.get("rows", 0) + n_rows
        if n_dates:
            parts.append(
                f"normalize {_kept_share(normalize['dates'], all_dates)} of dates, {_kept_share(normalize.get('rows', 0), all_rows)}"
                f" of rows ({n_dates:,} of {all_dates:,} dates dropped: fewer than normalize.min_stocks = {min_stocks} stocks)"
            )
        else:
            parts.append(f"normalize all {all_dates:,} dates")
    return ", ".join(parts) or None


def modelled_span(span: tuple[Any, Any] | None, n_dates: Any, folds: Sequence[Fold]) -> str | None:
    """First and last date of the normalized panel (what the models see), and of the folds; None without either."""
    parts = []
    if span is not None:
        count = f" ({n_dates:,} dates, normalized panel)" if isinstance(n_dates, int) else " (normalized panel)"
        parts.append(f"{span[0]} to {span[1]}{count}")
    if folds:
        # purged k-fold trains after the test block too: the folds' last day is the later of both
        first = min(f.train[0] for f in folds)
        last = max(max(f.test[1], f.train[1]) for f in folds)
        parts.append(f"folds {first} to {last}")
    return "; ".join(parts) or None


def run_facts(
    params: Params,
    ingest: Mapping[str, Any],
    folds: Sequence[Fold],
    backtest: str,
    *,
    features: Mapping[str, Any] | None = None,
    normalize: Mapping[str, Any] | None = None,
    span: tuple[Any, Any] | None = None,
) -> dict[str, str]:
    """What the visual report's header says about the run: data, what the data stages kept, the span modelled,
    split, horizons, costs, seed.

    ``features``, ``normalize``: those stages' metrics files; ``span``: the normalized panel's first and
    last date. ``data`` is the data as ingested: a stage that drops dates can leave the models far less.
    """
    source = (
        f"synthetic market (market_seed {params.data.synthetic.market_seed})"
        if params.data.source == "synthetic"
        else f"files: {params.data.path}"
    )
    span_in = f"{ingest.get('stocks', '?')} stocks, {ingest.get('first_date', '?')} to {ingest.get('last_date', '?')}"
    facts = {"data": f"{source}, {span_in}"}
    if kept := data_kept(ingest, features or {}, normalize or {}, params.normalize.min_stocks):
        facts["data kept"] = kept
    if modelled := modelled_span(span, (normalize or {}).get("dates"), folds):
        facts["modelled"] = modelled
    if folds:
        fixed = params.split.test_start is not None
        scheme = "fixed split" if fixed else params.split.scheme.replace("_", " ")
        count = "" if fixed else f", {len(folds)} fold{'s' if len(folds) > 1 else ''}"
        facts["split"] = (
            f"{scheme}{count}, test days {min(f.test[0] for f in folds)} to {max(f.test[1] for f in folds)}"
            + (" (pooled)" if len(folds) > 1 else "")
        )
    horizons = ", ".join(f"{h}d" for h in params.features.horizons)
    facts["horizons"] = f"{horizons} (label delay {params.features.label_delay})"
    facts["long-short book"] = (
        f"top / bottom {params.eval.quantile:.0%}, {params.eval.cost_bps:g} bp cost, {fills_note(params.eval.execution_lag)}"
    )
    facts["top-k backtest"] = backtest
    facts["seed"] = str(params.seed)
    return facts


def topk_markdown(board: pl.DataFrame, horizons: Sequence[int], note: str | None) -> list[str]:
    """The top-k dropout table: Qlib's figures (excess return with cost, IR, max drawdown) and turnover."""
    h = topk_horizon(horizons)
    cols = [f"{m}_{h}d" for m in TOPK]
    if not all(c in board.columns for c in cols) or board.select(pl.col(cols[0]).is_null().all()).item():
        return []
    header = ["Model", "Excess return (ann.)", "Information ratio", "Max drawdown", "Turnover (daily)"]
    rows = [
        [r["model"], _pct(r[cols[0]]), _fmt(r[cols[1]], 2), _pct(r[cols[2]]), _pct(r[cols[3]])]
        for r in board.iter_rows(named=True)
    ]
    return [
        f"## Top-k dropout backtest ({h}d predictions, Qlib's TopkDropoutStrategy)",
        "",
        *markdown_table(header, ["---"] + ["---:"] * 4, rows),
        "",
        f"Excess return over the benchmark after costs, summed daily returns as Qlib reports them"
        f" ({note or 'eval.backtest'}). Max drawdown of the cumulative excess (Qlib's sign);"
        " turnover: value traded (buys + sells) per day over the account's value.",
        "",
    ]


# Sectors shown in the leaderboard (the largest by stocks); every sector is in plots/report/sector_rank_ic.csv.
SECTORS_SHOWN = 12


def wins_markdown(wins: Mapping[str, pl.DataFrame]) -> list[str]:
    """Lines of the "where each model wins" section: RankIC 1d by regime and by sector, and stock win shares."""
    lines = ["## Where each model wins (test, 1d)", ""]
    regime, sector, stocks = wins.get("regime"), wins.get("sector"), wins.get("stocks")
    if regime is not None and regime.height:
        models = _order(regime["model"].unique().to_list())
        cell = {(r["model"], r["regime"]): r for r in regime.iter_rows(named=True)}
        rows = []
        for name in ("calm", "turbulent"):
            days = max((cell[(m, name)]["n_days"] for m in models if (m, name) in cell), default=0)
            rows.append([f"{name} ({days} days)", *(
                f"{_fmt(cell[(m, name)]['rank_ic'], 4)} ({_fmt(cell[(m, name)]['t'], 1)})" if (m, name) in cell else DASH
                for m in models)])
        lines += [
            "RankIC (Newey-West t) by market regime: turbulent where the equal-weight market's 20-day realized "
            "volatility is above its expanding median (known at the date; no look-ahead).", "",
            *markdown_table(["Regime", *models], ["---"] + ["---:"] * len(models), rows), "",
        ]
    if sector is not None and sector.height:
        contenders = sector.filter(~pl.col("model").is_in(CEILINGS), pl.col("rank_ic").is_not_null())
        best = contenders.sort("rank_ic", descending=True).group_by("sector", maintain_order=True).first()
        won = best.group_by("model").len().sort("len", "model", descending=[True, False])
        size = sector.group_by("sector").agg(pl.col("mean_stocks").max()).sort("mean_stocks", "sector", descending=[True, False])
        shown = size.head(SECTORS_SHOWN).join(best, on="sector", how="left", suffix="_best")
        rows = [[r["sector"], f"{r['mean_stocks']:.0f}", r["model"] or DASH, _fmt(r["rank_ic"], 4), _fmt(r["t"], 1)]
                for r in shown.iter_rows(named=True)]
        lines += [
            f"Within-sector RankIC: the best model per sector ({SECTORS_SHOWN} largest sectors shown of "
            f"{size.height}; all in `plots/report/sector_rank_ic.csv`). Sectors won: "
            + ", ".join(f"{r['model']} {r['len']}" for r in won.iter_rows(named=True)) + ".", "",
            *markdown_table(["Sector", "Stocks", "Best model", "RankIC", "t"], ["---", "---:", "---", "---:", "---:"], rows), "",
        ]
    if stocks is not None and stocks.height:
        models = _order(set(stocks["model_a"].to_list()))
        share = {(r["model_a"], r["model_b"]): r["share"] for r in stocks.iter_rows(named=True)}
        rows = [[a, *(DASH if a == b else _pct(share.get((a, b)), 0) for b in models)] for a in models]
        lines += [
            "Share of stocks on which the row model ranks the stock better over the test days than the column "
            "model (per stock: correlation over time of the model's cross-sectional rank of the stock with its "
            "realized rank).", "",
            *markdown_table(["row beats column", *models], ["---"] + ["---:"] * len(models), rows), "",
        ]
    return lines


def _signed(value: float | None, decimals: int) -> str:
    text = _fmt(value, decimals)
    return text if value is None or text.startswith("-") or float(text) == 0 else f"+{text}"


def _span(values: list[int]) -> str:
    return str(min(values)) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def significance_markdown(tests: Mapping[int, pl.DataFrame]) -> list[str]:
    """Lines of the significance section: one matrix of ``diff (t)`` per horizon."""
    lines = [
        "## Significance of the differences (Newey-West t)",
        "",
        "Each cell: the row model's mean daily test RankIC minus the column model's, over the test days "
        "both have, and in brackets its Newey-West t-statistic: the mean difference over a standard error "
        "that allows for autocorrelated days (Bartlett kernel; at h days at least h-1 lags, because "
        "overlapping h-day labels share returns). |t| > 2 is roughly significant at 5%, two-sided; "
        "such cells are bold. This is noise over days for one trained model each, not the spread over "
        "training seeds (`python -m alphagraph.seeds` on a seed grid).",
        "",
    ]
    for h, test in tests.items():
        models = _order(set(test["a"].to_list()))
        if len(models) < 2:
            lines += [f"RankIC {h}d: fewer than two models with a daily series; no test.", ""]
            continue
        cell = {(r["a"], r["b"]): r for r in test.iter_rows(named=True)}
        rows = []
        for a in models:
            cells = [a]
            for b in models:
                r = cell.get((a, b))
                if r is None:
                    cells.append(DASH)
                    continue
                text = f"{_signed(r['diff'], 4)} ({_signed(r['t'], 1)})" if r["diff"] is not None else DASH
                strong = r["t"] is not None and abs(r["t"]) > 2
                cells.append(f"**{text}**" if strong else text)
            rows.append(cells)
        lines += [
            f"### RankIC {h}d ({_span(test['n'].to_list())} common days, {_span(test['lags'].to_list())} lags)",
            "",
            *markdown_table(["row minus column", *models], ["---"] + ["---:"] * len(models), rows),
            "",
        ]
    return lines


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
