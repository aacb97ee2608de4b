"""features: raw prices -> features + forward-return targets (data/features/panel.parquet)."""

import argparse

from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.features.panel import build_panel
from alphagraph.io import read_parquet, write_json, write_parquet
from alphagraph.log import stage_run
from alphagraph.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("features") as rec:
        prices, universe = read_parquet(paths.PRICES), read_parquet(paths.UNIVERSE)
        panel, metrics = build_panel(prices, universe, params.features)
        write_parquet(panel, paths.FEATURES_PANEL)
        write_json(metrics, paths.METRICS / "features.json")
        rec.read = [str(paths.PRICES), str(paths.UNIVERSE)]
        rec.wrote = [str(paths.FEATURES_PANEL), str(paths.METRICS / "features.json")]
        rec.rows, rec.extra = {"panel": panel.height}, {"n_features": metrics["n_features"]}


if __name__ == "__main__":
    run_main(main)
