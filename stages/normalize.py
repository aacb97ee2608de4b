"""normalize: features panel -> per-date robust z-scores and labels (data/normalized/panel.parquet).

Computed in bounded memory, a block of dates at a time, and written incrementally
(:func:`alphagraph.features.normalize.normalize_file`).
"""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.errors import run_main
from alphagraph.runtime.io import write_json
from alphagraph.runtime.log import stage_run
from alphagraph.features.normalize import normalize_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("normalize") as rec:
        if not paths.FEATURES_PANEL.exists():
            raise FileNotFoundError(f"{paths.FEATURES_PANEL}: artifact not found (did the upstream stage run?)")
        stats = normalize_file(paths.FEATURES_PANEL, paths.NORMALIZED_PANEL, params.normalize, params.features.horizons)
        write_json(stats, paths.METRICS / "normalize.json")
        rec.read, rec.rows, rec.extra = [str(paths.FEATURES_PANEL)], {"panel": stats["rows"]}, stats
        rec.wrote = [str(paths.NORMALIZED_PANEL), str(paths.METRICS / "normalize.json")]


if __name__ == "__main__":
    run_main(main)
