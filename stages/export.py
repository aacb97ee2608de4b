"""export: the frozen core model over every date + the walk-forward predictions -> data/export/rl_features.parquet + schema.json."""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.rl.export import choose_fold, export_features, load_core, schema
from alphagraph.runtime.io import atomic_dir, read_parquet, write_json, write_parquet
from alphagraph.runtime.log import get_logger, stage_run
from alphagraph.models.core import core_index
from alphagraph.evaluation.split import load_folds
from alphagraph.train.loop import resolve_device
from alphagraph.runtime.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    log = get_logger("export")
    predictions = paths.PREDICTIONS / "core.parquet"
    with stage_run("export") as rec, atomic_dir(paths.EXPORT) as out_dir:
        fold = choose_fold(load_folds(paths.FOLDS), params.export.fold)
        fold_dir = paths.MODELS / "core" / f"fold{fold.fold}"
        model, meta = load_core(fold_dir, resolve_device(params.device))  # weights_only: refuses a checkpoint that would run code
        panel = read_parquet(paths.NORMALIZED_PANEL, contiguous=True)
        index = core_index(read_parquet(paths.EDGES), panel, params)
        if index.relations != meta["kwargs"]["relations"]:
            raise ValueError(f"{fold_dir}/model.json: trained on relations {meta['kwargs']['relations']}, the graph has {index.relations}")
        log.info("exporting fold %d's checkpoint over %d dates (in-sample before %s)", fold.fold, index.dates.size, fold.test[0])
        frame = export_features(
            model, panel, read_parquet(paths.PRICES), index, fold, params, meta["features"], params.export.batch_days,
            oos=read_parquet(predictions),
        )
        write_parquet(frame, out_dir / "rl_features.parquet")
        write_json(schema(frame, params, fold, fold_dir / "best.pt"), out_dir / "schema.json")
        rec.read = [str(paths.NORMALIZED_PANEL), str(paths.EDGES), str(paths.PRICES), str(paths.FOLDS), str(predictions), str(fold_dir)]
        rec.wrote = [str(paths.EXPORT / "rl_features.parquet"), str(paths.EXPORT / "schema.json")]
        rec.rows = {"rows": frame.height, "columns": frame.width, "out_of_sample_rows": int((~frame["in_sample"]).sum())}


if __name__ == "__main__":
    run_main(main)
