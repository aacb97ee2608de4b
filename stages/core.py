"""core: walk-forward relation-aware graph transformer -> models/core/, data/predictions/core.parquet, metrics/core.json, plots/core/."""

import argparse

import polars as pl

from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.io import atomic_dir, read_parquet, write_csv, write_json
from alphagraph.log import stage_run
from alphagraph.models.core import core_index, core_kwargs, train_core_fold
from alphagraph.normalize import feature_columns
from alphagraph.split import load_folds
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d
from alphagraph.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("core") as rec, atomic_dir(paths.MODELS / "core") as model_dir:
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        index = core_index(read_parquet(paths.EDGES), panel, params)
        features = feature_columns(panel)
        preds, curves, reports, train = [], [], [], {}
        for fold in folds:
            run_dir = model_dir / f"fold{fold.fold}"
            out, _, report = train_core_fold(panel, index, fold, params, run_dir=run_dir)
            # What the export stage needs to rebuild the model from best.pt.
            kwargs = core_kwargs(params.train, features, index.relations, len(params.features.horizons), params.seed)
            write_json({"kwargs": kwargs, "features": features, "horizons": params.features.horizons, "fold": fold.fold}, run_dir / "model.json")
            preds.append(out.predictions)
            reports.append(report)
            curve, entries = out.training_record(fold.fold)
            curves.append((fold.fold, curve))
            train |= entries
        predictions = pl.concat(preds)
        relations = pl.concat(reports)
        # Interpretability: per relation, the weight and neighbour attention averaged over folds and layers.
        summary = relations.group_by("relation", maintain_order=True).agg(pl.col("weight", "attention").mean())
        rel_metrics = {
            f"{row['relation']}.{k}": None if row[k] is None else round(row[k], 6)
            for row in summary.iter_rows(named=True) for k in ("weight", "attention")
        }
        metrics = evaluate_and_write(
            "core", predictions, panel, params, extra={"train": train, "relations": rel_metrics}, oracle_ic=oracle_rank_ic_1d()
        )
        for k, curve in curves:  # per-epoch training curves, one file per fold (dvc plots: x=epoch)
            write_csv(curve, paths.PLOTS / "core" / f"training_fold{k}.csv")
        write_csv(relations.with_columns(pl.col("weight", "attention").round(6)), paths.PLOTS / "core" / "relations.csv")
        rec.read = [str(paths.NORMALIZED_PANEL), str(paths.FOLDS), str(paths.EDGES)]
        rec.wrote = ["models/core", "data/predictions/core.parquet", "metrics/core.json", "plots/core"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
