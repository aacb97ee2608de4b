"""split: folds (split.scheme: walk-forward, rolling or purged k-fold) over the normalized panel's calendar (data/splits/folds.json)."""

import argparse

import polars as pl

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.io import write_json
from alphagraph.runtime.log import stage_run
from alphagraph.evaluation.split import folds_to_json, make_folds
from alphagraph.runtime.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("split") as rec:
        calendar = pl.scan_parquet(paths.NORMALIZED_PANEL).select("date").unique().sort("date").collect()
        folds = make_folds(calendar["date"].to_list(), params.split)
        write_json(folds_to_json(folds, params.split), paths.FOLDS)
        rec.read, rec.wrote = [str(paths.NORMALIZED_PANEL)], [str(paths.FOLDS)]
        rec.extra = {"folds": [{"test": [str(f.test[0]), str(f.test[1])]} for f in folds]}
        if params.split.scheme != "walk_forward":
            rec.extra["scheme"] = params.split.scheme
        if params.split.refit_every is not None:
            rec.extra["refit_every"] = params.split.refit_every


if __name__ == "__main__":
    run_main(main)
