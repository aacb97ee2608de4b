"""report: leaderboard of the model metrics and pairwise RankIC tests -> metrics/summary.json, reports/leaderboard.md."""

import argparse
from pathlib import Path

from alphagraph import paths
from alphagraph.config import load_params
from alphagraph.io import write_json, write_text
from alphagraph.log import get_logger, stage_run
from alphagraph.report import (
    RANK_IC_FILE,
    leaderboard,
    load_metrics,
    load_rank_ic,
    significance_horizons,
    significance_tests,
    summary,
    to_markdown,
)
from alphagraph.errors import run_main

# Not a DVC out: it shows stage wall times, which would make dvc.lock differ on
# every rerun. It is committed to git instead.
LEADERBOARD = Path("reports/leaderboard.md")
SUMMARY = paths.METRICS / "summary.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    params = load_params(parser.parse_args().params)
    horizons = params.features.horizons
    log = get_logger("report")
    with stage_run("report") as rec:
        metrics, timings = load_metrics(paths.METRICS)
        board = leaderboard(metrics, horizons, timings)
        if board.is_empty():
            raise FileNotFoundError(f"{paths.METRICS}: no model metrics found (did the model stages run?)")
        models = board["model"].to_list()
        # Daily test RankIC of the models on the board (an unavailable oracle is not on it).
        series = load_rank_ic(paths.PLOTS, models)
        if missing := [m for m in models if m not in series]:
            log.warning("no %s for %s: left out of the significance tests", RANK_IC_FILE, ", ".join(missing))
        tests = significance_tests(series, significance_horizons(horizons))
        result = summary(board, tests)
        write_json(result, SUMMARY)
        LEADERBOARD.parent.mkdir(parents=True, exist_ok=True)
        write_text(to_markdown(board, horizons, tests=tests), LEADERBOARD)
        log.info("wrote %s and %s: %s; best %s", SUMMARY, LEADERBOARD, ", ".join(models), result["best_model_rank_ic_1d"])
        rec.read = (
            [str(paths.METRICS / f"{m}.json") for m in models]
            + [str(paths.PLOTS / m / RANK_IC_FILE) for m in series]
            + [str(paths.METRICS / "timings")]
        )
        rec.wrote = [str(SUMMARY), str(LEADERBOARD)]
        rec.rows = {"models": board.height, "pairs_tested": sum(len(t) for t in tests.values()) // 2}
        rec.extra = {"best_model_rank_ic_1d": result["best_model_rank_ic_1d"]}


if __name__ == "__main__":
    run_main(main)
