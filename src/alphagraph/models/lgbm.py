"""LightGBM baseline: one regressor per horizon and fold on the normalized features.

Two models of the model stage: ``lgbm`` (the panel's features) and
``lgbm_graph`` (plus the relational ``f_rel_*`` features of
:mod:`alphagraph.graph.relational`, params ``lgbm_graph``); both take the
``lgbm`` section's hyperparameters, so lgbm vs lgbm_graph isolates what the graph adds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from alphagraph.evaluation.split import Fold
from alphagraph.evaluation.walkforward import split_for
from alphagraph.features.normalize import feature_columns
from alphagraph.runtime import paths
from alphagraph.runtime.config import LgbmConfig, Params
from alphagraph.runtime.log import get_logger
from alphagraph.train.outputs import FoldOutput
from alphagraph.train.types import FitResult

KINDS = ("lgbm", "lgbm_graph")
TOP_FEATURES = 30  # features in the gain importance plot


@dataclass
class FoldResult:
    predictions: pl.DataFrame  # date, code, fold, split, pred_{h}d for the fold's val and test rows
    importance: pl.DataFrame  # fold, horizon, feature, gain
    best_iteration: dict[int, int]
    boosters: dict[int, lgb.Booster]


def booster_params(cfg: LgbmConfig, seed: int) -> dict:
    """LightGBM parameters; deterministic needs row-wise histograms and fixed threads."""
    return {
        "objective": "regression",
        "metric": "l2",
        "num_leaves": cfg.num_leaves,
        "learning_rate": cfg.learning_rate,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": cfg.bagging_freq,
        "lambda_l2": cfg.lambda_l2,
        "num_threads": cfg.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


def train_fold(split_panel: pl.DataFrame, fold: int, horizons: list[int], cfg: LgbmConfig, seed: int) -> FoldResult:
    """Fit on ``split == train``, early-stop on ``val``, predict val and test rows.

    ``split_panel`` is the output of :func:`alphagraph.evaluation.split.assign_split`.
    """
    feats = feature_columns(split_panel)
    train = split_panel.filter(pl.col("split") == "train")
    val = split_panel.filter(pl.col("split") == "val")
    out_rows = split_panel.filter(pl.col("split").is_in(["val", "test"]))
    # Row-major (C order): LightGBM reads a matrix by rows and copies a column-major one first.
    X_out = out_rows.select(feats).to_numpy(order="c")
    preds, importance, best, boosters = {}, [], {}, {}
    params = booster_params(cfg, seed)
    # Binning the features is most of a fit's time and does not depend on the label: horizons with the
    # same labelled train rows share one constructed train Dataset (its label swapped in), and so do
    # their val Datasets, which gives the same bins, so the same boosters, as building each anew.
    trains: dict[bytes, lgb.Dataset] = {}
    vals: dict[tuple[bytes, bytes], lgb.Dataset] = {}
    for h in horizons:
        y = f"y_{h}d"
        tr_rows, va_rows = train[y].is_not_null().to_numpy(), val[y].is_not_null().to_numpy()
        if not tr_rows.any() or not va_rows.any():
            raise ValueError(f"lgbm fold {fold}: no labelled {'train' if not tr_rows.any() else 'val'} rows for {y}")
        tr_y, va_y = train[y].to_numpy()[tr_rows], val[y].to_numpy()[va_rows]
        tr_key = np.packbits(tr_rows).tobytes()
        va_key = (tr_key, np.packbits(va_rows).tobytes())
        if tr_key in trains:
            trains[tr_key].set_label(tr_y)
        else:
            trains[tr_key] = lgb.Dataset(train.filter(tr_rows).select(feats).to_numpy(order="c"), tr_y, feature_name=feats, free_raw_data=True)
        dtrain = trains[tr_key]
        if va_key in vals:
            vals[va_key].set_label(va_y)
        else:
            vals[va_key] = lgb.Dataset(val.filter(va_rows).select(feats).to_numpy(order="c"), va_y, reference=dtrain)
        dval = vals[va_key]
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=cfg.n_estimators,
            valid_sets=[dval],
            callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
        )
        best[h] = booster.best_iteration
        boosters[h] = booster
        preds[f"pred_{h}d"] = booster.predict(X_out, num_iteration=booster.best_iteration).astype(np.float32)
        importance.append(
            pl.DataFrame(
                {"feature": feats, "gain": booster.feature_importance("gain", iteration=booster.best_iteration)}
            ).with_columns(fold=pl.lit(fold), horizon=pl.lit(h))
        )
    predictions = out_rows.select("date", "code", "split").with_columns(
        fold=pl.lit(fold, dtype=pl.Int32), **{k: pl.Series(v) for k, v in preds.items()}
    )
    imp = pl.concat(importance).select("fold", "horizon", "feature", "gain")
    return FoldResult(predictions.select("date", "code", "fold", "split", *preds), imp, best, boosters)


def save_boosters(result: FoldResult, folder: Path) -> None:
    """One text model per horizon (``{h}d.txt``, cut at its best iteration) and the gain importance."""
    folder.mkdir(parents=True, exist_ok=True)
    for h, booster in result.boosters.items():
        booster.save_model(str(folder / f"{h}d.txt"), num_iteration=booster.best_iteration)
    result.importance.write_csv(folder / "importance.csv")


# ------------------------------------------------------------------ model stage hooks


def _check_kind(name: str) -> None:
    if name not in KINDS:
        raise ValueError(f"the lgbm module trains {', '.join(KINDS)}, not {name!r}")


@dataclass
class LgbmIndex:
    """What every fold trains on: the panel (with lgbm_graph's relational columns) and their metrics entry."""

    panel: pl.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)


