"""The run's visual report: one self-contained HTML page (``reports/index.html``).

:func:`render_report` reads a run's workspace (``reports/models/*.json`` and
``plots/``, see :func:`model_files`) and returns the page: a header with the
run's facts, the leaderboard, overview figures of all models, where models
win (per sector and regime), then a section per model. Figures are inline SVG
(:mod:`alphagraph.reporting.figures`), styles inline, no script and no external URL.
Optional files that are absent leave their figure out. The text is a function
of the inputs only, so DVC hashes the same page for the same run.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from alphagraph.reporting import figures as F

ORACLE = F.ORACLE
FEASIBLE = F.FEASIBLE
CEILINGS = F.CEILINGS  # drawn grey and dashed, never bold as a column's best
DASH = "—"
ROLLING_DAYS = 63
TOP_FEATURES = 15
LINKS_PER_RELATION = 3
PSI_ALERT = 0.25
SIGNIFICANT_Z = 1.96


# ---------------------------------------------------------------- formatting


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fmt(value: Any, decimals: int = 4) -> str:
    """A number with ``decimals`` places ("−" minus), or an em dash when missing or not finite."""
    v = _num(value)
    if v is None:
        return DASH
    text = f"{v:.{decimals}f}"
    if text.startswith("-"):
        # "-0.0000" suggests a sign that is not there.
        text = text[1:] if float(text) == 0 else "−" + text[1:]
    return text


def pct(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage (``0.123`` -> ``12.3%``), or an em dash."""
    v = _num(value)
    return DASH if v is None else fmt(100 * v, decimals) + "%"


def slug(text: str) -> str:
    """An id-safe form of a model or figure name (deterministic, lower case)."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "x"


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


# ------------------------------------------------------------------- loading


def read_csv(path: Path) -> pl.DataFrame | None:
    """A plot CSV, or None when it is absent, empty or unreadable (optional inputs never fail the page)."""
    if not path.is_file():
        return None
    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except (OSError, pl.exceptions.PolarsError):
        return None
    return frame if frame.height else None


def read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


@dataclass
class ModelFiles:
    """What a model's workspace provides; None (or empty) where a file is absent."""

    detail: dict[str, Any]
    rank_ic: pl.DataFrame | None
    cum_return: pl.DataFrame | None
    topk: pl.DataFrame | None
    training: dict[int, pl.DataFrame]
    importance: pl.DataFrame | None
    relations: pl.DataFrame | None
    relation_attention: pl.DataFrame | None
    attention_lag: pl.DataFrame | None
    stock_attention: pl.DataFrame | None


def model_files(root: Path, model: str) -> ModelFiles:
    """Read ``reports/models/{model}.json`` and ``plots/{model}/*`` under ``root``."""
    plots = root / "plots" / model
    training = {}
    for path in sorted((plots / "training").glob("fold*.csv")):
        fold = path.stem.removeprefix("fold")
        frame = read_csv(path)
        if fold.isdigit() and frame is not None:
            training[int(fold)] = frame
    return ModelFiles(
        detail=read_json(root / "reports" / "models" / f"{model}.json"),
        rank_ic=read_csv(plots / "rank_ic.csv"),
        cum_return=read_csv(plots / "cum_return.csv"),
        topk=read_csv(plots / "topk.csv"),
        training=training,
        importance=read_csv(plots / "importance.csv"),
        relations=read_csv(plots / "relations.csv"),
        relation_attention=read_csv(plots / "relation_attention.csv"),
        attention_lag=read_csv(plots / "attention_lag.csv"),
        stock_attention=read_csv(plots / "stock_attention.csv"),
    )


def _has(frame: pl.DataFrame | None, *columns: str) -> bool:
    return frame is not None and all(c in frame.columns for c in columns)


# -------------------------------------------------------------------- blocks


def figure(svg: str, caption: str, key: str, wide: bool = False) -> str:
    """A ``<figure>`` with the inline SVG and a one-sentence caption (``key`` is the figure's slug)."""
    cls = "wide" if wide else "half"
    return (f'<figure id="fig-{key}" class="{cls}">\n{svg}\n'
            f'<figcaption id="{key}-cap">{esc(caption)}</figcaption>\n</figure>')


