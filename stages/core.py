"""core: walk-forward relation-aware graph transformer -> models/core/, data/predictions/core.parquet, metrics/core.json, plots/core/."""

import argparse
import sys
from pathlib import Path

import polars as pl

from alphagraph import distributed as ddp
from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.errors import run_main
from alphagraph.io import atomic_dir, read_parquet, write_csv, write_json
from alphagraph.log import stage_run
from alphagraph.importance import fold_maps, stack_folds
from alphagraph.models.core import core_fold_data, core_index, core_kwargs, train_core_fold, wide_index
from alphagraph.normalize import feature_columns
from alphagraph.pretrain import pretrain_inputs
from alphagraph.resume import StageWork, warm_epochs
from alphagraph.split import load_folds
from alphagraph.train.fold import collect_folds, write_training_curves
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d

INPUTS = [paths.NORMALIZED_PANEL, paths.FOLDS, paths.EDGES]
MAPS = ("importance", "attention_lag", "relation_attention", "stock_attention")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    ddp.relaunch(params.distributed, __file__, sys.argv[1:])
    with ddp.process_group(params.distributed, params.device), stage_run("core", active=ddp.is_main()) as rec:
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        index = core_index(read_parquet(paths.EDGES), panel, params)
        features = feature_columns(panel)
        wide = wide_index(panel, params)  # the linear path's relational inputs, built once for every fold

        def train_one(fold, run_dir: Path):
            out, model, report = train_core_fold(panel, index, fold, params, run_dir=run_dir, wide=wide)
            if not ddp.is_main():
                return out, {"relations": report}
            # what the export stage needs to rebuild the model from best.pt
            wide_dim = 0 if model.wide is None else model.wide.in_features - len(features)
            kwargs = core_kwargs(params.train, features, index.relations, len(params.features.horizons), params.seed, wide_dim)
            write_json({"kwargs": kwargs, "features": features, "horizons": params.features.horizons, "fold": fold.fold}, run_dir / "model.json")
            maps = fold_maps(model, core_fold_data(panel, index, fold, params, wide=wide), fold.fold, params.seed, next(model.parameters()).device)
            return out, {"relations": report} | maps

        # The raw files the training targets / weights read, only when those switches are on.
        inputs = INPUTS + [paths.UNIVERSE] * (params.train.target == "sector_neutral") + [paths.PRICES] * params.train.regime_weighting
        inputs += pretrain_inputs(params, folds)  # a changed pretraining restarts the resume folder
        work = StageWork("core", params, inputs)
        results = work.run_folds(folds, train_one, warm_epochs(params.train))
        if not ddp.is_main():
            return
        predictions, curves, train = collect_folds([(fold.fold, out) for fold, out, _ in results])
        relations = pl.concat([frames["relations"] for _, _, frames in results])
        # Interpretability: per relation, the weight and neighbour attention averaged over folds and layers.
        summary = relations.group_by("relation", maintain_order=True).agg(pl.col("weight", "attention").mean())
        rel_metrics = {
            f"{row['relation']}.{k}": None if row[k] is None else round(row[k], 6)
            for row in summary.iter_rows(named=True) for k in ("weight", "attention")
        }
        with atomic_dir(paths.MODELS / "core") as model_dir:
            work.publish(model_dir)
        metrics = evaluate_and_write(
            "core", predictions, panel, params, extra={"train": train, "relations": rel_metrics}, oracle_ic=oracle_rank_ic_1d()
        )
        write_training_curves("core", curves)
        write_csv(relations.with_columns(pl.col("weight", "attention").round(6)), paths.PLOTS / "core" / "relations.csv")
        for key in MAPS:  # attention maps and feature importance, the folds stacked
            if parts := [frames[key] for _, _, frames in results if key in frames]:
                write_csv(stack_folds(key, parts), paths.PLOTS / "core" / f"{key}.csv")
        work.finish()
        rec.read = [str(p) for p in inputs]
        rec.wrote = ["models/core", "data/predictions/core.parquet", "metrics/core.json", "reports/models/core.json", "plots/core"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
