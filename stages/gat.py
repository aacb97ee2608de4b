"""gat: walk-forward GATv2 baseline -> models/gat/, data/predictions/gat.parquet, metrics/gat.json, plots/gat/."""

import argparse

import polars as pl

from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.io import atomic_dir, read_parquet, write_csv
from alphagraph.log import stage_run
from alphagraph.models.gat import gat_index, train_gat_fold
from alphagraph.split import load_folds
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d
from alphagraph.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("gat") as rec, atomic_dir(paths.MODELS / "gat") as model_dir:
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        index = gat_index(read_parquet(paths.EDGES), panel, params)
        preds, curves, train = [], [], {}
        for fold in folds:
            out = train_gat_fold(panel, index, fold, params, run_dir=model_dir / f"fold{fold.fold}")
            preds.append(out.predictions)
            curve, entries = out.training_record(fold.fold)
            curves.append((fold.fold, curve))
            train |= entries
        predictions = pl.concat(preds)
        metrics = evaluate_and_write("gat", predictions, panel, params, extra={"train": train}, oracle_ic=oracle_rank_ic_1d())
        for k, curve in curves:  # per-epoch training curves, one file per fold (dvc plots: x=epoch)
            write_csv(curve, paths.PLOTS / "gat" / f"training_fold{k}.csv")
        rec.read = [str(paths.NORMALIZED_PANEL), str(paths.FOLDS), str(paths.EDGES)]
        rec.wrote = ["models/gat", "data/predictions/gat.parquet", "metrics/gat.json", "plots/gat"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