def table(header: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str = "") -> str:
    """An HTML table of plain text cells (escaped here); the first column is a left-aligned label."""
    def cell(text: str, tag: str, i: int) -> str:
        klass = ' class="label"' if i == 0 else ""
        return f"<{tag}{klass}>{esc(text)}</{tag}>"

    head = "".join(cell(h, "th", i) for i, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(cell(c, "td", i) for i, c in enumerate(r)) + "</tr>" for r in rows)
    klass = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{klass}>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table></div>")


def _mix(color: str, share: float) -> str:
    """``color`` at ``share`` (0..1) over white, as an opaque hex (no alpha: prints and screenshots alike)."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    share = min(max(share, 0.0), 1.0)
    return "#{:02x}{:02x}{:02x}".format(*(round(255 + (c - 255) * share) for c in (r, g, b)))


def _shade(value: float | None, scale: float) -> str:
    """Background of a value cell: blue for positive, red for negative, deeper with size (capped at ``scale``)."""
    if value is None or scale <= 0:
        return ""
    base = "#4878d0" if value >= 0 else "#d65f5f"
    return f' style="background:{_mix(base, 0.6 * min(abs(value) / scale, 1.0))}"'


# --------------------------------------------------------------- leaderboard


@dataclass(frozen=True)
class Column:
    header: str
    key: str
    render: Callable[[Any], str]
    higher_is_better: bool = True
    group: str = ""


def board_columns(board: pl.DataFrame, horizons: Sequence[int]) -> list[Column]:
    """The leaderboard's columns: RankIC at 1d/5d, ICIR, long-short Sharpe, top-k (when the board has it).

    The long-short and top-k figures are at 1 day, else 5, else the first horizon
    (as :func:`alphagraph.reporting.report.topk_horizon`).
    """
    shown = [h for h in (1, 5) if h in horizons] or list(horizons[:1])
    short = shown[0]
    cols = [Column(f"RankIC {h}d", f"rank_ic_{h}d", lambda v: fmt(v, 4), group="Signal") for h in shown]
    cols += [Column(f"ICIR {short}d", f"icir_{short}d", lambda v: fmt(v, 2), group="Signal")]
    cols += [
        Column(f"Sharpe {short}d", f"sharpe_{short}d", lambda v: fmt(v, 2), group="Long-short"),
        Column("net", f"sharpe_net_{short}d", lambda v: fmt(v, 2), group="Long-short"),
    ]
    topk = [
        Column("excess / yr", f"topk_excess_return_{short}d", lambda v: pct(v, 1), group="Top-k, with cost"),
        Column("IR", f"topk_information_ratio_{short}d", lambda v: fmt(v, 2), group="Top-k, with cost"),
        Column("max DD", f"topk_max_drawdown_{short}d", lambda v: pct(v, 1), group="Top-k, with cost"),
        Column("turnover", f"topk_turnover_{short}d", lambda v: pct(v, 1), False, group="Top-k, with cost"),
    ]
    # A run from before the backtest has the columns (the leaderboard's schema) but only nulls: no group then.
    if any(c.key in board.columns and board[c.key].drop_nulls().len() for c in topk):
        cols += topk
    if ORACLE in board["model"].to_list() and "frac_oracle_1d" in board.columns:
        cols.append(Column("of oracle", "frac_oracle_1d", lambda v: pct(v, 0), group="RankIC 1d"))
    if "frac_feasible_1d" in board.columns and board["frac_feasible_1d"].drop_nulls().len():
        cols.append(Column("/ feasible", "frac_feasible_1d", lambda v: pct(v, 0), group="RankIC 1d"))
    return cols


def leaderboard_html(board: pl.DataFrame, horizons: Sequence[int], colors: Mapping[str, str]) -> str:
    """The leaderboard as a table with grouped headers; the best value of a column (ceilings aside) in bold."""
    cols = board_columns(board, horizons)
    rows = list(board.iter_rows(named=True))
    best: dict[str, float] = {}
    for c in cols:
        if c.higher_is_better and c.key not in ("frac_oracle_1d", "frac_feasible_1d"):
            values = [v for r in rows if r["model"] not in CEILINGS and (v := _num(r.get(c.key))) is not None]
            if values:
                best[c.key] = max(values)
    groups: list[tuple[str, int]] = []
    for c in cols:
        if groups and groups[-1][0] == c.group:
            groups[-1] = (c.group, groups[-1][1] + 1)
        else:
            groups.append((c.group, 1))
    top = '<tr><th class="label" rowspan="2">Model</th>' + "".join(
        f'<th colspan="{n}" class="group">{esc(g)}</th>' for g, n in groups) + "</tr>"
    sub = "<tr>" + "".join(f"<th>{esc(c.header)}</th>" for c in cols) + "</tr>"
    body = []
    for r in rows:
        model = r["model"]
        cells = [f'<td class="label"><span class="swatch{" dashed" if model in CEILINGS else ""}" '
                 f'style="--c:{colors.get(model, F.TEXT)}"></span><a href="#model-{slug(model)}">'
                 f"{esc(F.model_label(model))}</a></td>"]
        for c in cols:
            v = _num(r.get(c.key))
            text = esc(c.render(v))
            strong = model not in CEILINGS and v is not None and best.get(c.key) == v
            cells.append(f"<td><b>{text}</b></td>" if strong else f"<td>{text}</td>")
        klass = ' class="oracle"' if model in CEILINGS else ""
        body.append(f"<tr{klass}>" + "".join(cells) + "</tr>")
    return ('<div class="scroll"><table class="board">\n<thead>' + top + sub + "</thead>\n<tbody>\n"
            + "\n".join(body) + "\n</tbody>\n</table></div>")


# ------------------------------------------------------------------ overview


def ic_points(details: Mapping[str, Mapping[str, Any]], horizons: Sequence[int]) -> pl.DataFrame:
    """``model, horizon, rank_ic, se`` from the detail JSONs; s.e. = (mean / icir) / sqrt(n_dates)."""
    rows = []
    for model, doc in details.items():
        test = doc.get("test") if isinstance(doc.get("test"), Mapping) else {}
        n = _num(test.get("n_dates"))
        for h in horizons:
            mean, icir = _num(test.get(f"rank_ic_{h}d")), _num(test.get(f"rank_icir_{h}d"))
            if mean is None:
                continue
            se = abs(mean / icir) / math.sqrt(n) if icir not in (None, 0.0) and n and n > 0 else None
            rows.append({"model": model, "horizon": h, "rank_ic": mean, "se": se})
    schema = {"model": pl.String, "horizon": pl.Int64, "rank_ic": pl.Float64, "se": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def psi_points(details: Mapping[str, Mapping[str, Any]], horizons: Sequence[int]) -> pl.DataFrame:
    """``model, horizon, psi`` (val vs test PSI of the predictions) from the detail JSONs."""
    rows = []
    for model, doc in details.items():
        psi = doc.get("psi") if isinstance(doc.get("psi"), Mapping) else {}
        for h in horizons:
            if (v := _num(psi.get(f"pred_{h}d"))) is not None:
                rows.append({"model": model, "horizon": h, "psi": v})
    return pl.DataFrame(rows, schema={"model": pl.String, "horizon": pl.Int64, "psi": pl.Float64}, orient="row")


def _span(frames: Sequence[pl.DataFrame | None]) -> str:
    dates = sorted({d for f in frames if _has(f, "date") for d in (str(f["date"].min()), str(f["date"].max()))})
    return f"{dates[0]} to {dates[-1]}" if dates else "the test days"


def overview_html(files: Mapping[str, ModelFiles], horizons: Sequence[int], colors: Mapping[str, str],
                  psi_alert: float) -> tuple[str, int]:
    """The overview figures (all models overlaid) and how many there are."""
    h = horizons[0]
    out = []
    cum = {m: f.cum_return for m, f in files.items() if _has(f.cum_return, "date", f"cum_return_{h}d")}
    if cum:
        svg = F.overlay_lines(cum, f"cum_return_{h}d", colors, "ov-cum", title=f"Cumulative long-short P&L, {h}d",
                              ylabel="cumulative return (gross)")
        out.append(figure(svg, f"Cumulative daily P&L of each model's top/bottom-quantile long-short book at {h}d, "
                               f"gross of costs, over the pooled test days ({_span(list(cum.values()))}).", "ov-cum"))
    topk = {m: f.topk for m, f in files.items() if _has(f.topk, "date", f"cum_excess_{h}d")}
    if topk:
        svg = F.overlay_lines(topk, f"cum_excess_{h}d", colors, "ov-topk",
                              title=f"Cumulative top-k excess return with cost, {h}d", ylabel="cumulative excess")
        out.append(figure(svg, f"Cumulative daily excess return over the benchmark of each model's top-k dropout "
                               f"portfolio at {h}d, after trading costs.", "ov-topk"))
    details = {m: f.detail for m, f in files.items() if f.detail}
    points = ic_points(details, horizons)
    if points.height:
        svg = F.ic_decay(points, colors, "ov-decay")
        out.append(figure(svg, "Test RankIC of each model at each horizon, with ±1.96 standard errors of the daily "
                               "mean (s.e. = std / √days; overlapping labels make it optimistic beyond 1d).",
                          "ov-decay"))
    psi = psi_points(details, horizons)
    if psi.height:
        svg = F.psi_bars(psi, colors, "ov-psi", alert=psi_alert)
        out.append(figure(svg, f"Population stability index of each model's predictions between the validation "
                               f"and the test windows per horizon; above {psi_alert:g} (red line) the predictions "
                               f"have shifted.", "ov-psi"))
    legend = '<ul class="legend">' + "".join(
        f'<li><span class="swatch{" dashed" if m in CEILINGS else ""}" style="--c:{colors[m]}"></span>'
        f"{esc(F.model_label(m))}</li>" for m in files) + "</ul>"
    return legend + '\n<div class="grid">\n' + "\n".join(out) + "\n</div>", len(out)


# ---------------------------------------------------------------------- wins


def _order(models: Sequence[str], board_models: Sequence[str]) -> list[str]:
    known = [m for m in board_models if m in models]
    return known + sorted(set(models) - set(known))


def sector_html(frame: pl.DataFrame, board_models: Sequence[str]) -> str:
    """Sector x model RankIC, cells shaded by value, the best non-oracle model per sector in bold."""
    models = _order(frame["model"].unique().to_list(), board_models)
    cell = {(r["model"], r["sector"]): r for r in frame.iter_rows(named=True)}
    sectors = sorted(set(frame["sector"].cast(pl.String).to_list()))
    contenders = [m for m in models if m not in CEILINGS]
    scale = max((abs(v) for (m, _), r in cell.items() if m not in CEILINGS and (v := _num(r["rank_ic"])) is not None),
                default=0.0)
    won = dict.fromkeys(contenders, 0)
    rows = []
    for sector in sectors:
        values = {m: _num(cell[(m, sector)]["rank_ic"]) if (m, sector) in cell else None for m in models}
        ranked = [(v, m) for m in contenders if (v := values[m]) is not None]
        winner = max(ranked, key=lambda t: t[0])[1] if ranked else None
        if winner:
            won[winner] += 1
        stocks = max((_num(cell[(m, sector)].get("mean_stocks")) or 0 for m in models if (m, sector) in cell),
                     default=0)
        tds = [f'<td class="label">{esc(sector)} <span class="muted">({stocks:.0f})</span></td>']
        for m in models:
            v = values[m]
            r = cell.get((m, sector))
            t = fmt(r.get("t"), 1) if r else DASH
            text = esc(fmt(v, 4))
            text = f"<b>{text}</b>" if m == winner else text
            tds.append(f'<td{_shade(v, scale)} title="t {esc(t)}">{text}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    foot = '<tr class="foot"><td class="label">sectors won</td>' + "".join(
        f"<td>{won[m]}</td>" if m in won else f"<td>{DASH}</td>" for m in models) + "</tr>"
    head = '<tr><th class="label">sector (stocks)</th>' + "".join(f"<th>{esc(F.model_label(m))}</th>" for m in models)
    return ('<div class="scroll"><table class="heat">\n<thead>' + head + "</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n" + foot + "\n</tbody>\n</table></div>")


def regime_html(frame: pl.DataFrame, board_models: Sequence[str]) -> str:
    """Regime x model RankIC with its Newey-West t, shaded like the sector table."""
    models = _order(frame["model"].unique().to_list(), board_models)
    cell = {(r["model"], r["regime"]): r for r in frame.iter_rows(named=True)}
    regimes = [g for g in ("calm", "turbulent") if any(k[1] == g for k in cell)]
    regimes += sorted({k[1] for k in cell} - set(regimes))
    scale = max((abs(v) for (m, _), r in cell.items() if m not in CEILINGS and (v := _num(r["rank_ic"])) is not None),
                default=0.0)
    rows = []
    for g in regimes:
        days = max((_num(cell[(m, g)].get("n_days")) or 0 for m in models if (m, g) in cell), default=0)
        tds = [f'<td class="label">{esc(g)} <span class="muted">({days:.0f} days)</span></td>']
        for m in models:
            r = cell.get((m, g))
            v = _num(r["rank_ic"]) if r else None
            text = f"{fmt(v, 4)} <span class=\"muted\">(t {fmt(r.get('t'), 1)})</span>" if r else DASH
            tds.append(f"<td{_shade(v, scale)}>{text}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    head = '<tr><th class="label">regime</th>' + "".join(f"<th>{esc(F.model_label(m))}</th>" for m in models)
    return ('<div class="scroll"><table class="heat">\n<thead>' + head + "</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table></div>")


def win_share_html(frame: pl.DataFrame, board_models: Sequence[str]) -> str:
    """Row-beats-column share of stocks, shaded around 50%."""
    models = _order(frame["model_a"].unique().to_list(), board_models)
    share = {(r["model_a"], r["model_b"]): _num(r["share"]) for r in frame.iter_rows(named=True)}
    rows = []
    for a in models:
        tds = [f'<td class="label">{esc(F.model_label(a))}</td>']
        for b in models:
            v = None if a == b else share.get((a, b))
            tds.append(f"<td{_shade(None if v is None else v - 0.5, 0.5)}>{esc(pct(v, 0))}</td>")
        rows.append("<tr>" + "".join(tds) + "</tr>")
    head = '<tr><th class="label">row beats column</th>' + "".join(f"<th>{esc(F.model_label(m))}</th>" for m in models)
    return ('<div class="scroll"><table class="heat">\n<thead>' + head + "</tr></thead>\n<tbody>\n"
            + "\n".join(rows) + "\n</tbody>\n</table></div>")


def wins_html(root: Path, board_models: Sequence[str], h: int) -> str:
    """The "where models win" section body, or "" when the report stage wrote none of its tables."""
    report = root / "plots" / "report"
    parts = []
    sector = read_csv(report / "sector_rank_ic.csv")
    if _has(sector, "model", "sector", "rank_ic"):
        parts.append(f"<h3>RankIC {h}d within each sector</h3>\n<p class=\"note\">Mean daily Spearman correlation "
                     "of prediction and return among the sector's stocks over the test days; blue positive, red "
                     "negative, the best model of each sector (the oracle aside) in bold. Hover a cell for its "
                     "Newey-West t.</p>\n" + sector_html(sector, board_models))
    regime = read_csv(report / "regime_rank_ic.csv")
    if _has(regime, "model", "regime", "rank_ic"):
        parts.append(f"<h3>RankIC {h}d by market regime</h3>\n<p class=\"note\">Turbulent: days on which the "
                     "equal-weight market's 20-day realized volatility is above its expanding median (known at the "
                     "date).</p>\n" + regime_html(regime, board_models))
    stocks = read_csv(report / "stock_win_share.csv")
    if _has(stocks, "model_a", "model_b", "share"):
        parts.append("<h3>Stock win shares</h3>\n<p class=\"note\">Share of stocks on which the row model ranks "
                     "the stock better over the test days than the column model.</p>\n"
                     + win_share_html(stocks, board_models))
    return "\n".join(parts)


# -------------------------------------------------------------- model section


def links_html(frame: pl.DataFrame, per_relation: int = LINKS_PER_RELATION) -> str:
    """The strongest neighbour links of the last recorded date: the top ``per_relation`` per relation."""
    last = frame["date"].cast(pl.String).max()
    day = frame.filter(pl.col("date").cast(pl.String) == last)
    top = (day.sort(["relation", "attention", "code", "neighbour"], descending=[False, True, False, False])
           .group_by("relation", maintain_order=True).head(per_relation))
    rows = [[r["relation"], r["code"], r["neighbour"], fmt(r["attention"], 3)] for r in top.iter_rows(named=True)]
    fold = day["fold"][0] if "fold" in day.columns and day.height else None
    note = (f"<p class=\"note\">Strongest neighbour links on {esc(last)}"
            + (f" (fold {esc(fold)}'s last test date)" if fold is not None else "")
            + f": per relation, the {per_relation} stock-neighbour pairs with the largest attention weight "
              "(the per-edge softmax weight, mean over heads; the stage records the top 5 per stock and "
              "relation).</p>")
    return note + "\n" + table(["relation", "stock", "neighbour", "attention"], rows, cls="links")


def model_figures(model: str, files: ModelFiles, horizons: Sequence[int], color: str) -> tuple[list[str], list[str]]:
    """The figures of one model's section (wide ones first) and its tables, each as HTML."""
    h = horizons[0]
    key = slug(model)
    figs: list[str] = []
    tables: list[str] = []
    if _has(files.rank_ic, "date", f"rank_ic_{h}d"):
        k = f"{key}-ic"
        svg = F.daily_rank_ic(files.rank_ic, f"rank_ic_{h}d", color, k, window=ROLLING_DAYS,
                              title=f"Daily test RankIC, {h}d")
        figs.append(figure(svg, f"Daily test RankIC at {h}d (faint), its {ROLLING_DAYS}-day rolling mean and its "
                                "mean over all test days (dashed).", k, wide=True))
    cumulative = (
        (files.cum_return, "cum_return", "cum", "Cumulative long-short P&L", "cumulative return (gross)",
         "Cumulative daily P&L of the long-short book at each horizon (overlapping h-day tranches), gross of costs."),
        (files.topk, "cum_excess", "topk", "Cumulative top-k excess return, with cost", "cumulative excess",
         "Cumulative daily excess return over the benchmark of the top-k dropout portfolio at each horizon, after "
         "trading costs."),
    )
    for frame, prefix, suffix, title, ylabel, caption in cumulative:
        cols = {hh: f"{prefix}_{hh}d" for hh in horizons}
        if _has(frame, "date") and any(c in frame.columns for c in cols.values()):
            k = f"{key}-{suffix}"
            figs.append(figure(F.horizon_lines(frame, cols, color, k, title=title, ylabel=ylabel), caption, k))
    col = f"val_rank_ic_{h}d"
    curves = {f: t for f, t in files.training.items() if _has(t, "epoch", col)}
    if curves:
        k = f"{key}-train"
        svg = F.training_curves(curves, col, color, k)
        figs.append(figure(svg, f"Validation RankIC {h}d after each training epoch, one line per walk-forward fold; "
                                "the large dot marks the epoch whose weights were kept.", k))
    imp = files.importance
    value = next((c for c in ("rank_shift", "drop", "gain_share") if _has(imp, "feature", c)), None)
    if value is not None:
        k = f"{key}-imp"
        label = {"rank_shift": "1 - rank correlation with the unshuffled predictions",
                 "drop": "drop of validation RankIC when shuffled", "gain_share": "share of split gain"}[value]
        svg = F.importance_bars(imp, value, color, k, top=TOP_FEATURES, xlabel=label)
        what = {
            "rank_shift": "how far shuffling the feature (a family: all its windows together) across a day's stocks "
                          "moves the model's ranking of them (1 - the rank correlation of the predictions with and "
                          "without the shuffle, validation days, mean over folds; what the model reads, not what "
                          "it earns: the drop of RankIC, in importance.csv, is mostly the days' noise)",
            "drop": "the drop of the mean daily validation RankIC when the feature is shuffled across stocks "
                    "(permutation importance, mean over folds)",
            "gain_share": "the feature's share of the total split gain of the boosted trees",
        }[value]
        figs.append(figure(svg, f"The {TOP_FEATURES} most important features by {what}.", k))
    if _has(files.relations, "fold", "layer", "relation", "weight"):
        k = f"{key}-relw"
        svg = F.relation_weights(files.relations, k)
        figs.append(figure(svg, "Learned softmax weight of each relation type in each walk-forward fold "
                                "(dashed: equal weights).", k))
    if _has(files.relation_attention, "fold", "date", "relation", "weight"):
        k = f"{key}-relt"
        svg = F.relation_over_time(files.relation_attention, k)
        figs.append(figure(svg, "Mean relation weight over the stocks on each test date (dotted lines: a new "
                                "fold's model takes over).", k))
    if _has(files.attention_lag, "fold", "lag", "attention"):
        k = f"{key}-lag"
        svg = F.lag_heatmap(files.attention_lag, color, k)
        figs.append(figure(svg, "Mean attention of the temporal encoder from the date to each earlier day of its "
                                "window (lag 0 = the date), per fold, over the test dates.", k))
    if _has(files.stock_attention, "date", "code", "relation", "neighbour", "attention"):
        tables.append(links_html(files.stock_attention))
    return figs, tables


