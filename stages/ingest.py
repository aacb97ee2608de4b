"""ingest: synthetic market or user files -> data/raw/*.parquet, metrics/ingest.json."""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.data.ingest import ingest, ingest_metrics, write_raw
from alphagraph.runtime.log import stage_run
from alphagraph.runtime.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    params = load_params(args.params)
    with stage_run("ingest") as rec:
        raw = ingest(params)
        rec.read = [params.data.source if params.data.source == "synthetic" else params.data.path]
        rec.rows = {"prices": raw.prices.height, "relations": raw.relations.height}
        rec.wrote = write_raw(raw, ingest_metrics(raw, params.data.source), paths.METRICS / "ingest.json")


if __name__ == "__main__":
    run_main(main)
