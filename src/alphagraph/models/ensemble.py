"""Ensembles of model predictions: equal-weight and validation-fitted rank averages.

Members are predictions frames (``date, code, fold, split, pred_{h}d``, see
:func:`alphagraph.train.data.predictions_frame`); the ensemble is one frame of
the same schema (``date, code, fold, split, pred_{h}d``; classification heads,
``p_up_{h}d`` / ``p_signal_{h}d``, are not combined and are left out).

* Alignment: members are inner-joined on ``(fold, split, date, code)``; a row
  that any member lacks is dropped from the ensemble. A row that one member
  predicts as null stays, with a null ensemble prediction at that horizon.
* Scale: models predict on different scales (a return, a z-score, a logit),
  so every member's ``pred_{h}d`` is first turned into a cross-sectional rank
  score ``rank / (n + 1) - 0.5`` in (-0.5, 0.5) per ``(fold, split, date)``
  (ties share their average rank; ``n`` counts the non-null predictions). A
  date is ranked within its fold, because walk-forward folds overlap in time
  (fold k's test days are fold k+1's validation days) with different models.
* Combination: ``pred_{h}d`` of the ensemble is ``sum_m w_m * score_m``.
  :func:`equal_weight` uses ``w_m = 1 / M``; :func:`fit_weights` fits, per fold
  and horizon, non-negative weights summing to 1 that maximize the mean daily
  Pearson IC of the combined score with ``ret_{h}d`` on that fold's
  validation rows only, and :func:`weighted` applies each fold's weights to
  its validation and test rows. Test labels never reach the fit.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize

KEYS = ("fold", "split", "date", "code")
OUTPUT_ORDER = ("date", "code", "fold", "split")
# Walk-forward validation windows are ~250 days; fewer days than this make
# fitted weights mostly noise, so the fold keeps equal weights.
MIN_VAL_DAYS = 20
# Weights below this are optimizer round-off and are set to 0.
_WEIGHT_DUST = 1e-9
# Below this cross-sectional variance a member's rank score is taken as constant.
_TINY = 1e-12

Weights = Mapping[int, Mapping[int, Mapping[str, float]]]  # fold -> horizon -> model -> weight


def _pred(h: int) -> str:
    return f"pred_{h}d"


def _score(model: str, h: int) -> str:
    # A separator no model name is expected to hold keeps member columns apart.
    return f"{model}\x1fpred_{h}d"


def rank_scores(frame: pl.DataFrame, horizons: Sequence[int]) -> pl.DataFrame:
    """``frame`` with each ``pred_{h}d`` replaced by ``rank / (n + 1) - 0.5`` per ``(fold, split, date)``."""
    group = ("fold", "split", "date")
    return frame.with_columns(
        (
            pl.col(_pred(h)).cast(pl.Float64).fill_nan(None).rank("average").over(group)
            / (pl.col(_pred(h)).cast(pl.Float64).fill_nan(None).count().over(group) + 1)
            - 0.5
        ).alias(_pred(h))
        for h in horizons
    )


def align(members: Mapping[str, pl.DataFrame], horizons: Sequence[int]) -> pl.DataFrame:
    """``fold, split, date, code`` and one rank-score column per member and horizon, inner-joined.

    Raises ValueError on no members, a missing column or a duplicated key.
    """
    if not members:
        raise ValueError("ensemble: no members")
    need = [*KEYS, *(_pred(h) for h in horizons)]
    out: pl.DataFrame | None = None
    for name, frame in members.items():
        missing = [c for c in need if c not in frame.columns]
        if missing:
            raise ValueError(f"ensemble member {name!r}: missing columns {missing}")
        dup = frame.select(KEYS).is_duplicated().sum()
        if dup:
            raise ValueError(f"ensemble member {name!r}: {dup} rows share a (fold, split, date, code) key")
        # Rank before joining: a member's score is its ranking in its own cross-section.
        part = rank_scores(frame.select(need), horizons).select(
            *KEYS, *(pl.col(_pred(h)).alias(_score(name, h)) for h in horizons)
        )
        out = part if out is None else out.join(part, on=list(KEYS), how="inner")
    assert out is not None
    return out.sort("fold", "date", "code")


def _weight(model: str, h: int) -> str:
    return f"w\x1f{model}\x1f{h}"


def _combine(
    aligned: pl.DataFrame, weights: pl.DataFrame, models: Sequence[str], horizons: Sequence[int]
) -> pl.DataFrame:
    """Predictions frame from aligned scores and a per-fold wide weights frame (:func:`_wide_weights`)."""
    joined = aligned.join(weights, on="fold", how="left")
    # Plain `+` (not sum_horizontal, which skips nulls): a null member score nulls the ensemble.
    preds = [
        reduce(operator.add, [pl.col(_score(m, h)) * pl.col(_weight(m, h)) for m in models])
        .cast(pl.Float32)
        .alias(_pred(h))
        for h in horizons
    ]
    return joined.select(*OUTPUT_ORDER, *preds).sort("fold", "date", "code")


def _wide_weights(
    weights: Weights, folds: Sequence[Any], models: Sequence[str], horizons: Sequence[int], dtype: pl.DataType
) -> pl.DataFrame:
    """One row per fold (cast to ``dtype``, the members' fold type), one weight column per (model, horizon)."""
    cols = {_weight(m, h): [float(weights[f][h][m]) for f in folds] for m in models for h in horizons}
    return pl.DataFrame(
        {"fold": pl.Series(folds, dtype=dtype), **cols}, schema_overrides=dict.fromkeys(cols, pl.Float64)
    )


def equal_weight(members: Mapping[str, pl.DataFrame], horizons: Sequence[int]) -> pl.DataFrame:
    """Equal-weight average of the members' rank scores (``date, code, fold, split, pred_{h}d``)."""
    aligned = align(members, horizons)
    models = list(members)
    folds = aligned["fold"].unique().sort().to_list()
    equal = {f: {h: dict.fromkeys(models, 1.0 / len(models)) for h in horizons} for f in folds}
    return _combine(aligned, _wide_weights(equal, folds, models, horizons, aligned.schema["fold"]), models, horizons)


def weighted(members: Mapping[str, pl.DataFrame], weights: Weights, horizons: Sequence[int]) -> pl.DataFrame:
    """Each fold's weights (``weights[fold][h][model]``, e.g. ``fit_weights(...)["weights"]``) on its val and test rows.

    Raises ValueError when a fold, horizon or member of the aligned frame has no weight.
    """
    aligned = align(members, horizons)
    models = list(members)
    folds = aligned["fold"].unique().sort().to_list()
    for fold in folds:
        for h in horizons:
            have = weights.get(fold, {}).get(h)
            if have is None or any(m not in have for m in models):
                raise ValueError(f"ensemble: no weights for fold {fold}, horizon {h}d and members {models}")
    return _combine(aligned, _wide_weights(weights, folds, models, horizons, aligned.schema["fold"]), models, horizons)


def _tidy(weights: Weights) -> pl.DataFrame:
    rows = [(f, h, m, float(w)) for f, per_h in weights.items() for h, per_m in per_h.items() for m, w in per_m.items()]
    return pl.DataFrame(rows, schema={"fold": pl.Int64, "horizon": pl.Int64, "model": pl.String, "weight": pl.Float64},
                        orient="row")


# ------------------------------------------------------------------ fitting


def daily_moments(scores: np.ndarray, y: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-day cross-sectional ``cov(score_i, y)`` (D, M), ``cov(score_i, score_j)`` (D, M, M), ``var(y)`` (D).

    Rows must be sorted by ``day`` (an integer id per row). The mean daily
    Pearson IC of ``scores @ w`` is then ``mean_d (c_d . w) / sqrt(w' C_d w * v_d)``
    for any w, so the optimizer never touches the rows again.
    """
    start = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    n = np.diff(np.r_[start, len(day)]).astype(np.float64)
    rep = np.repeat(np.arange(len(start)), n.astype(np.int64))
    s = scores - (np.add.reduceat(scores, start, axis=0) / n[:, None])[rep]
    e = y - (np.add.reduceat(y, start) / n)[rep]
    c = np.add.reduceat(s * e[:, None], start, axis=0) / n[:, None]
    cov = np.add.reduceat(s[:, :, None] * s[:, None, :], start, axis=0) / n[:, None, None]
    v = np.add.reduceat(e * e, start) / n
    return c, cov, v


def mean_ic(w: np.ndarray, c: np.ndarray, cov: np.ndarray, v: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean daily Pearson IC of the combined score and its gradient in ``w``."""
    num = c @ w
    q = np.maximum(np.einsum("dij,i,j->d", cov, w, w), _TINY)  # a floor keeps an all-constant mix finite
    den = np.sqrt(q * v)
    ic = num / den
    cw = cov @ w  # (D, M)
    grad = c / den[:, None] - (num / (q * den))[:, None] * cw
    return float(ic.mean()), grad.mean(axis=0)


def _val_arrays(
    aligned: pl.DataFrame, labels: pl.DataFrame, fold: Any, h: int, models: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores (N, M), labels (N) and day ids of the fold's validation rows with a label and every score."""
    cols = [_score(m, h) for m in models]
    val = (
        aligned.filter((pl.col("fold") == fold) & (pl.col("split") == "val"))
        .select("date", "code", *cols)
        .join(
            labels.select("date", "code", pl.col(f"ret_{h}d").cast(pl.Float64).alias("_y")),
            on=["date", "code"],
            how="inner",
        )
        .drop_nulls()
        .filter(pl.col("_y").is_finite())
    )
    # A day needs 3 stocks and a non-constant label for a correlation (as evaluate.daily_ic).
    val = val.filter((pl.len().over("date") >= 3) & (pl.col("_y").std().over("date") > 0)).sort("date", "code")
    day = val["date"].rank("dense").to_numpy().astype(np.int64)
    return val.select(cols).to_numpy().astype(np.float64), val["_y"].to_numpy(), day


def _fit_one(
    scores: np.ndarray, y: np.ndarray, day: np.ndarray, models: Sequence[str], min_days: int
) -> dict[str, Any]:
    """Weights and info for one fold and horizon; equal weights with a ``reason`` when the fit is not trusted."""
    k = len(models)
    equal = np.full(k, 1.0 / k)
    n_days = int(len(np.unique(day)))
    info: dict[str, Any] = {"n_days": n_days, "method": "equal", "reason": None,
                            "val_ic": float("nan"), "val_ic_equal": float("nan")}
    if n_days == 0:
        return {"weights": equal, **info, "reason": "no validation rows with labels"}
    c, cov, v = daily_moments(scores, y, day)
    info["val_ic_equal"] = info["val_ic"] = mean_ic(equal, c, cov, v)[0]
    if k == 1:
        return {"weights": equal, **info, "reason": "one member"}
    constant = [m for i, m in enumerate(models) if np.all(cov[:, i, i] <= _TINY)]
    if constant:
        return {"weights": equal, **info, "reason": f"constant on validation: {', '.join(constant)}"}
    if n_days < min_days:
        return {"weights": equal, **info, "reason": f"{n_days} validation days < min_days={min_days}"}
    res = minimize(
        lambda w: tuple(-x for x in mean_ic(w, c, cov, v)),
        equal,
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 200, "ftol": 1e-10},
    )
    # SLSQP may step a hair outside the box, or leave 1e-17 dust: project back onto the simplex.
    w = np.asarray(res.x, dtype=np.float64)
    if not res.success or not np.all(np.isfinite(w)):
        return {"weights": equal, **info, "reason": f"optimizer failed: {res.message}"}
    w = np.where(w > _WEIGHT_DUST, w, 0.0)
    w = w / w.sum()  # sum > 0: the equality constraint held
    ic = mean_ic(w, c, cov, v)[0]
    if not ic > info["val_ic_equal"]:
        return {"weights": equal, **info, "reason": "fit did not beat equal weights on validation"}
    return {"weights": w, **info, "method": "slsqp", "val_ic": ic}


def fit_weights(
    members: Mapping[str, pl.DataFrame],
    labels: pl.DataFrame,
    horizons: Sequence[int],
    *,
    min_days: int = MIN_VAL_DAYS,
) -> dict[str, Any]:
    """Per fold and horizon, simplex weights maximizing the mean daily val IC of the combined rank score.

    ``labels`` has ``date, code, ret_{h}d``; only the fold's ``split == "val"``
    rows are joined to it, so labels of test rows cannot move the weights
    (a date that is fold k's test day may still be fold k+1's validation day).
    The objective is the mean over validation days of the Pearson correlation
    of ``sum_m w_m * score_m`` with ``ret_{h}d`` (days with < 3 stocks or a
    constant label are skipped), maximized by SLSQP from equal weights with
    bounds [0, 1] and ``sum w = 1`` (deterministic). Equal weights are kept,
    and ``info`` says why, when the fold has no labelled validation rows, fewer
    than ``min_days`` days, a member that is constant on every day, one
    member, a failed fit, or a fit no better than equal weights.

    Returns ``{"models": [...], "weights": {fold: {h: {model: w}}},
    "info": {fold: {h: {"method", "reason", "n_days", "val_ic", "val_ic_equal"}}}}``
    (``method`` is ``"slsqp"`` or ``"equal"``; ``reason`` is None for a fit).
    """
    aligned = align(members, horizons)
    models = list(members)
    missing = [c for c in ("date", "code", *(f"ret_{h}d" for h in horizons)) if c not in labels.columns]
    if missing:
        raise ValueError(f"ensemble labels: missing columns {missing}")
    weights: dict[int, dict[int, dict[str, float]]] = {}
    info: dict[int, dict[int, dict[str, Any]]] = {}
    for fold in aligned["fold"].unique().sort().to_list():
        for h in horizons:
            fit = _fit_one(*_val_arrays(aligned, labels, fold, h, models), models, min_days)
            w = fit.pop("weights")
            weights.setdefault(fold, {})[h] = {m: float(x) for m, x in zip(models, w)}
            info.setdefault(fold, {})[h] = fit
    return {"models": models, "weights": weights, "info": info}


def weights_frame(fit: Mapping[str, Any]) -> pl.DataFrame:
    """Tidy ``fold, horizon, model, weight, method, reason, n_days, val_ic, val_ic_equal`` of :func:`fit_weights`.

    One row per fold, horizon and member (members in fit order); the fit info repeats on a fold's rows.
    """
    table = _tidy(fit["weights"])
    info = [
        (f, h, i["method"], i["reason"], i["n_days"], i["val_ic"], i["val_ic_equal"])
        for f, per_h in fit["info"].items()
        for h, i in per_h.items()
    ]
    meta = pl.DataFrame(
        info,
        schema={"fold": pl.Int64, "horizon": pl.Int64, "method": pl.String, "reason": pl.String,
                "n_days": pl.Int64, "val_ic": pl.Float64, "val_ic_equal": pl.Float64},
        orient="row",
    ).with_columns(pl.col("val_ic", "val_ic_equal").fill_nan(None))
    order = {m: i for i, m in enumerate(fit["models"])}
    return (
        table.join(meta, on=["fold", "horizon"], how="left")
        .sort("fold", "horizon", pl.col("model").replace_strict(order, return_dtype=pl.Int64))
    )
