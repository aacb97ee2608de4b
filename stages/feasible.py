"""feasible: the planted components recomputed from observables (metrics/feasible.json), the feasible ceiling."""

import argparse

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.errors import run_main
from alphagraph.evaluation.feasible import VARIANTS, choose_variant, feasible_alphas, feasible_predictions
from alphagraph.runtime.io import read_parquet, write_csv, write_json, write_parquet
from alphagraph.runtime.log import stage_run
from alphagraph.evaluation.oracle import empty_outputs
from alphagraph.evaluation.split import load_folds
from alphagraph.evaluation.walkforward import evaluate_and_write, headline, label_reach, oracle_rank_ic_1d

OUTS = ["data/predictions/feasible.parquet", "metrics/feasible.json", "reports/models/feasible.json", "plots/feasible"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    horizons = params.features.horizons
    with stage_run("feasible") as rec:
        rec.wrote = OUTS
        if params.data.source != "synthetic":  # no planted components to recompute: no feasible ceiling
            preds, series = empty_outputs(horizons)
            write_parquet(preds, paths.PREDICTIONS / "feasible.parquet")
            for name, frame in series.items():
                write_csv(frame, paths.PLOTS / "feasible" / f"{name}.csv")
            for path in (paths.METRICS / "feasible.json", paths.DETAIL / "feasible.json"):
                write_json({"available": False}, path)
            return
        syn = params.data.synthetic
        rec.read = [str(p) for p in (paths.PRICES, paths.UNIVERSE, paths.RELATIONS, paths.NORMALIZED_PANEL, paths.FOLDS)]
        alphas, strengths = feasible_alphas(
            read_parquet(paths.PRICES), read_parquet(paths.UNIVERSE), read_parquet(paths.RELATIONS),
            syn.signal, syn.supply_nonlinearity, params.features.label_delay, params.feasible,
        )
        panel = read_parquet(paths.NORMALIZED_PANEL)
        folds = load_folds(paths.FOLDS)
        preds = {v: feasible_predictions(alphas, v, panel, folds, horizons, label_reach(params)) for v in VARIANTS}
        h = 1 if 1 in horizons else horizons[0]
        choice, variants = choose_variant(preds, panel.select("date", "code", f"ret_{h}d"), h)
        extra = {"available": True, "choice": choice, "variants": variants}
        metrics = evaluate_and_write("feasible", preds[choice], panel, params, extra=extra, oracle_ic=oracle_rank_ic_1d())
        write_csv(strengths, paths.PLOTS / "feasible" / "strengths.csv")
        # The headline file also carries both variants and the choice (read by `dvc exp show`).
        doc = headline(metrics, horizons)
        doc["choice"] = choice
        doc["test"] |= variants["test"]
        doc["val"] = variants["val"]
        write_json(doc, paths.METRICS / "feasible.json")
        rec.rows = {"predictions": preds[choice].height}
        rec.extra = {"choice": choice, f"rank_ic_{h}d": metrics["test"].get(f"rank_ic_{h}d")} | variants["test"]


if __name__ == "__main__":
    run_main(main)
