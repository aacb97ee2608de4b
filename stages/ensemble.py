"""ensemble: rank averages of ensemble.members -> data/ensemble/{ensemble,ensemble_equal}.parquet (+ weights.csv),
metrics/{ensemble,ensemble_equal}.json, reports/models/{ensemble,ensemble_equal}.json, plots/{ensemble,ensemble_equal}/.

``ensemble``: per fold and horizon, non-negative weights summing to 1 fitted on the
fold's validation rows only; ``ensemble_equal``: equal weights.
"""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.models.ensemble import equal_weight, fit_weights, weighted, weights_frame
from alphagraph.runtime.errors import UserError, run_main
from alphagraph.runtime.io import read_parquet, write_csv
from alphagraph.runtime.log import get_logger, stage_run
from alphagraph.evaluation.walkforward import evaluate_and_write, oracle_rank_ic_1d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    horizons, log = params.features.horizons, get_logger("ensemble")
    with stage_run("ensemble") as rec:
        files = {m: paths.PREDICTIONS / f"{m}.parquet" for m in params.ensemble.members}
        if missing := [str(f) for f in files.values() if not f.exists()]:
            raise UserError(f"ensemble.members: no predictions {', '.join(missing)} (is the model in zoo.models?)")
        members = {m: read_parquet(f) for m, f in files.items()}
        panel = read_parquet(paths.NORMALIZED_PANEL)
        labels = panel.select("date", "code", *(f"ret_{h}d" for h in horizons))
        fit = fit_weights(members, labels, horizons)
        weights = weights_frame(fit)
        for row in weights.filter(weights["horizon"] == horizons[0]).iter_rows(named=True):
            log.info("fold %d %dd: %s weight %.3f (%s)", row["fold"], row["horizon"], row["model"], row["weight"], row["method"])
        oracle_ic, outputs = oracle_rank_ic_1d(), {}
        for name, predictions in (("ensemble", weighted(members, fit["weights"], horizons)), ("ensemble_equal", equal_weight(members, horizons))):
            metrics = evaluate_and_write(
                name, predictions, panel, params, extra={"members": list(members)}, oracle_ic=oracle_ic,
                predictions_path=paths.ENSEMBLE / f"{name}.parquet",
            )
            outputs[name] = metrics["test"].get("rank_ic_1d")
        write_csv(weights, paths.ENSEMBLE / "weights.csv")
        rec.read = [str(f) for f in files.values()] + [str(paths.NORMALIZED_PANEL)]
        rec.wrote = [str(paths.ENSEMBLE), "metrics/ensemble.json", "metrics/ensemble_equal.json", "plots/ensemble", "plots/ensemble_equal"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {f"{k}_rank_ic_1d": v for k, v in outputs.items()}


if __name__ == "__main__":
    run_main(main)
