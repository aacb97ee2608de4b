"""oracle: the planted expected return judged by the evaluator (metrics/oracle.json), the ceiling."""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.io import read_parquet, write_csv, write_json, write_parquet
from alphagraph.runtime.log import stage_run
from alphagraph.evaluation.oracle import empty_outputs, oracle_predictions
from alphagraph.evaluation.split import load_folds
from alphagraph.evaluation.walkforward import evaluate_and_write, label_reach
from alphagraph.runtime.errors import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    with stage_run("oracle") as rec:
        oracle = read_parquet(paths.ORACLE)
        rec.read = [str(paths.ORACLE), str(paths.NORMALIZED_PANEL), str(paths.FOLDS)]
        if oracle.is_empty():  # a file source has no planted truth: no ceiling
            preds, series = empty_outputs(params.features.horizons)
            write_parquet(preds, paths.PREDICTIONS / "oracle.parquet")
            for name, frame in series.items():
                write_csv(frame, paths.PLOTS / "oracle" / f"{name}.csv")
            for path in (paths.METRICS / "oracle.json", paths.DETAIL / "oracle.json"):
                write_json({"available": False}, path)
            rec.wrote = ["data/predictions/oracle.parquet", "metrics/oracle.json", "reports/models/oracle.json", "plots/oracle"]
            return
        panel = read_parquet(paths.NORMALIZED_PANEL)
        preds = oracle_predictions(
            oracle, panel, load_folds(paths.FOLDS), params.features.horizons, label_reach(params), params.features.label_delay
        )
        metrics = evaluate_and_write("oracle", preds, panel, params, extra={"available": True})
        rec.rows, rec.extra = {"predictions": preds.height}, {"rank_ic_1d": metrics["test"].get("rank_ic_1d")}
        rec.wrote = ["data/predictions/oracle.parquet", "metrics/oracle.json", "reports/models/oracle.json", "plots/oracle"]


if __name__ == "__main__":
    run_main(main)
