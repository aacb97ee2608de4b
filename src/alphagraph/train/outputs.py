"""A fold's outputs, without torch: the split code of each panel row, the predictions frame, a fold's
output and what the model stage does with the folds' outputs. LightGBM and the ridges use these too, so
their stages never import torch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from alphagraph.evaluation.split import Fold, assign_split
from alphagraph.runtime import paths
from alphagraph.runtime.io import write_csv
from alphagraph.runtime.log import get_logger
from alphagraph.train.types import FitResult

log = get_logger("train")

NONE, TRAIN, VAL, TEST = 0, 1, 2, 3
SPLIT_CODE = {"train": TRAIN, "val": VAL, "test": TEST}
SPLIT_NAME = {v: k for k, v in SPLIT_CODE.items()}


def split_codes(panel: pl.DataFrame, fold: Fold, reach: int) -> np.ndarray:
    """Int8 split code of every row of ``panel`` for ``fold`` (NONE outside the fold or purged).

    ``panel`` must be the frame whose row numbers the graph index reports
    (``GraphIndex(edges, panel)`` -> ``batch.row``).
    """
    indexed = panel.select("date", "code").with_row_index("_row")
    assigned = assign_split(indexed, fold, reach)
    codes = np.zeros(panel.height, dtype=np.int8)
    rows = assigned["_row"].to_numpy().astype(np.int64)
    codes[rows] = assigned["split"].replace_strict(SPLIT_CODE, return_dtype=pl.Int8).to_numpy()
    return codes


def predictions_frame(
    panel: pl.DataFrame,
    rows: np.ndarray,
    codes: np.ndarray,
    reg: np.ndarray,
    p_up: np.ndarray | None,
    horizons: Sequence[int],
    fold: int,
    p_signal: np.ndarray | None = None,
) -> pl.DataFrame:
    """``date, code, fold, split, pred_{h}d ..., p_up_{h}d ..., p_signal_{h}d ...`` for the given panel rows."""
    rows = np.asarray(rows, dtype=np.int64)
    keys = panel.select(pl.col("date", "code").gather(pl.Series(rows)))
    split = pl.Series(codes[rows]).replace_strict(SPLIT_NAME, default="none", return_dtype=pl.Utf8)
    cols: dict[str, Any] = {"fold": pl.lit(fold, dtype=pl.Int32), "split": split}
    for j, h in enumerate(horizons):
        cols[f"pred_{h}d"] = pl.Series(reg[:, j].astype(np.float32), dtype=pl.Float32)
    if p_up is not None:
        for j, h in enumerate(horizons):
            cols[f"p_up_{h}d"] = pl.Series(p_up[:, j].astype(np.float32), dtype=pl.Float32)
    if p_signal is not None:
        for j, h in enumerate(horizons):
            cols[f"p_signal_{h}d"] = pl.Series(p_signal[:, j].astype(np.float32), dtype=pl.Float32)
    return keys.with_columns(**cols).sort("date", "code")


@dataclass
class FoldOutput:
    predictions: pl.DataFrame  # date, code, fold, split, pred_{h}d, p_up_{h}d / p_signal_{h}d (with those heads)
    result: FitResult

    def training_record(self, fold: int) -> tuple[pl.DataFrame, dict[str, Any]]:
        """The per-epoch curve (a plots file) and the fold's entries of the metrics' ``train`` dict."""
        r = self.result
        curve = pl.DataFrame(r.history, infer_schema_length=None).with_columns(fold=pl.lit(fold))
        entries = {
            f"best_epoch_fold{fold}": r.best_epoch,
            f"epochs_run_fold{fold}": r.epochs_run,
            f"val_best_fold{fold}": None if r.best_score is None else round(r.best_score, 6),
        }
        # A trainer's own per-fold figures (a closed-form model's chosen penalty, say); resume keeps them.
        entries |= {f"{key}_fold{fold}": value for key, value in r.extra.items()}
        if r.epochs_run:  # a closed-form fit (no epochs) logs its own line
            log.info("fold %d: best epoch %s of %d (val %s), %.0f s", fold, r.best_epoch, r.epochs_run, r.best_score, r.train_seconds)
        return curve.select("fold", pl.exclude("fold")), entries


def collect_folds(outputs: Sequence[tuple[int, FoldOutput]]) -> tuple[pl.DataFrame, list[tuple[int, pl.DataFrame]], dict[str, Any]]:
    """Every fold's predictions in one frame, each fold's training curve, and the metrics' ``train`` dict."""
    curves, train = [], {}
    for k, out in outputs:
        curve, entries = out.training_record(k)
        curves.append((k, curve))
        train |= entries
    return pl.concat([out.predictions for _, out in outputs]), curves, train


def write_training_curves(name: str, curves: Sequence[tuple[int, pl.DataFrame]]) -> None:
    """``plots/{name}/training/fold{k}.csv`` per fold (x = epoch); dvc.yaml plots the folder, so the
    plots follow ``split.n_splits``. Curves of folds that no longer exist are removed."""
    folder = paths.PLOTS / name / "training"
    keep = {f"fold{k}.csv" for k, _ in curves}
    for stale in folder.glob("fold*.csv") if folder.is_dir() else []:
        if stale.name not in keep:
            stale.unlink()
    for k, curve in curves:
        write_csv(curve, folder / f"fold{k}.csv")
