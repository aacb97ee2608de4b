"""features: raw prices -> features + forward-return targets (data/features/panel.parquet).

Computed in bounded memory, a block of stocks at a time, and written incrementally
(:func:`alphagraph.features.stream.build_panel_file`).
"""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.errors import run_main
from alphagraph.features.compute import PRICE_COLUMNS
from alphagraph.features.stream import build_panel_file
from alphagraph.runtime.io import read_parquet, write_json
from alphagraph.runtime.log import stage_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("features") as rec:
        prices = read_parquet(paths.PRICES, columns=["date", "code", *PRICE_COLUMNS])
        universe = read_parquet(paths.UNIVERSE)
        metrics = build_panel_file(prices, universe, params.features, paths.FEATURES_PANEL)
        write_json(metrics, paths.METRICS / "features.json")
        rec.read = [str(paths.PRICES), str(paths.UNIVERSE)]
        rec.wrote = [str(paths.FEATURES_PANEL), str(paths.METRICS / "features.json")]
        rec.rows, rec.extra = {"panel": metrics["rows"]}, {"n_features": metrics["n_features"]}


if __name__ == "__main__":
    run_main(main)
