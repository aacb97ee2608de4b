"""Linear references: ridge regression per horizon on the normalized features, no training loop.

Kinds (the zoo entry's name; one params group, ``linear``):

- ``linear``: the normalized panel's ``f_*`` feature columns;
- ``linear_graph``: the same plus the relational ``f_rel_*`` columns of the
  ``lgbm_graph`` baseline (:mod:`alphagraph.graph.relational`, its params group's spec),
  so both graph-aware references see identical inputs.

Per fold and horizon h, on the fold's train rows with a label ``y_{h}d``: the
target is ``y_{h}d`` z-scored within each date; the fit minimizes

    mean((z - X w - b)^2) + alpha * |w|^2

(``alpha`` per training row, so one grid means the same shrinkage on any panel
size; the intercept is not penalized). A missing feature is 0, the date's
cross-sectional mean (features are per-date z-scores). Every alpha of
``linear.alphas`` is fitted on the train rows and scored by the mean daily
RankIC (Spearman) on the fold's validation rows; the best one (ties: the
larger alpha) predicts the val and test rows. No refit on validation: the
val predictions stay out of sample like every other model's. Test rows are
never read for fitting or selection.

Closed form in float64 from the Gram matrix, accumulated over fixed blocks
of rows in a fixed order under a fixed number of BLAS threads: a rerun is
bit-identical. Per fold: ``coefficients.json`` in the run folder (published
to ``models/<name>/fold<k>/``), a ``coefficients`` frame (``plots/<name>/``),
and the chosen alpha and its validation RankIC per horizon in the training
record (``alpha_{h}d_fold<k>``, ``val_rank_ic_{h}d_fold<k>``); the training
curve is the validation RankIC over the alpha grid.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from alphagraph.runtime import paths
from alphagraph.runtime.config import Params
from alphagraph.runtime.errors import UserError
from alphagraph.graph.build import blas_threads
from alphagraph.runtime.io import read_parquet
from alphagraph.runtime.log import get_logger
from alphagraph.features.normalize import feature_columns
from alphagraph.evaluation.split import Fold
from alphagraph.train.outputs import TEST, TRAIN, VAL, FoldOutput, predictions_frame, split_codes
from alphagraph.train.types import FitResult
from alphagraph.evaluation.walkforward import label_reach

KINDS = ("linear", "linear_graph")
# Rows per block of the Gram products: fixed (not memory-dependent) so that the float sums,
# and so the coefficients, never depend on the machine's memory setting.
BLOCK_ROWS = 32768
log = get_logger("linear")


def _check_kind(name: str) -> None:
    if name not in KINDS:
        raise ValueError(f"linear kind must be one of {KINDS}, got {name!r}")


@dataclass(frozen=True)
class LinearIndex:
    """The panel the kind reads (``linear_graph``: with the ``f_rel_*`` columns) and its feature columns."""

    name: str
    panel: pl.DataFrame
    features: list[str]


def linear_index(
    name: str,
    panel: pl.DataFrame,
    params: Params,
    edges: pl.DataFrame | None = None,
    prices: pl.DataFrame | None = None,
) -> LinearIndex:
    """The kind's inputs; ``linear_graph`` needs the graph stage's edges and the raw closes."""
    _check_kind(name)
    if name == "linear_graph":
        from alphagraph.graph.relational import add_relational_features, spec_from_params

        if edges is None or prices is None:
            raise ValueError("linear_graph needs the edges and the prices (date, code, close)")
        panel, cover = add_relational_features(panel, prices, edges, spec_from_params(params), params.normalize.clip)
        for rel, c in cover.items():
            log.info("%s: rows with in-neighbours %.1f%%, mean in-degree %.2f", rel, 100 * c["rows_with_neighbours"], c["mean_degree"])
    return LinearIndex(name, panel, feature_columns(panel))


def zoo_index(name: str, panel: pl.DataFrame, edges: pl.DataFrame | None, params: Params) -> LinearIndex:
    """The model stage's index: ``linear_graph`` reads ``data/raw/prices.parquet`` here."""
    _check_kind(name)
    prices = read_parquet(paths.PRICES, columns=["date", "code", "close"]) if name == "linear_graph" else None
    return linear_index(name, panel, params, edges, prices)


# ------------------------------------------------------------------ fitting


@dataclass
class LinearFold:
    """One fold's fit: predictions of its val and test rows and, per horizon, the ridge solution."""

    predictions: pl.DataFrame
    features: list[str]
    alphas: list[float]  # the grid, ascending
    alpha: dict[int, float]  # chosen per horizon
    coef: dict[int, np.ndarray]  # [F] per horizon, at the chosen alpha
    intercept: dict[int, float]
    val_rank_ic: dict[int, list[float | None]]  # per horizon, over the grid
    train_rows: dict[int, int]

    def chosen_ic(self, h: int) -> float | None:
        return self.val_rank_ic[h][self.alphas.index(self.alpha[h])]


