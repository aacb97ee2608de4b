"""model: one model of the zoo (params ``zoo.models``: name -> module) -> models/{name}/,
data/predictions/{name}.parquet, metrics/{name}.json, reports/models/{name}.json, plots/{name}/.

dvc.yaml runs it once per entry of ``zoo.models`` (``foreach``); by hand:
``python stages/model.py --model transformer``.
"""

import argparse
import sys

from alphagraph import distributed as ddp
from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.errors import UserError, run_main
from alphagraph.importance import stack_folds
from alphagraph.io import atomic_dir, read_parquet, write_csv
from alphagraph.log import stage_run
from alphagraph.models.zoo import GRAPH_MODULES, PRICE_MODULES, zoo_module
from alphagraph.resume import StageWork, warm_epochs
from alphagraph.split import load_folds
from alphagraph.train.fold import collect_folds, write_training_curves
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", required=True, help="a name in zoo.models")
    args = parser.parse_args()
    params, name = load_params(args.params), args.model
    if name not in params.zoo.models:
        raise UserError(f"--model {name}: not in zoo.models of {args.params} ({', '.join(params.zoo.models) or 'empty'})")
    module_name = params.zoo.models[name]
    ddp.relaunch(params.distributed, __file__, sys.argv[1:])
    with ddp.process_group(params.distributed, params.device), stage_run(name, active=ddp.is_main()) as rec:
        module = zoo_module(module_name)
        inputs = [paths.NORMALIZED_PANEL, paths.FOLDS] + ([paths.EDGES] if module_name in GRAPH_MODULES else [])
        inputs += [paths.PRICES] if module_name in PRICE_MODULES else []  # read by the module's zoo_index
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        edges = read_parquet(paths.EDGES) if paths.EDGES in inputs else None
        index = module.zoo_index(name, panel, edges, params)
        work = StageWork(name, params, inputs)
        train_one = lambda fold, run_dir: module.train_zoo_fold(name, panel, index, fold, params, run_dir)  # noqa: E731
        # the module's params group (LoopParams) carries refit_warm_start; a closed-form model's does not
        results = work.run_folds(folds, train_one, warm_epochs(getattr(params, module_name, None)))
        if not ddp.is_main():
            return
        predictions, curves, train = collect_folds([(fold.fold, out) for fold, out, _ in results])
        with atomic_dir(paths.MODELS / name) as model_dir:
            work.publish(model_dir)
        metrics = evaluate_and_write(name, predictions, panel, params, extra={"train": train}, oracle_ic=oracle_rank_ic_1d())
        write_training_curves(name, curves)
        # Attention maps and feature importance: one file each over the folds.
        for key in sorted({key for _, _, frames in results for key in frames}):
            write_csv(stack_folds(key, [frames[key] for _, _, frames in results if key in frames]), paths.PLOTS / name / f"{key}.csv")
        work.finish()
        rec.read = [str(p) for p in inputs]
        rec.wrote = [f"models/{name}", f"data/predictions/{name}.parquet", f"metrics/{name}.json", f"reports/models/{name}.json", f"plots/{name}"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


if __name__ == "__main__":
    run_main(main)
