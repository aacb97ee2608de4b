"""The run's facts in words (data, what the data stages kept, span, split, horizons, costs,
backtest settings): the visual report's header and the tables' notes say them the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alphagraph.runtime.config import Params
from alphagraph.evaluation.split import Fold


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