def _headline(row: Mapping[str, Any], h: int) -> str:
    parts = [
        f"RankIC {h}d <b>{esc(fmt(row.get(f'rank_ic_{h}d'), 4))}</b>",
        f"ICIR {esc(fmt(row.get(f'icir_{h}d'), 2))}",
        f"Sharpe {esc(fmt(row.get(f'sharpe_{h}d'), 2))} (net {esc(fmt(row.get(f'sharpe_net_{h}d'), 2))})",
    ]
    if _num(row.get(f"topk_excess_return_{h}d")) is not None:
        parts.append(f"top-k excess {esc(pct(row.get(f'topk_excess_return_{h}d'), 1))}/yr")
    return '<p class="headline">' + " · ".join(parts) + "</p>"


def model_section(model: str, row: Mapping[str, Any], files: ModelFiles, horizons: Sequence[int], color: str) -> str:
    figs, tables = model_figures(model, files, horizons, color)
    # Full-width figures first, then the half-width ones two to a row.
    wide = [f for f in figs if f.startswith('<figure id="fig-') and ' class="wide">' in f.split("\n", 1)[0]]
    half = [f for f in figs if f not in wide]
    body = "\n".join(wide)
    if half:
        body += '\n<div class="grid">\n' + "\n".join(half) + "\n</div>"
    if tables:
        body += "\n" + "\n".join(tables)
    if not figs and not tables:
        body = '<p class="note">No figures: this model\'s stage wrote no plot files.</p>'
    dashed = " dashed" if model in CEILINGS else ""
    notes = {
        ORACLE: "The planted expected return of the synthetic market judged by the same evaluator: "
                "the ceiling, not a competitor.",
        FEASIBLE: "The planted components recomputed from what a model sees (observed relations, estimated "
                  "volatility, strengths fixed or fitted on past days only): the feasible ceiling, not a competitor.",
    }
    note = f'<p class="note">{notes[model]}</p>\n' if model in notes else ""
    return (f'<section id="model-{slug(model)}" class="model" data-model="{esc(model)}">\n'
            f'<h2><span class="swatch{dashed}" style="--c:{color}"></span>{esc(F.model_label(model))}</h2>\n'
            f"{_headline(row, horizons[0])}\n{note}{body}\n</section>")


