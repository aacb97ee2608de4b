"""lgbm: walk-forward LightGBM baseline -> models/lgbm/, data/predictions/lgbm.parquet, metrics/lgbm.json.

``--model lgbm_graph``: the same model on the panel plus the relational ``f_rel_*``
features (alphagraph.relational, params ``lgbm_graph``) -> models/lgbm_graph/,
data/predictions/lgbm_graph.parquet, metrics/lgbm_graph.json, plots/lgbm_graph/.
"""

import argparse

import polars as pl

from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.io import atomic_dir, read_parquet, write_csv
from alphagraph.log import get_logger, stage_run
from alphagraph.models.lgbm import save_boosters, train_fold
from alphagraph.split import load_folds
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d, split_for
from alphagraph.errors import run_main

MODELS = ("lgbm", "lgbm_graph")
TOP_FEATURES = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", choices=MODELS, default="lgbm")
    args = parser.parse_args()
    params, name = load_params(args.params), args.model
    log = get_logger(name)
    with stage_run(name) as rec, atomic_dir(paths.MODELS / name) as model_dir:
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        read, extra = [str(paths.NORMALIZED_PANEL), str(paths.FOLDS)], {}
        if name == "lgbm_graph":  # imported here: the plain lgbm stage does not depend on it
            from alphagraph.relational import log_relational_gain, with_relational

            panel, extra = with_relational(panel, params, log)
            read += [str(paths.EDGES), str(paths.PRICES)]
        preds, importance, best = [], [], {}
        for fold in folds:
            result = train_fold(split_for(panel, fold, params), fold.fold, params.features.horizons, params.lgbm, params.seed)
            save_boosters(result, fold.fold, model_dir)
            preds.append(result.predictions)
            importance.append(result.importance)
            best |= {f"best_iteration_fold{fold.fold}_{h}d": it for h, it in result.best_iteration.items()}
            log.info("fold %d: best iterations %s", fold.fold, result.best_iteration)
        importance = pl.concat(importance)
        importance.write_csv(model_dir / "importance.csv")
        if name == "lgbm_graph":
            log_relational_gain(importance, log)
        predictions = pl.concat(preds)
        metrics = evaluate_and_write(name, predictions, panel, params, extra={"train": best} | extra, oracle_ic=oracle_rank_ic_1d())
        # Gain importance at the first horizon, averaged over folds, as a share of the total (dvc plots).
        gain = importance.filter(pl.col("horizon") == params.features.horizons[0]).group_by("feature").agg(pl.col("gain").mean())
        top = gain.with_columns(gain_share=(pl.col("gain") / pl.col("gain").sum()).round(6)).sort("gain", "feature", descending=[True, False])
        write_csv(top.head(TOP_FEATURES).select("feature", "gain_share"), paths.PLOTS / name / "importance.csv")
        rec.read = read
        rec.wrote = [f"models/{name}", f"data/predictions/{name}.parquet", f"metrics/{name}.json", f"reports/models/{name}.json", f"plots/{name}"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
