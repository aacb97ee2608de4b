"""gat: walk-forward GATv2 baseline -> models/gat/, data/predictions/gat.parquet, metrics/gat.json, plots/gat/."""

import argparse
import sys

from alphagraph import distributed as ddp
from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.errors import run_main
from alphagraph.io import atomic_dir, read_parquet
from alphagraph.log import stage_run
from alphagraph.models.gat import gat_index, train_gat_fold
from alphagraph.resume import StageWork, warm_epochs
from alphagraph.split import load_folds
from alphagraph.train.fold import collect_folds, write_training_curves
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d

INPUTS = [paths.NORMALIZED_PANEL, paths.FOLDS, paths.EDGES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    ddp.relaunch(params.distributed, __file__, sys.argv[1:])
    with ddp.process_group(params.distributed, params.device), stage_run("gat", active=ddp.is_main()) as rec:
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        index = gat_index(read_parquet(paths.EDGES), panel, params)
        work = StageWork("gat", params, INPUTS)
        results = work.run_folds(
            folds, lambda fold, run_dir: (train_gat_fold(panel, index, fold, params, run_dir=run_dir), {}), warm_epochs(params.gat)
        )
        if not ddp.is_main():
            return
        predictions, curves, train = collect_folds([(fold.fold, out) for fold, out, _ in results])
        with atomic_dir(paths.MODELS / "gat") as model_dir:
            work.publish(model_dir)
        metrics = evaluate_and_write("gat", predictions, panel, params, extra={"train": train}, oracle_ic=oracle_rank_ic_1d())
        write_training_curves("gat", curves)
        work.finish()
        rec.read = [str(p) for p in INPUTS]
        rec.wrote = ["models/gat", "data/predictions/gat.parquet", "metrics/gat.json", "reports/models/gat.json", "plots/gat"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
