"""normalize: features panel -> per-date robust z-scores and labels (data/normalized/panel.parquet)."""

import argparse

from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.io import read_parquet, write_json, write_parquet
from alphagraph.log import stage_run
from alphagraph.normalize import normalize_panel
from alphagraph.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("normalize") as rec:
        panel = read_parquet(paths.FEATURES_PANEL)
        out, stats = normalize_panel(panel, params.normalize, params.features.horizons)
        write_parquet(out, paths.NORMALIZED_PANEL)
        write_json(stats, paths.METRICS / "normalize.json")
        rec.read, rec.rows, rec.extra = [str(paths.FEATURES_PANEL)], {"panel": out.height}, stats
        rec.wrote = [str(paths.NORMALIZED_PANEL), str(paths.METRICS / "normalize.json")]


if __name__ == "__main__":
    run_main(main)
