"""Figures of the HTML report: polars frames in, inline SVG text out.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot:
no backend is selected, no global figure registry to leak into), under
:data:`STYLE` through :func:`matplotlib.rc_context`, and returns the SVG that
:func:`to_svg` cleans for inlining. The bytes depend only on the inputs
(fixed ``svg.hashsalt``, no date, coordinates rounded), so DVC sees the same
page for the same run.

Colours: :func:`model_colors` gives each model one colour that every figure
uses; the oracle (the planted ceiling of the synthetic market) is grey and
dashed everywhere (:func:`line_style`).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import polars as pl
from matplotlib import dates as mdates
from matplotlib.colors import LinearSegmentedColormap, to_hex, to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

ORACLE = "oracle"
ORACLE_COLOR = "#8a8a8a"
# The feasible ceiling (the planted signal from observables): darker grey, dashed like the oracle.
FEASIBLE = "feasible"
FEASIBLE_COLOR = "#505050"
CEILINGS = (ORACLE, FEASIBLE)
# Muted, colour-blind-friendlier qualitative palette (seaborn "muted" order, grey held back for the oracle).
PALETTE = (
    "#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4",
    "#8c613c", "#dc7ec0", "#d5bb67", "#82c6e2", "#2f4b7c",
)
# Relations of the graph: their own palette (they share figures with one model's colour only).
RELATION_PALETTE = ("#2f6690", "#d1495b", "#3a7d44", "#edae49", "#7b4b94", "#00798c", "#8d6a9f", "#66462c")
ALERT_COLOR = "#c0392b"
TEXT = "#333333"

# Full width and half width of the page column (inches; the SVG scales to the column).
WIDE = (9.0, 2.8)
HALF = (5.0, 3.1)

STYLE: dict[str, object] = {
    # Determinism: ids are hashes salted with this, no timestamp, text kept as text (small, searchable).
    "svg.hashsalt": "alphagraph-report",
    "svg.fonttype": "none",
    "svg.image_inline": True,
    "text.parse_math": False,  # a "$" in a model or feature name is text, not mathtext
    # DejaVu Sans ships with matplotlib: the layout does not depend on the fonts of the machine.
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlecolor": TEXT,
    "axes.labelsize": 8.5,
    "axes.labelcolor": TEXT,
    "axes.edgecolor": "#9a9a9a",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e8e8e8",
    "grid.linewidth": 0.5,
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "xtick.major.width": 0.5,
    "ytick.major.width": 0.5,
    "lines.linewidth": 1.0,
    "legend.frameon": False,
    "legend.fontsize": 7.5,
    "legend.handlelength": 1.6,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "path.simplify": True,
    "path.simplify_threshold": 0.3,
}

_DATE_LOCATOR_MAX = 8


# ----------------------------------------------------------------- colours


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """One colour per model, in the given order (the ceilings grey, outside the palette)."""
    out, i = {}, 0
    for m in models:
        if m in CEILINGS:
            out[m] = ORACLE_COLOR if m == ORACLE else FEASIBLE_COLOR
        else:
            out[m] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def model_label(model: str) -> str:
    """The display name: the ceilings are not competitors."""
    return {ORACLE: "oracle (ceiling)", FEASIBLE: "feasible (ceiling)"}.get(model, model)


def line_style(model: str) -> dict[str, object]:
    """Line keywords that set the ceilings apart (dashed) in every figure."""
    return {"linestyle": (0, (4, 2)), "linewidth": 0.9} if model in CEILINGS else {"linestyle": "-", "linewidth": 1.0}


def shades(color: str, n: int) -> list[str]:
    """``n`` tones of ``color`` from darker to lighter (horizons, folds): the middle one is the colour itself."""
    rgb = np.array(to_rgb(color))
    if n <= 1:
        return [to_hex(rgb)]
    out = []
    for i in range(n):
        t = -0.45 + 1.0 * i / (n - 1)  # -0.45 (towards black) .. +0.55 (towards white)
        out.append(to_hex(rgb * (1 + t) if t < 0 else rgb + (1 - rgb) * t))
    return out


def relation_colors(relations: Sequence[str]) -> dict[str, str]:
    """One colour per relation type, by sorted name (the same relation keeps its colour across figures)."""
    return {r: RELATION_PALETTE[i % len(RELATION_PALETTE)] for i, r in enumerate(sorted(set(relations)))}


# --------------------------------------------------------------------- SVG

_NUMBER = re.compile(r"-?\d+\.\d+")
_PATH_D = re.compile(r'(\sd=")([^"]*)(")')
_ID = re.compile(r'\sid="([^"]+)"')
_REF = re.compile(r'(url\(#|href="#)([^)"]+)')


def _round_path(match: re.Match[str]) -> str:
    # 0.1 pt is far below a screen pixel at the page's scale; it cuts the path text by about 40%.
    d = _NUMBER.sub(lambda m: _short(float(m.group(0))), match.group(2))
    return match.group(1) + " ".join(d.split()) + match.group(3)


def _short(x: float) -> str:
    text = f"{x:.1f}"
    text = text[:-2] if text.endswith(".0") else text
    return "0" if text == "-0" else text


def to_svg(fig: Figure, key: str) -> str:
    """``fig`` as inline SVG: no XML prolog, metadata or comments; ids prefixed with ``key``.

    Matplotlib names groups ``figure_1``, ``axes_1``... in every file; on one page
    they would repeat, so ids nothing refers to are dropped and the rest get the
    figure's ``key`` (clip paths, markers). The root keeps its viewBox and loses
    its fixed size, so CSS scales it to the column.
    """
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r"<!--.*?-->\s*", "", text, flags=re.S)
    text = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)
    text = _PATH_D.sub(_round_path, text)
    referenced = {m.group(2) for m in _REF.finditer(text)}
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", key)
    text = _ID.sub(lambda m: f' id="{prefix}-{m.group(1)}"' if m.group(1) in referenced else "", text)
    text = _REF.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", text)
    text = "\n".join(line.strip() for line in text.splitlines() if line.strip())
    return text.replace("<svg", f'<svg role="img" aria-labelledby="{prefix}-cap"', 1)


def _figure(size: tuple[float, float], nrows: int = 1, ncols: int = 1, **kw: object) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _render(build, key: str) -> str:  # noqa: ANN001 (a closure that draws on a fresh figure)
    with matplotlib.rc_context(STYLE):
        fig = build()
        try:
            return to_svg(fig, key)
        finally:
            fig.clear()  # drops the artists now; the figure is referenced nowhere else


# ------------------------------------------------------------------ helpers


def _dates(frame: pl.DataFrame, column: str = "date") -> np.ndarray:
    s = frame[column]
    if s.dtype == pl.String:
        s = s.str.to_date(strict=False)
    return s.cast(pl.Date).to_numpy()


def _values(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame[column].cast(pl.Float64).fill_null(float("nan")).to_numpy()


def _date_axis(ax) -> None:  # noqa: ANN001
    locator = mdates.AutoDateLocator(maxticks=_DATE_LOCATOR_MAX)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=False))
    ax.margins(x=0.01)


def _percent_axis(ax, decimals: int = 0) -> None:  # noqa: ANN001
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:.{decimals}f}%"))


def _metric_name(column: str) -> str:
    """``val_rank_ic_1d`` -> ``RankIC 1d`` (the names the page uses)."""
    name = column.removeprefix("val_")
    for raw, nice in (("rank_ic_", "RankIC "), ("ic_", "IC "), ("loss", "loss")):
        if name.startswith(raw):
            return nice + name.removeprefix(raw)
    return name.replace("_", " ")


def _zero(ax) -> None:  # noqa: ANN001
    ax.axhline(0.0, color="#777777", linewidth=0.6, zorder=1)


# ------------------------------------------------------------------ figures


def overlay_lines(
    series: Mapping[str, pl.DataFrame],
    column: str,
    colors: Mapping[str, str],
    key: str,
    *,
    title: str,
    ylabel: str,
    percent: bool = True,
    size: tuple[float, float] = HALF,
) -> str:
    """One line per model of ``series[model][column]`` over ``date`` (models without the column are skipped)."""

    def build() -> Figure:
        fig, axes = _figure(size)
        ax = axes[0, 0]
        for model, frame in series.items():
            if column not in frame.columns or frame.is_empty():
                continue
            ax.plot(_dates(frame), _values(frame, column), color=colors.get(model, TEXT), label=model_label(model),
                    **line_style(model))
        _zero(ax)
        _date_axis(ax)
        if percent:
            _percent_axis(ax)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        return fig

    return _render(build, key)


def daily_rank_ic(frame: pl.DataFrame, column: str, color: str, key: str, *, window: int = 63,
                  title: str = "Daily test RankIC") -> str:
    """Daily values as a faint line, their ``window``-day rolling mean and the overall mean on top."""

    def build() -> Figure:
        fig, axes = _figure(WIDE)
        ax = axes[0, 0]
        x, y = _dates(frame), _values(frame, column)
        rolling = frame[column].cast(pl.Float64).rolling_mean(window, min_samples=window).fill_null(float("nan"))
        ax.plot(x, y, color=shades(color, 3)[2], linewidth=0.5, label="daily")
        ax.plot(x, rolling.to_numpy(), color=color, linewidth=1.4, label=f"{window}-day mean")
        mean = float(np.nanmean(y)) if np.isfinite(y).any() else float("nan")
        if math.isfinite(mean):
            ax.axhline(mean, color=color, linewidth=0.8, linestyle=(0, (4, 2)), label=f"mean {mean:.4f}")
        _zero(ax)
        _date_axis(ax)
        ax.set_title(title)
        ax.set_ylabel("RankIC")
        ax.legend(loc="upper left", ncols=3)
        return fig

    return _render(build, key)


def horizon_lines(frame: pl.DataFrame, columns: Mapping[int, str], color: str, key: str, *, title: str,
                  ylabel: str, size: tuple[float, float] = HALF) -> str:
    """One line per horizon (``{h: column}``) over ``date``, in shades of the model's colour (darkest = shortest)."""

    def build() -> Figure:
        fig, axes = _figure(size)
        ax = axes[0, 0]
        present = {h: c for h, c in columns.items() if c in frame.columns}
        x = _dates(frame)
        for (h, col), shade in zip(present.items(), shades(color, len(present)), strict=True):
            ax.plot(x, _values(frame, col), color=shade, label=f"{h}d")
        _zero(ax)
        _date_axis(ax)
        _percent_axis(ax)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", ncols=max(1, len(present)))
        return fig

    return _render(build, key)


