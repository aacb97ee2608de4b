"""lgbm: walk-forward LightGBM baseline -> models/lgbm/, data/predictions/lgbm.parquet, metrics/lgbm.json."""

import argparse

import polars as pl

from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.io import atomic_dir, read_parquet
from alphagraph.log import get_logger, stage_run
from alphagraph.models.lgbm import save_boosters, train_fold
from alphagraph.split import load_folds
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d, split_for
from alphagraph.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    log = get_logger("lgbm")
    with stage_run("lgbm") as rec, atomic_dir(paths.MODELS / "lgbm") as model_dir:
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        preds, importance, best = [], [], {}
        for fold in folds:
            result = train_fold(split_for(panel, fold, params), fold.fold, params.features.horizons, params.lgbm, params.seed)
            save_boosters(result, fold.fold, model_dir)
            preds.append(result.predictions)
            importance.append(result.importance)
            best |= {f"best_iteration_fold{fold.fold}_{h}d": it for h, it in result.best_iteration.items()}
            log.info("fold %d: best iterations %s", fold.fold, result.best_iteration)
        pl.concat(importance).write_csv(model_dir / "importance.csv")
        predictions = pl.concat(preds)
        metrics = evaluate_and_write("lgbm", predictions, panel, params, extra={"train": best}, oracle_ic=oracle_rank_ic_1d())
        rec.read = [str(paths.NORMALIZED_PANEL), str(paths.FOLDS)]
        rec.wrote = ["models/lgbm", "data/predictions/lgbm.parquet", "metrics/lgbm.json", "plots/lgbm"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