def _blocks(frame: pl.DataFrame, rows: np.ndarray, features: list[str]):
    """Float64 feature blocks of ``rows`` (nulls and NaN -> 0), :data:`BLOCK_ROWS` at a time."""
    cols = [pl.col(c).cast(pl.Float64).fill_nan(0.0).fill_null(0.0) for c in features]
    for lo in range(0, rows.size, BLOCK_ROWS):
        idx = rows[lo: lo + BLOCK_ROWS]
        yield lo, frame.select(pl.col(features).gather(pl.Series(idx))).select(cols).to_numpy().astype(np.float64, copy=False)


def zscored_targets(panel: pl.DataFrame, rows: np.ndarray, horizons: list[int]) -> np.ndarray:
    """``y_{h}d`` of ``rows`` z-scored within each date over those rows [rows, H]; NaN where unusable.

    Unusable: no label, or a date whose labelled rows are fewer than 2 or constant.
    """
    sub = panel.select("date", *[f"y_{h}d" for h in horizons])[pl.Series(rows)]

    def z(c: str) -> pl.Expr:
        y = pl.col(c).cast(pl.Float64).fill_nan(None)
        mean, std = y.mean().over("date"), y.std().over("date")
        return pl.when(std > 1e-12).then((y - mean) / std).otherwise(None).alias(c)

    out = sub.select(z(f"y_{h}d") for h in horizons)
    return out.to_numpy().astype(np.float64).reshape(len(rows), len(horizons))


def _ridge(gram: np.ndarray, xs: np.ndarray, xy: np.ndarray, ys: float, n: int, alpha: float) -> tuple[np.ndarray, float]:
    """The centred ridge solution from raw sums: X'X, X'1, X'y, 1'y over n rows."""
    mean_x, mean_y = xs / n, ys / n
    cov = gram / n - np.outer(mean_x, mean_x)
    w = np.linalg.solve(cov + alpha * np.eye(cov.shape[0]), xy / n - mean_x * mean_y)
    return w, float(mean_y - mean_x @ w)


def daily_rank_ic(dates: np.ndarray, label: np.ndarray, preds: np.ndarray) -> list[float | None]:
    """Mean over dates of the Spearman correlation of each column of ``preds`` with ``label``."""
    frame = pl.DataFrame({"date": dates, "y": label}).hstack(
        pl.DataFrame(preds, schema=[f"p{j}" for j in range(preds.shape[1])])
    )
    per_day = (
        frame.group_by("date", maintain_order=True)
        .agg(pl.corr(f"p{j}", "y", method="spearman").alias(f"p{j}") for j in range(preds.shape[1]))
        .sort("date")
    )
    means = per_day.select(pl.col(f"p{j}").fill_nan(None).mean() for j in range(preds.shape[1])).row(0)
    return [None if m is None or not math.isfinite(m) else float(m) for m in means]


def fit_linear_fold(name: str, index: LinearIndex, fold: Fold, params: Params) -> LinearFold:
    """Fit every alpha on the fold's train rows, choose per horizon on its val rows, predict val and test rows."""
    _check_kind(name)
    if index.name != name:
        raise ValueError(f"the index was built for {index.name}, not {name}")
    cfg, horizons, panel, feats = params.linear, list(params.features.horizons), index.panel, index.features
    if not feats:
        raise UserError(f"{name}: the normalized panel has no feature columns (f_*)")
    alphas = sorted(cfg.alphas)
    codes = split_codes(panel, fold, label_reach(params))
    train = np.flatnonzero(codes == TRAIN)
    out = np.flatnonzero((codes == VAL) | (codes == TEST))
    n_f, n_h = len(feats), len(horizons)
    with blas_threads(cfg.num_threads):
        # Sums over the train rows usable for each horizon; the rows usable for every horizon once.
        z = zscored_targets(panel, train, horizons)
        ok = ~np.isnan(z)
        common = ok.all(axis=1)
        gram_common = np.zeros((n_f, n_f))
        gram = np.zeros((n_h, n_f, n_f))
        xs, xy = np.zeros((n_h, n_f)), np.zeros((n_h, n_f))
        for lo, x in _blocks(panel, train, feats):
            zb, okb, cb = z[lo: lo + len(x)], ok[lo: lo + len(x)], common[lo: lo + len(x)]
            xc = x[cb]
            gram_common += xc.T @ xc
            for j in range(n_h):
                extra = x[okb[:, j] & ~cb]
                if len(extra):
                    gram[j] += extra.T @ extra
                used = x[okb[:, j]]
                xs[j] += used.sum(axis=0)
                xy[j] += used.T @ zb[okb[:, j], j]
        n_rows = ok.sum(axis=0)
        weights = np.zeros((n_f, n_h * len(alphas)))
        intercepts = np.zeros(n_h * len(alphas))
        for j, h in enumerate(horizons):
            if n_rows[j] < 2:
                raise UserError(f"{name} fold {fold.fold}: fewer than 2 labelled train rows for y_{h}d")
            ys = float(np.nansum(z[:, j]))  # 0 up to rounding: z-scored per date
            for a, alpha in enumerate(alphas):
                w, b = _ridge(gram_common + gram[j], xs[j], xy[j], ys, int(n_rows[j]), alpha)
                weights[:, j * len(alphas) + a], intercepts[j * len(alphas) + a] = w, b
        pred = np.zeros((out.size, weights.shape[1]))
        for lo, x in _blocks(panel, out, feats):
            pred[lo: lo + len(x)] = x @ weights + intercepts
    # Choose on validation rows only (their labels; test labels are never read).
    val = codes[out] == VAL
    if not val.any():
        raise UserError(f"{name} fold {fold.fold}: no validation rows to choose the ridge alpha on")
    dates = panel["date"].gather(pl.Series(out[val])).to_numpy()
    labels = panel.select(pl.col(f"y_{h}d").cast(pl.Float64) for h in horizons)[pl.Series(out[val])].to_numpy()
    chosen, coef, intercept, grid_ic, reg = {}, {}, {}, {}, np.zeros((out.size, n_h))
    for j, h in enumerate(horizons):
        cols = slice(j * len(alphas), (j + 1) * len(alphas))
        has = ~np.isnan(labels[:, j])
        ics = daily_rank_ic(dates[has], labels[has, j], pred[val][has][:, cols])
        scores = [-math.inf if ic is None else ic for ic in ics]
        best = max(range(len(alphas)), key=lambda a: (scores[a], a))  # ties: the larger alpha
        k = j * len(alphas) + best
        chosen[h], coef[h], intercept[h], grid_ic[h] = alphas[best], weights[:, k].copy(), float(intercepts[k]), ics
        reg[:, j] = pred[:, k]
    frame = predictions_frame(panel, out, codes, reg, None, horizons, fold.fold)
    return LinearFold(frame, feats, alphas, chosen, coef, intercept, grid_ic, {h: int(n_rows[j]) for j, h in enumerate(horizons)})