def ic_decay(points: pl.DataFrame, colors: Mapping[str, str], key: str) -> str:
    """Test RankIC against horizon per model (``model, horizon, rank_ic, se``), bars of +-1.96 s.e."""

    def build() -> Figure:
        fig, axes = _figure(HALF)
        ax = axes[0, 0]
        horizons = sorted(set(points["horizon"].to_list()))
        pos = {h: i for i, h in enumerate(horizons)}
        models = list(dict.fromkeys(points["model"].to_list()))
        width = 0.6 / max(len(models), 1)
        for j, model in enumerate(models):
            rows = points.filter(pl.col("model") == model).sort("horizon")
            offset = (j - (len(models) - 1) / 2) * width
            x = np.array([pos[h] + offset for h in rows["horizon"].to_list()])
            y = _values(rows, "rank_ic")
            err = 1.96 * _values(rows, "se")
            style = line_style(model)
            c = colors.get(model, TEXT)
            ax.errorbar(x, y, yerr=np.where(np.isfinite(err), err, 0.0), color=c, ecolor=c, elinewidth=0.7,
                        capsize=0, marker="o", markersize=2.6, label=model_label(model), **style)
        _zero(ax)
        ax.set_xticks(range(len(horizons)), [f"{h}d" for h in horizons])
        ax.grid(axis="x", visible=False)
        ax.set_title("IC decay: test RankIC by horizon")
        ax.set_xlabel("horizon")
        ax.set_ylabel("RankIC (±1.96 s.e.)")
        return fig

    return _render(build, key)


