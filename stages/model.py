"""model: one model of params ``zoo.models`` (name -> module) -> models/{name}/,
data/predictions/{name}.parquet, metrics/{name}.json, reports/models/{name}.json, plots/{name}/.

dvc.yaml runs it once per entry of ``zoo.models`` (``foreach``: model@lgbm, model@core, ...);
by hand: ``python stages/model.py --model core``.
"""

import argparse
import functools
import sys

from alphagraph.evaluation.split import load_folds
from alphagraph.evaluation.walkforward import evaluate_and_write, oracle_rank_ic_1d
from alphagraph.models.zoo import TORCH_MODULES, fold_workers, params_group, read_inputs, stage_inputs, summarize, zoo_module
from alphagraph.runtime import distributed as ddp
from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.errors import UserError, run_main
from alphagraph.runtime.io import atomic_dir, write_csv
from alphagraph.runtime.log import stage_run
from alphagraph.train.outputs import collect_folds, write_training_curves
from alphagraph.train.resume import StageWork, warm_epochs
from alphagraph.train.workers import worker_pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, help="a name in zoo.models")
    args = parser.parse_args()
    params, name = load_params(args.params), args.model
    if name not in params.zoo.models:
        raise UserError(f"--model {name}: not in zoo.models of {args.params} ({', '.join(params.zoo.models) or 'empty'})")
    module_name = params.zoo.models[name]
    if module_name in TORCH_MODULES:
        ddp.relaunch(params.distributed, __file__, sys.argv[1:])
    with ddp.process_group(params.distributed, params.device), stage_run(name, active=ddp.is_main()) as rec:
        # a trained model's params group (LoopParams) carries refit_warm_start; a fitted one's does not
        refit, folds = warm_epochs(params_group(params, module_name)), load_folds(paths.FOLDS)
        module = zoo_module(module_name)
        # Folds train in workers unless a fold warm-starts from the one before or the run is distributed.
        # The workers start here, before this process reads anything, so they are forked (worker_pool).
        workers = fold_workers(name, module_name, params) if refit is None and ddp.world_size() == 1 else None
        with worker_pool(workers, len(folds)) as pool:
            panel, edges = read_inputs(module_name)
            # Built on first use: with fold workers (which build their own) only if the summary asks for it.
            index = functools.cache(lambda: module.zoo_index(name, panel, edges, params))
            inputs = stage_inputs(module, module_name, name, params, folds)
            work = StageWork(name, params, inputs)
            train_one = lambda fold, run_dir: module.train_zoo_fold(name, panel, index(), fold, params, run_dir)  # noqa: E731
            results = work.run_folds(folds, train_one, refit, pool)
        if not ddp.is_main():
            return
        predictions, curves, train = collect_folds([(fold.fold, out) for fold, out, _ in results])
        frames = {key: [f[key] for _, _, f in results if key in f] for key in dict.fromkeys(k for _, _, f in results for k in f)}
        extra, plots = summarize(module, name, index, frames, params)
        with atomic_dir(paths.MODELS / name) as model_dir:
            work.publish(model_dir)
        metrics = evaluate_and_write(name, predictions, panel, params, extra={"train": train} | extra, oracle_ic=oracle_rank_ic_1d())
        write_training_curves(name, [(k, curve) for k, curve in curves if curve.height])
        for key, frame in plots.items():  # attention maps, feature importance, coefficients: one file each over the folds
            write_csv(frame, paths.PLOTS / name / f"{key}.csv")
        work.finish()
        rec.read = [str(p) for p in inputs]
        rec.wrote = [f"models/{name}", f"data/predictions/{name}.parquet", f"metrics/{name}.json", f"reports/models/{name}.json", f"plots/{name}"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
