"""report: leaderboard of the model metrics, pairwise RankIC tests, where each model wins and the
visual report -> metrics/summary.json, reports/leaderboard.md, reports/index.html, plots/report/."""

import argparse
from pathlib import Path

import polars as pl

from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.errors import run_main
from alphagraph.runtime.io import read_json, read_parquet, write_csv, write_json, write_text
from alphagraph.runtime.log import get_logger, stage_run
from alphagraph.reporting.report import (
    RANK_IC_FILE,
    backtest_description,
    leaderboard,
    load_metrics,
    load_rank_ic,
    run_facts,
    significance_horizons,
    significance_tests,
    summary,
    to_markdown,
)
from alphagraph.reporting.page import render_report
from alphagraph.evaluation.split import load_folds
from alphagraph.evaluation.wins import regime_rank_ic, sector_rank_ic, stock_win_share, volatility_regimes

# Not a DVC out: it shows stage wall times, which would make dvc.lock differ on
# every rerun. It is committed to git instead.
LEADERBOARD = Path("reports/leaderboard.md")
PAGE = Path("reports/index.html")  # a DVC out: no wall times on it, so it is the same bytes for the same run
SUMMARY = paths.METRICS / "summary.json"
WINS = paths.PLOTS / "report"
WINS_FILES = {"sector": "sector_rank_ic", "regime": "regime_rank_ic", "stocks": "stock_win_share"}


def where_models_win(models: list[str], horizon: int) -> dict[str, pl.DataFrame]:
    """Test RankIC per sector and per volatility regime, and stock win shares, of the models with predictions."""
    files = {m: f for m in models for f in (paths.PREDICTIONS / f"{m}.parquet", paths.ENSEMBLE / f"{m}.parquet") if f.exists()}
    if len(files) < 1 or not paths.NORMALIZED_PANEL.exists():
        return {}
    predictions = {m: read_parquet(f, columns=["date", "code", "fold", "split", f"pred_{horizon}d"]) for m, f in files.items()}
    labels = read_parquet(paths.NORMALIZED_PANEL, columns=["date", "code", f"ret_{horizon}d"])
    sectors = read_parquet(paths.UNIVERSE, columns=["code", "sector", "start", "end"])
    regimes = volatility_regimes(read_parquet(paths.PRICES, columns=["date", "code", "close"]))
    return {
        "sector": sector_rank_ic(predictions, labels, sectors, horizon),
        "regime": regime_rank_ic(predictions, labels, regimes, horizon),
        "stocks": stock_win_share(predictions, labels, horizon),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    horizons = params.features.horizons
    log = get_logger("report")
    with stage_run("report") as rec:
        metrics, timings = load_metrics(paths.METRICS, paths.DETAIL)
        board = leaderboard(metrics, horizons, timings)
        if board.is_empty():
            raise FileNotFoundError(f"{paths.METRICS}: no model metrics found (did the model stages run?)")
        models = board["model"].to_list()
        # Daily test RankIC of the models on the board (an unavailable oracle is not on it).
        series = load_rank_ic(paths.PLOTS, models)
        if missing := [m for m in models if m not in series]:
            log.warning("no %s for %s: left out of the significance tests", RANK_IC_FILE, ", ".join(missing))
        tests = significance_tests(series, significance_horizons(horizons))
        wins = where_models_win(models, horizons[0])
        for name, frame in wins.items():
            write_csv(frame, WINS / f"{WINS_FILES[name]}.csv")
        result = summary(board, tests)
        write_json(result, SUMMARY)
        LEADERBOARD.parent.mkdir(parents=True, exist_ok=True)
        ingest = read_json(paths.METRICS / "ingest.json") if (paths.METRICS / "ingest.json").exists() else {}
        folds = load_folds(paths.FOLDS) if paths.FOLDS.exists() else []
        note = backtest_description(params, ingest.get("benchmark", "equal_weight"))
        markdown = to_markdown(board, horizons, tests=tests, wins=wins or None, backtest=note, execution_lag=params.eval.execution_lag)
        write_text(markdown, LEADERBOARD)
        # What the data stages kept and the span the models saw: a stage that drops most dates
        # must not leave the header showing the ingested span alone.
        stage_metrics = {s: read_json(paths.METRICS / f"{s}.json") if (paths.METRICS / f"{s}.json").exists() else {}
                         for s in ("features", "normalize")}
        span = (
            pl.scan_parquet(paths.NORMALIZED_PANEL).select(pl.col("date").min(), pl.col("date").max().alias("last")).collect().row(0)
            if paths.NORMALIZED_PANEL.exists() else None
        )
        facts = run_facts(params, ingest, folds, note, span=span, **stage_metrics)
        page = render_report(Path("."), board, horizons, facts, psi_alert=params.eval.psi_alert)
        write_text(page, PAGE)
        log.info("wrote %s, %s and %s (%.1f MB): %s; best %s", SUMMARY, LEADERBOARD, PAGE, len(page) / 1e6,
                 ", ".join(models), result["best_model_rank_ic_1d"])
        rec.read = (
            [str(paths.DETAIL / f"{m}.json") for m in models]
            + [str(paths.PLOTS / m / RANK_IC_FILE) for m in series]
            + [str(paths.METRICS / "timings")]
        )
        rec.wrote = [str(SUMMARY), str(LEADERBOARD), str(PAGE), str(WINS)]
        rec.rows = {"models": board.height, "pairs_tested": sum(len(t) for t in tests.values()) // 2}
        rec.extra = {"best_model_rank_ic_1d": result["best_model_rank_ic_1d"]}


if __name__ == "__main__":
    run_main(main)