# ------------------------------------------------------------------ outputs


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def coefficients_frame(result: LinearFold, fold: int) -> pl.DataFrame:
    """``fold, horizon, feature, coef, alpha`` at each horizon's chosen alpha (features are z-scores: |coef| ranks them)."""
    parts = [
        pl.DataFrame({"feature": result.features, "coef": result.coef[h]}).with_columns(
            horizon=pl.lit(h, dtype=pl.Int32), alpha=pl.lit(result.alpha[h])
        )
        for h in result.coef
    ]
    return pl.concat(parts).with_columns(fold=pl.lit(fold, dtype=pl.Int32)).select("fold", "horizon", "feature", "coef", "alpha")


def write_coefficients(result: LinearFold, path: Path) -> None:
    """The fitted model of one fold as JSON: per horizon alpha, intercept, coefficients, the grid's val RankIC."""
    doc = {
        "features": result.features,
        "alphas": result.alphas,
        "horizons": {
            str(h): {
                "alpha": result.alpha[h],
                "intercept": result.intercept[h],
                "train_rows": result.train_rows[h],
                "val_rank_ic": dict(zip(map(str, result.alphas), result.val_rank_ic[h])),
                "coef": result.coef[h].tolist(),
            }
            for h in result.coef
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")


def fold_output(result: LinearFold, seconds: float = 0.0) -> FoldOutput:
    """The shared loop's :class:`FoldOutput`: no epochs; the curve is the val RankIC over the alpha grid."""
    horizons = list(result.alpha)
    history = [
        {"alpha": alpha, **{f"val_rank_ic_{h}d": _round(result.val_rank_ic[h][a]) for h in horizons}}
        for a, alpha in enumerate(result.alphas)
    ]
    extra: dict[str, Any] = {}
    for h in horizons:
        extra[f"alpha_{h}d"] = result.alpha[h]
        extra[f"val_rank_ic_{h}d"] = _round(result.chosen_ic(h))
    best = result.chosen_ic(horizons[0])
    return FoldOutput(result.predictions, FitResult(history, None, best, 0, False, True, seconds, extra))


def train_zoo_fold(
    name: str, panel: pl.DataFrame, index: LinearIndex | None, fold: Fold, params: Params, run_dir: str | Path | None = None
) -> tuple[FoldOutput, dict[str, pl.DataFrame]]:
    """The model stage's fold: the ridge fit, ``coefficients.json`` in ``run_dir`` and the ``coefficients`` frame."""
    _check_kind(name)
    if index is None:
        index = linear_index(name, panel, params)
    start = time.perf_counter()
    result = fit_linear_fold(name, index, fold, params)
    log.info(
        "%s fold %d: alpha %s, val RankIC %s", name, fold.fold,
        {f"{h}d": a for h, a in result.alpha.items()}, {f"{h}d": _round(result.chosen_ic(h)) for h in result.alpha},
    )
    if run_dir is not None:
        write_coefficients(result, Path(run_dir) / "coefficients.json")
    return fold_output(result, time.perf_counter() - start), {"coefficients": coefficients_frame(result, fold.fold)}


__all__ = [
    "KINDS", "LinearIndex", "LinearFold", "linear_index", "zoo_index", "zscored_targets", "daily_rank_ic",
    "fit_linear_fold", "coefficients_frame", "write_coefficients", "fold_output", "train_zoo_fold",
]