def zoo_index(name: str, panel: pl.DataFrame, edges: pl.DataFrame | None, params: Params) -> LgbmIndex:
    """The model stage's index; ``lgbm_graph`` reads the graph's edges and the raw closes here."""
    _check_kind(name)
    if name == "lgbm":
        return LgbmIndex(panel)
    from alphagraph.graph.relational import with_relational  # only lgbm_graph builds the graph's features

    return LgbmIndex(*with_relational(panel, params, get_logger(name)))


def zoo_inputs(name: str, params: Params, folds: Sequence[Fold]) -> list[Path]:
    """lgbm_graph's relational features read the graph's edges and the raw closes."""
    return [paths.EDGES, paths.PRICES] if name == "lgbm_graph" else []


def train_zoo_fold(
    name: str, panel: pl.DataFrame, index: LgbmIndex, fold: Fold, params: Params, run_dir: str | Path | None = None
) -> tuple[FoldOutput, dict[str, pl.DataFrame]]:
    """The model stage's fold: boosters and importance in ``run_dir``, the gain importance frame."""
    _check_kind(name)
    start = time.perf_counter()
    result = train_fold(split_for(index.panel, fold, params), fold.fold, params.features.horizons, params.lgbm, params.seed)
    if run_dir is not None:
        save_boosters(result, Path(run_dir))
    get_logger(name).info("fold %d: best iterations %s", fold.fold, result.best_iteration)
    extra = {f"best_iteration_{h}d": it for h, it in result.best_iteration.items()}
    fit = FitResult([], None, None, 0, False, True, time.perf_counter() - start, extra)
    return FoldOutput(result.predictions, fit), {"importance": result.importance}


def zoo_summary(
    name: str, index: Callable[[], LgbmIndex], frames: dict[str, Sequence[pl.DataFrame]], params: Params
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """The metrics entries (lgbm_graph's relational features) and the plot of the gain share at the
    first horizon, averaged over folds (the top :data:`TOP_FEATURES`)."""
    importance = pl.concat(frames["importance"])
    if name == "lgbm_graph":
        from alphagraph.graph.relational import log_relational_gain

        log_relational_gain(importance, get_logger(name))
    gain = importance.filter(pl.col("horizon") == params.features.horizons[0]).group_by("feature").agg(pl.col("gain").mean())
    top = gain.with_columns(gain_share=(pl.col("gain") / pl.col("gain").sum()).round(6)).sort("gain", "feature", descending=[True, False])
    return index().metrics, {"importance": top.head(TOP_FEATURES).select("feature", "gain_share")}
