"""pretrain: self-supervised pretraining of the core model's encoder -> models/pretrain/ (fold{k}.pt, pretrain.json).

With ``pretrain.objective: none`` (the default) it writes only the marker
``models/pretrain/pretrain.json``, reading nothing. Single process: pretraining
is short, ``distributed`` does not apply.
"""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.errors import run_main
from alphagraph.runtime.io import atomic_dir, read_parquet, write_json
from alphagraph.runtime.log import stage_run

INPUTS = [paths.NORMALIZED_PANEL, paths.FOLDS, paths.EDGES]
PRETRAIN_DIR, SUMMARY = paths.MODELS / "pretrain", "pretrain.json"  # as alphagraph.models.core.pretrain's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    cfg = params.pretrain
    with stage_run("pretrain") as rec, atomic_dir(PRETRAIN_DIR) as out:
        rec.wrote = [str(PRETRAIN_DIR)]
        if cfg.objective == "none":
            # The same bytes whatever the other params: the core stage (a dependant) does not rerun.
            write_json({"objective": "none"}, out / SUMMARY)
            return
        # Imported here: the default run (objective none) takes a second, without torch.
        from alphagraph.models.core import core_index, core_kwargs
        from alphagraph.features.normalize import feature_columns
        from alphagraph.models.core.pretrain import pretrain_fold, pretrained_path, save_pretrained
        from alphagraph.evaluation.split import load_folds

        panel, folds = read_parquet(paths.NORMALIZED_PANEL, contiguous=True), load_folds(paths.FOLDS)
        index = core_index(read_parquet(paths.EDGES), panel, params)
        kwargs = core_kwargs(params.train, feature_columns(panel), index.relations, len(params.features.horizons), params.seed)
        histories = {}
        for fold in folds:
            core, history = pretrain_fold(panel, index, fold, params)
            save_pretrained(core, kwargs, cfg.objective, fold.fold, history, pretrained_path(fold.fold, out))
            histories[f"fold{fold.fold}"] = history
        # Per-epoch losses per fold (masked_zero: the MSE of predicting 0; contrastive_chance: InfoNCE at chance).
        write_json({"objective": cfg.objective, "history": histories}, out / SUMMARY)
        rec.read = [str(p) for p in INPUTS]
        last = history[-1] if folds else {}  # the last fold's last epoch
        rec.extra = {k: round(v, 6) for k, v in last.items() if k in ("loss", "masked", "contrastive")}


if __name__ == "__main__":
    run_main(main)