# ---------------------------------------------------------------------- page

CSS = """
:root{--fg:#222;--muted:#6b6b6b;--line:#e3e3e3;--bg:#fff;--accent:#2f4b7c}
*{box-sizing:border-box}
body{margin:0;background:#f6f6f4;color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:24px 28px 60px;background:var(--bg);min-height:100vh}
h1{font-size:26px;margin:0 0 6px}h2{font-size:20px;margin:40px 0 6px;padding-top:10px;border-top:1px solid var(--line)}
h3{font-size:16px;margin:22px 0 4px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.facts{display:flex;flex-wrap:wrap;gap:2px 30px;margin:10px 0 8px}
.facts div{display:flex;gap:8px;font-size:14px;max-width:100%}
.facts dt{color:var(--muted);white-space:nowrap}.facts dd{margin:0;font-weight:600}
nav{font-size:14px;margin:10px 0 0;padding:8px 0;border-top:1px solid var(--line);border-bottom:1px solid var(--line)}
nav a{margin-right:14px;white-space:nowrap}nav .muted{margin-right:8px}
.muted{color:var(--muted)}.note{color:var(--muted);font-size:13.5px;margin:4px 0 10px;max-width:900px}
.headline{margin:2px 0 8px;font-size:14.5px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums;margin:6px 0 8px}
th,td{padding:4px 9px;text-align:right;border-bottom:1px solid var(--line);white-space:nowrap}
th{font-weight:600;color:#444;border-bottom:1px solid #bbb}th.group{text-align:center;border-bottom:1px solid #ccc}
.label{text-align:left}tr.oracle td{color:#666}tr.foot td{border-top:1px solid #bbb;color:var(--muted)}
table.heat td{min-width:64px}table.links td:not(:last-child),table.links th:not(:last-child){text-align:left}
.swatch{display:inline-block;width:14px;height:0;border-top:3px solid var(--c);margin:0 7px 4px 0;vertical-align:middle}
.swatch.dashed{border-top-style:dashed}
.legend{list-style:none;padding:0;margin:6px 0 4px;display:flex;flex-wrap:wrap;gap:4px 18px;font-size:13.5px}
.grid{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:10px 22px}
figure{margin:10px 0;min-width:0}figure svg{display:block;width:100%;height:auto}
figcaption{font-size:13px;color:var(--muted);margin-top:2px}
footer{margin-top:40px;font-size:13px;color:var(--muted);border-top:1px solid var(--line);padding-top:10px}
@media (max-width:800px){.grid{grid-template-columns:1fr}main{padding:14px}}
"""


