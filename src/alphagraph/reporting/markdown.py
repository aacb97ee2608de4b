"""The leaderboard as Markdown (``reports/leaderboard.md``), for people: the board, the top-k
backtest, where each model wins and the pairwise significance tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from alphagraph.reporting.board import CEILINGS, FEASIBLE, ORACLE, TOPK, _order, best_model, topk_horizon
from alphagraph.reporting.facts import fills_note

DASH = "—"


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

    With ``wins`` (``{"sector", "regime", "stocks"}`` frames of :mod:`alphagraph.evaluation.wins`)
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
        "training seeds (`python -m alphagraph.experiments.seeds` on a seed grid).",
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
