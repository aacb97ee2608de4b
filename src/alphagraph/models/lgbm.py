"""LightGBM baseline: one regressor per horizon and fold on the normalized features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from alphagraph.config import LgbmConfig
from alphagraph.normalize import feature_columns


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

    ``split_panel`` is the output of :func:`alphagraph.split.assign_split`.
    """
    feats = feature_columns(split_panel)
    train = split_panel.filter(pl.col("split") == "train")
    val = split_panel.filter(pl.col("split") == "val")
    out_rows = split_panel.filter(pl.col("split").is_in(["val", "test"]))
    X_out = out_rows.select(feats).to_numpy()
    preds, importance, best, boosters = {}, [], {}, {}
    params = booster_params(cfg, seed)
    for h in horizons:
        y = f"y_{h}d"
        tr, va = train.drop_nulls(y), val.drop_nulls(y)
        if tr.is_empty() or va.is_empty():
            raise ValueError(f"lgbm fold {fold}: no labelled {'train' if tr.is_empty() else 'val'} rows for {y}")
        dtrain = lgb.Dataset(tr.select(feats).to_numpy(), tr[y].to_numpy(), feature_name=feats, free_raw_data=True)
        dval = lgb.Dataset(va.select(feats).to_numpy(), va[y].to_numpy(), reference=dtrain)
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


def save_boosters(result: FoldResult, fold: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for h, booster in result.boosters.items():
        booster.save_model(str(folder / f"fold{fold}_{h}d.txt"), num_iteration=booster.best_iteration)