def render_report(
    root: Path,
    board: pl.DataFrame,
    horizons: Sequence[int],
    run: Mapping[str, str],
    *,
    psi_alert: float = PSI_ALERT,
    title: str = "alphagraph run report",
) -> str:
    """The HTML page of the run whose workspace is ``root``.

    ``board``: :func:`alphagraph.reporting.report.leaderboard` (one row per model, in
    display order; it decides which models the page shows). ``horizons``: the
    configured horizons (the first is the headline one). ``run``: facts shown in
    the header, in the given order (label -> value). Deterministic: the same
    inputs give the same bytes (so keep times of day out of ``run``).
    """
    root = Path(root)
    horizons = list(horizons)
    if not horizons:
        raise ValueError("render_report: no horizons")
    models = board["model"].to_list()
    colors = F.model_colors(models)
    files = {m: model_files(root, m) for m in models}
    h = horizons[0]

    overview, n_overview = overview_html(files, horizons, colors, psi_alert)
    wins = wins_html(root, models, h)
    sections = [model_section(m, row, files[m], horizons, colors[m])
                for m, row in zip(models, board.iter_rows(named=True), strict=True)]

    has_topk = any(c.key.startswith("topk_") for c in board_columns(board, horizons))
    facts = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in run.items())
    nav = ['<a href="#leaderboard">Leaderboard</a>', '<a href="#overview">Overview</a>']
    if wins:
        nav.append('<a href="#wins">Where models win</a>')
    nav.append('<span class="muted">Models:</span>' + "".join(
        f'<a href="#model-{slug(m)}">{esc(F.model_label(m))}</a>' for m in models))
    oracle_note = ("The oracle is the planted expected return of the synthetic market: the ceiling, drawn grey and "
                   "dashed, not a competitor. " if ORACLE in models else "")
    if FEASIBLE in models:
        oracle_note += ("The feasible ceiling (dark grey, dashed) is the same signal recomputed from observables; "
                        "\"/ feasible\" is a model's RankIC 1d as a share of it. ")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        "<header>",
        f"<h1>{esc(title)}</h1>",
        f'<dl class="facts">{facts}</dl>' if facts else "",
        "<nav>" + "".join(nav) + "</nav>",
        "</header>",
        '<section id="leaderboard">',
        "<h2>Leaderboard</h2>",
        f'<p class="note">Pooled out-of-sample test windows of every fold. {oracle_note}Bold: the best value of a '
        "column. RankIC: mean daily Spearman correlation of prediction and realized return; ICIR: mean over standard "
        "deviation of the daily IC. Long-short: top/bottom-quantile book, annualized Sharpe gross and net of costs."
        + (" Top-k: the top-k dropout portfolio against the benchmark after costs (annualized excess return, "
           "information ratio, maximum drawdown of the cumulative excess, value traded per day)." if has_topk else "")
        + "</p>",
        leaderboard_html(board, horizons, colors),
        "</section>",
        '<section id="overview">',
        "<h2>Overview</h2>",
        overview if n_overview else '<p class="note">No model wrote daily series or detail metrics.</p>',
        "</section>",
    ]
    if wins:
        parts += ['<section id="wins">', "<h2>Where models win</h2>", wins, "</section>"]
    parts += sections
    parts += [
        "<footer>Written by the report stage from <code>reports/models/</code> and <code>plots/</code>; "
        "every figure is inline SVG, so this page needs no network and no script.</footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"