def psi_bars(frame: pl.DataFrame, colors: Mapping[str, str], key: str, *, alert: float = 0.25) -> str:
    """PSI of the predictions (val vs test) per model (groups) and horizon (shades), log scale, alert line."""

    def build() -> Figure:
        fig, axes = _figure(HALF)
        ax = axes[0, 0]
        models = list(dict.fromkeys(frame["model"].to_list()))
        horizons = sorted(set(frame["horizon"].to_list()))
        width = 0.8 / max(len(horizons), 1)
        floor = 1e-5  # a PSI of 0 (constant predictions) still shows as a stub on the log axis
        top = alert
        for i, model in enumerate(models):
            rows = frame.filter(pl.col("model") == model)
            value = dict(zip(rows["horizon"].to_list(), rows["psi"].to_list(), strict=True))
            tones = shades(colors.get(model, TEXT), len(horizons))
            for k, h in enumerate(horizons):
                v = value.get(h)
                if v is None or not math.isfinite(v):
                    continue
                top = max(top, v)
                ax.bar(i + (k - (len(horizons) - 1) / 2) * width, max(v, floor), width=width * 0.92,
                       bottom=floor, color=tones[k], edgecolor=ALERT_COLOR if v > alert else "none", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylim(floor, top * 3)
        # Plain labels: the default log labels are mathtext, which STYLE turns off.
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.axhline(alert, color=ALERT_COLOR, linewidth=0.9, linestyle=(0, (4, 2)))
        ax.text(len(models) - 0.5, alert * 1.15, f"alert {alert:g}", color=ALERT_COLOR, ha="right", va="bottom",
                fontsize=7.5)
        ax.set_xticks(range(len(models)), [model_label(m) for m in models], rotation=30, ha="right")
        ax.grid(axis="x", visible=False)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_title("PSI of predictions, validation vs test")
        ax.set_ylabel("PSI (log)")
        return fig

    return _render(build, key)


def training_curves(folds: Mapping[int, pl.DataFrame], column: str, color: str, key: str) -> str:
    """Validation ``column`` per epoch, one line per fold; a dot at the fold's best (selected) epoch."""

    def build() -> Figure:
        fig, axes = _figure(HALF)
        ax = axes[0, 0]
        for (fold, frame), shade in zip(sorted(folds.items()), shades(color, len(folds)), strict=True):
            if column not in frame.columns or frame.is_empty():
                continue
            epoch, value = _values(frame, "epoch"), _values(frame, column)
            ax.plot(epoch, value, color=shade, marker="o", markersize=2.2, label=f"fold {fold}")
            if "best_epoch" in frame.columns and frame["best_epoch"].drop_nulls().len():
                best = frame["best_epoch"].drop_nulls()[-1]
                hit = frame.filter(pl.col("epoch") == best)
                if hit.height:
                    ax.plot([best], [hit[column][0]], marker="o", markersize=5.5, color=shade,
                            markeredgecolor=TEXT, markeredgewidth=0.6, linestyle="none")
        _zero(ax)
        ax.set_title(f"Validation {_metric_name(column)} per epoch")
        ax.set_xlabel("epoch")
        ax.set_ylabel(_metric_name(column).split(" ")[0])
        ax.legend(loc="best", ncols=max(1, len(folds)))
        return fig

    return _render(build, key)


def importance_bars(frame: pl.DataFrame, value: str, color: str, key: str, *, top: int = 15,
                    xlabel: str = "") -> str:
    """Horizontal bars of the ``top`` largest ``value`` per ``feature`` (largest on top)."""
    rows = frame.filter(pl.col(value).is_not_null()).sort(value, "feature", descending=[True, False]).head(top)

    def build() -> Figure:
        fig, axes = _figure((HALF[0], max(2.2, 0.17 * rows.height + 0.9)))
        ax = axes[0, 0]
        y = np.arange(rows.height)[::-1]
        ax.barh(y, _values(rows, value), color=color, height=0.7)
        ax.set_yticks(y, rows["feature"].to_list())
        ax.grid(axis="y", visible=False)
        ax.axvline(0.0, color="#777777", linewidth=0.6)
        ax.set_title(f"Feature importance (top {rows.height})")
        ax.set_xlabel(xlabel or value)
        return fig

    return _render(build, key)


def relation_weights(frame: pl.DataFrame, key: str) -> str:
    """Learned relation weights (``fold, layer, relation, weight``): folds as groups, relations as bars,
    a panel per layer."""
    layers = sorted(set(frame["layer"].to_list()))
    relations = sorted(set(frame["relation"].to_list()))
    folds = sorted(set(frame["fold"].to_list()))
    colors = relation_colors(relations)

    def build() -> Figure:
        fig, axes = _figure((HALF[0] * min(len(layers), 2), HALF[1]), 1, len(layers), sharey=True)
        width = 0.8 / max(len(relations), 1)
        for ax, layer in zip(axes[0], layers, strict=True):
            part = frame.filter(pl.col("layer") == layer)
            cell = {(r["fold"], r["relation"]): r["weight"] for r in part.iter_rows(named=True)}
            for k, rel in enumerate(relations):
                x = [i + (k - (len(relations) - 1) / 2) * width for i in range(len(folds))]
                y = [cell.get((f, rel)) for f in folds]
                y = [float("nan") if v is None else v for v in y]
                ax.bar(x, y, width=width * 0.9, color=colors[rel], label=rel if layer == layers[0] else None)
            ax.axhline(1 / len(relations), color="#777777", linewidth=0.7, linestyle=(0, (3, 2)))
            ax.set_xticks(range(len(folds)), [f"fold {f}" for f in folds])
            ax.grid(axis="x", visible=False)
            ax.set_title(f"Relation weights, layer {layer}" if len(layers) > 1 else "Relation weights per fold")
        axes[0, 0].set_ylabel("weight (dashed: uniform)")
        fig.legend(loc="outside lower center", ncols=min(len(relations), 3))
        return fig

    return _render(build, key)


def relation_over_time(frame: pl.DataFrame, key: str) -> str:
    """Mean relation weight per test date (``fold, date, relation, weight``), a line per relation, folds marked."""
    relations = sorted(set(frame["relation"].to_list()))
    colors = relation_colors(relations)

    def build() -> Figure:
        fig, axes = _figure(HALF)
        ax = axes[0, 0]
        data = frame.sort("date")
        for rel in relations:
            part = data.filter(pl.col("relation") == rel)
            ax.plot(_dates(part), _values(part, "weight"), color=colors[rel], linewidth=0.6, label=rel)
        starts = data.group_by("fold").agg(pl.col("date").min()).sort("fold")
        for d in _dates(starts)[1:]:
            ax.axvline(d, color="#999999", linewidth=0.6, linestyle=(0, (2, 2)))
        _date_axis(ax)
        ax.set_title("Relation weight over test dates")
        ax.set_ylabel("mean weight")
        fig.legend(loc="outside lower center", ncols=min(len(relations), 3))
        return fig

    return _render(build, key)


def lag_heatmap(frame: pl.DataFrame, color: str, key: str, *, annotate_max: int = 40) -> str:
    """Temporal attention per lag and fold (``fold, lag, attention``) as a fold x lag heatmap (lag 0 = the date)."""
    folds = sorted(set(frame["fold"].to_list()))
    lags = sorted(set(frame["lag"].to_list()))
    cell = {(r["fold"], r["lag"]): r["attention"] for r in frame.iter_rows(named=True)}
    grid = np.array([[cell.get((f, lag), float("nan")) for lag in lags] for f in folds], dtype=float)

    def build() -> Figure:
        fig, axes = _figure((HALF[0], max(1.7, 0.42 * len(folds) + 1.1)))
        ax = axes[0, 0]
        cmap = LinearSegmentedColormap.from_list("model", ["#ffffff", color])
        # The data's own range: attention sits near uniform, and a scale from 0 would hide how it differs.
        finite = grid[np.isfinite(grid)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        lo = 0.0 if hi - lo < 1e-12 else lo
        mesh = ax.pcolormesh(np.ma.masked_invalid(grid), cmap=cmap, vmin=lo, vmax=hi, edgecolors="white",
                             linewidth=0.5)
        ax.set_xticks(np.arange(len(lags)) + 0.5, [str(v) for v in lags])
        ax.set_yticks(np.arange(len(folds)) + 0.5, [f"fold {f}" for f in folds])
        if len(lags) > 12:  # keep every other label readable
            for i, label in enumerate(ax.get_xticklabels()):
                label.set_visible(i % 2 == 0)
        ax.invert_yaxis()
        ax.grid(False)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        if grid.size <= annotate_max:
            for i in range(len(folds)):
                for j in range(len(lags)):
                    v = grid[i, j]
                    if np.isfinite(v):
                        ax.text(j + 0.5, i + 0.5, f"{v:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if v > lo + 0.6 * (hi - lo) else TEXT)
        fig.colorbar(mesh, ax=ax, shrink=0.9, pad=0.02, aspect=12).outline.set_linewidth(0.4)
        ax.set_xlabel(f"lag (days before the date; uniform = {1 / len(lags):.2f})")
        ax.set_title("Temporal attention by lag")
        return fig

    return _render(build, key)
