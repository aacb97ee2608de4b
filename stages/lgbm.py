"""lgbm: walk-forward LightGBM baseline -> models/lgbm/, data/predictions/lgbm.parquet, metrics/lgbm.json.

``--model lgbm_graph``: the same model on the panel plus the relational ``f_rel_*``
features (alphagraph.relational, params ``lgbm_graph``) -> models/lgbm_graph/,
data/predictions/lgbm_graph.parquet, metrics/lgbm_graph.json, plots/lgbm_graph/.
"""

import argparse
import logging

import polars as pl

from alphagraph import paths
from alphagraph.config import Params, load_params
from alphagraph.io import atomic_dir, read_parquet
from alphagraph.log import get_logger, stage_run
from alphagraph.models.lgbm import save_boosters, train_fold
from alphagraph.split import load_folds
from alphagraph.walkforward import evaluate_and_write, oracle_rank_ic_1d, split_for
from alphagraph.errors import run_main

MODELS = ("lgbm", "lgbm_graph")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", choices=MODELS, default="lgbm")
    args = parser.parse_args()
    params, name = load_params(args.params), args.model
    log = get_logger(name)
    with stage_run(name) as rec, atomic_dir(paths.MODELS / name) as model_dir:
        panel, folds = read_parquet(paths.NORMALIZED_PANEL), load_folds(paths.FOLDS)
        read, extra = [str(paths.NORMALIZED_PANEL), str(paths.FOLDS)], {}
        if name == "lgbm_graph":
            panel, extra = with_relational(panel, params, log)
            read += [str(paths.EDGES), str(paths.PRICES)]
        preds, importance, best = [], [], {}
        for fold in folds:
            result = train_fold(split_for(panel, fold, params), fold.fold, params.features.horizons, params.lgbm, params.seed)
            save_boosters(result, fold.fold, model_dir)
            preds.append(result.predictions)
            importance.append(result.importance)
            best |= {f"best_iteration_fold{fold.fold}_{h}d": it for h, it in result.best_iteration.items()}
            log.info("fold %d: best iterations %s", fold.fold, result.best_iteration)
        importance = pl.concat(importance)
        importance.write_csv(model_dir / "importance.csv")
        if name == "lgbm_graph":
            log_relational_gain(importance, log)
        predictions = pl.concat(preds)
        metrics = evaluate_and_write(name, predictions, panel, params, extra={"train": best} | extra, oracle_ic=oracle_rank_ic_1d())
        rec.read = read
        rec.wrote = [f"models/{name}", f"data/predictions/{name}.parquet", f"metrics/{name}.json", f"plots/{name}"]
        rec.rows = {"predictions": predictions.height}
        rec.extra = {k: metrics["test"].get(k) for k in ("rank_ic_1d", "rank_ic_5d", "sharpe_1d")}


def with_relational(panel: pl.DataFrame, params: Params, log: logging.Logger) -> tuple[pl.DataFrame, dict]:
    """The panel plus the ``f_rel_*`` columns, and the metrics entry that records them."""
    from alphagraph.relational import add_relational_features, column_names, spec_from_params

    spec = spec_from_params(params)
    edges = read_parquet(paths.EDGES)
    prices = read_parquet(paths.PRICES, columns=["date", "code", "close"])
    absent = sorted(set(spec.relations) - set(edges["relation"].unique().to_list()))
    if absent:  # skipped by the graph stage (no side data): their columns are empty, not an error
        log.warning("no edges of %s in %s: their relational features are empty", ", ".join(absent), paths.EDGES)
    panel, cover = add_relational_features(panel, prices, edges, spec, params.normalize.clip)
    n = len(column_names(spec))
    log.info(
        "%d relational features (%d relations x %d), neighbour features %s",
        n, len(spec.relations), n // max(len(spec.relations), 1), spec.neighbour_features,
    )
    for rel, c in cover.items():
        log.info(
            "%s: rows with in-neighbours %.1f%%, with a neighbour's 1-day return %.1f%%, mean in-degree %.2f",
            rel, 100 * c["rows_with_neighbours"], 100 * c["rows_with_neighbour_return"], c["mean_degree"],
        )
    return panel, {"relational": {"features": n, "coverage": cover}}


def log_relational_gain(importance: pl.DataFrame, log: logging.Logger) -> None:
    """Share of the total gain that went to relational features, per horizon, and the top ones at 1 day."""
    rel = pl.col("feature").str.starts_with("f_rel_")
    share = importance.group_by("horizon").agg((pl.col("gain").filter(rel).sum() / pl.col("gain").sum()).alias("share"))
    for h, s in share.sort("horizon").iter_rows():
        log.info("horizon %dd: relational features take %.1f%% of the gain", h, 100 * (s or 0.0))
    first = importance["horizon"].min()
    top = (
        importance.filter(rel & (pl.col("horizon") == first))
        .group_by("feature").agg(pl.col("gain").sum())
        .sort("gain", descending=True).head(5)
    )
    log.info("top relational features at %dd: %s", first, ", ".join(top["feature"].to_list()))


if __name__ == "__main__":
    run_main(main)
