"""The report stage: leaderboard table, summary.json, Markdown, significance tests, loading (synthetic metrics only)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from alphagraph.reporting.report import (
    MODELS,
    ReportError,
    backtest_note,
    format_seconds,
    leaderboard,
    load_metrics,
    load_rank_ic,
    significance_horizons,
    significance_tests,
    summary,
    to_markdown,
)
from alphagraph.evaluation.significance import newey_west_t

ROOT = Path(__file__).resolve().parents[1]
HORIZONS = [1, 5]


def model_metrics(rank_ic_1d: float, vs_oracle: float | None = None, **extra: float) -> dict:
    """A metrics file as a model stage writes it: pooled ``test`` plus per-fold dicts."""
    test = {
        "rank_ic_1d": rank_ic_1d, "ic_1d": rank_ic_1d + 0.001, "icir_1d": 0.41,
        "rank_icir_1d": 0.4, "sharpe_1d": 5.5, "sharpe_net_1d": 2.2, "max_drawdown_1d": 0.0488,
        "turnover_1d": 1.83, "rank_ic_5d": 0.06, "ic_5d": 0.062, "icir_5d": 0.63, "sharpe_5d": 4.46,
        "sharpe_net_5d": 3.31, "max_drawdown_5d": 0.0836, "turnover_5d": 0.5, "n_rows": 1000,
    }
    if vs_oracle is not None:
        test["rank_ic_1d_vs_oracle"] = vs_oracle
    test |= extra
    return {"fold0": {"rank_ic_1d": 0.5}, "test": test}


@pytest.fixture
def metrics() -> dict[str, dict]:
    # Deliberately out of display order, with the oracle best and "core" absent.
    return {
        "gat": model_metrics(0.038161, vs_oracle=0.3997),
        "oracle": model_metrics(0.095481),
        "lgbm": model_metrics(0.04451, vs_oracle=0.4661),
    }


TIMINGS = {"oracle": {"seconds": 3.21}, "lgbm": {"seconds": 112.4, "cpu_seconds": 200.0}, "gat": {"seconds": 3725.0}}


def test_rows_follow_display_order_and_skip_missing_models(metrics):
    board = leaderboard(metrics | {"zeta": model_metrics(0.01), "alpha": model_metrics(0.02)}, HORIZONS)
    assert board["model"].to_list() == ["oracle", "lgbm", "gat", "alpha", "zeta"]
    assert MODELS[:2] == ("oracle", "feasible")
    expected = ["model"] + [f"{m}_{h}d" for h in HORIZONS for m in ("rank_ic", "ic", "icir", "sharpe", "sharpe_net", "max_drawdown", "turnover")]
    topk = ["topk_excess_return_1d", "topk_information_ratio_1d", "topk_max_drawdown_1d", "topk_turnover_1d"]
    assert board.columns == expected + topk + ["frac_oracle_1d", "frac_feasible_1d", "stage_seconds"]


def test_values_nulls_and_oracle_fraction(metrics):
    del metrics["gat"]["test"]["sharpe_net_5d"]
    metrics["lgbm"]["test"]["turnover_1d"] = "n/a"  # not a number -> null as well
    board = leaderboard(metrics, [1, 5, 20], TIMINGS)  # nobody has 20d metrics
    row = {r["model"]: r for r in board.iter_rows(named=True)}
    assert row["lgbm"]["rank_ic_1d"] == pytest.approx(0.04451)
    assert row["gat"]["sharpe_net_5d"] is None
    assert row["lgbm"]["turnover_1d"] is None
    assert board["rank_ic_20d"].null_count() == board.height
    assert board.schema["rank_ic_20d"] == pl.Float64
    assert row["oracle"]["frac_oracle_1d"] == 1.0
    assert row["gat"]["frac_oracle_1d"] == pytest.approx(0.3997)
    assert row["lgbm"]["stage_seconds"] == pytest.approx(112.4)
    assert leaderboard(metrics, HORIZONS)["stage_seconds"].null_count() == 3


def test_unavailable_oracle_is_skipped(metrics):
    metrics["oracle"] = {"available": False}
    assert leaderboard(metrics, HORIZONS)["model"].to_list() == ["lgbm", "gat"]


def test_summary_holds_only_cross_model_results_and_ignores_timings(metrics):
    metrics["lgbm"]["test"]["rank_ic_1d"] = 0.044512345678
    a = summary(leaderboard(metrics, HORIZONS, TIMINGS))
    b = summary(leaderboard(metrics, HORIZONS, {"lgbm": {"seconds": 1.0}}))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    # Each model's figures are in its own metrics file: the summary adds only the cross-model results.
    assert a == {"best_model_rank_ic_1d": "lgbm"}


def test_best_model_is_never_the_oracle(metrics):
    assert summary(leaderboard(metrics, HORIZONS))["best_model_rank_ic_1d"] == "lgbm"
    metrics["core"] = model_metrics(0.05)
    metrics["gat"]["test"]["rank_ic_1d"] = None
    assert summary(leaderboard(metrics, HORIZONS))["best_model_rank_ic_1d"] == "core"
    only_oracle = summary(leaderboard({"oracle": metrics["oracle"]}, HORIZONS))
    assert only_oracle["best_model_rank_ic_1d"] is None


def test_markdown_table(metrics):
    board = leaderboard(metrics, [1, 5, 10], TIMINGS)
    md = to_markdown(board, [1, 5, 10])
    assert md.endswith("\n") and not md.endswith("\n\n")
    assert md == to_markdown(board, [1, 5, 10])
    main_table = md.split("\n\n")[2].splitlines()
    assert len(main_table) == 2 + board.height  # header, alignment, one row per model
    oracle_row, lgbm_row, gat_row = main_table[2:]
    assert oracle_row.startswith("| oracle") and gat_row.startswith("| gat")
    assert lgbm_row.startswith("| **lgbm**")  # the best model, bold
    cells = [c.strip() for c in lgbm_row.strip("|").split("|")]
    assert cells[1] == "0.0445"  # RankIC 1d
    assert "4.9%" in cells  # max drawdown 1d
    assert cells[-1] == "1m 52s"
    assert cells[-2] == "47%"
    assert oracle_row.split("|")[-2].strip() == "3.2s"
    assert gat_row.split("|")[-2].strip() == "1h 02m"
    assert "## RankIC by horizon" in md  # 10d is not in the main table
    no_time = to_markdown(leaderboard(metrics, [1, 5]), [1, 5])
    assert no_time.splitlines()[6].rstrip().endswith("| — |")
    assert "## RankIC by horizon" not in no_time


def test_markdown_topk_table_only_with_backtest_figures(metrics):
    assert "Top-k dropout" not in to_markdown(leaderboard(metrics, HORIZONS), HORIZONS)
    metrics["lgbm"]["test"] |= {"topk_excess_return_1d": 0.0901, "topk_information_ratio_1d": 1.0164,
                                "topk_max_drawdown_1d": -0.1038, "topk_turnover_1d": 0.18}
    note = backtest_note(50, 5, 0.0005, 0.0015, 5, "equal_weight")
    md = to_markdown(leaderboard(metrics, HORIZONS), HORIZONS, backtest=note)
    section = md.split("## Top-k dropout backtest (1d predictions")[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| Model | Excess return") and len(rows) == 4  # header and three models
    assert "| lgbm | 9.0% | 1.02 | -10.4% | 18.0% |" in rows
    assert "| gat | — | — | — | — |" in rows
    assert "top 50, n_drop 5, open cost 0.05%, close cost 0.15%, minimum cost 5" in section


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "—"), (0.42, "0.4s"), (42.4, "42s"), (59.6, "1m 00s"), (112.4, "1m 52s"), (7260, "2h 01m")]
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_load_metrics(tmp_path, metrics):
    for name, doc in metrics.items():
        write(tmp_path / f"{name}.json", doc)
    write(tmp_path / "extra.json", model_metrics(0.01))
    write(tmp_path / "features.json", {"rows": 10})  # not a model
    write(tmp_path / "summary.json", {"lgbm": {"test": {"rank_ic_1d": 1.0}}, "test": {"rank_ic_1d": 1.0}})
    write(tmp_path / "timings" / "lgbm.json", {"lgbm": {"seconds": 112.4}})
    write(tmp_path / "timings" / "ingest.json", {"ingest": {"seconds": 2.0}})
    loaded, timings = load_metrics(tmp_path)
    assert set(loaded) == {"oracle", "lgbm", "gat", "extra"}
    assert loaded["lgbm"] == metrics["lgbm"]
    # The detail file, when there, is read instead of the headline file.
    write(tmp_path / "detail" / "lgbm.json", metrics["gat"])
    assert load_metrics(tmp_path, tmp_path / "detail")[0]["lgbm"] == metrics["gat"]
    assert timings == {"lgbm": {"seconds": 112.4}, "ingest": {"seconds": 2.0}}


@pytest.mark.parametrize("where", ["gat.json", "timings/gat.json"])
def test_load_metrics_names_a_corrupt_file(tmp_path, metrics, where):
    write(tmp_path / "lgbm.json", metrics["lgbm"])
    (tmp_path / where).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / where).write_text('{"test": {"rank_ic_1d": 0.0')
    with pytest.raises(ReportError, match=str(tmp_path / where)):
        load_metrics(tmp_path)


def load_stage():
    spec = importlib.util.spec_from_file_location("report_stage", ROOT / "stages" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_writes_summary_and_leaderboard(tmp_path, monkeypatch, metrics):
    for name, doc in metrics.items():
        write(tmp_path / "metrics" / f"{name}.json", doc)
    write(tmp_path / "metrics" / "timings" / "lgbm.json", {"lgbm": {"seconds": 112.4}})
    (tmp_path / "params.yaml").write_text("{}\n")  # all defaults: horizons 1, 5, 10, 20
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["report.py", "--params", "params.yaml"])
    stage = load_stage()

    stage.main()
    text = (tmp_path / "metrics" / "summary.json").read_text()
    assert text.endswith("}\n")
    result = json.loads(text)
    assert result["best_model_rank_ic_1d"] == "lgbm"
    md = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "1m 52s" in md and md.endswith("\n") and "0.0445" in md
    assert json.loads((tmp_path / "metrics" / "timings" / "report.json").read_text())["report"]["seconds"] >= 0
    # Atomic writes leave no temporary files behind.
    assert not list(tmp_path.rglob("*.tmp"))

    # A rerun with a different stage time: summary.json byte-identical, and the
    # summary (and the report's own timings) are not read back as models.
    write(tmp_path / "metrics" / "timings" / "lgbm.json", {"lgbm": {"seconds": 5.0}})
    stage.main()
    assert (tmp_path / "metrics" / "summary.json").read_text() == text
    assert "5.0s" in (tmp_path / "reports" / "leaderboard.md").read_text()


def test_stage_fails_without_metrics_and_writes_nothing(tmp_path, monkeypatch):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["report.py"])
    with pytest.raises(FileNotFoundError, match="no model metrics"):
        load_stage().main()
    assert not (tmp_path / "metrics" / "summary.json").exists()
    assert not (tmp_path / "reports").exists()


# ----------------------------------------------------------------- significance

DAYS = 300


def daily_rank_ic(mean_1d: float, seed: int, days: int = DAYS, start: int = 0) -> pl.DataFrame:
    """A ``plots/<model>/rank_ic.csv`` frame: a shared market component plus the model's own noise."""
    common = np.random.default_rng(99).standard_normal(days + start) * 0.1
    own = np.random.default_rng(seed).standard_normal((2, days + start)) * 0.02
    five = common + own[1] + 0.01
    five[-4:] = np.nan  # the last 5d labels are not realized yet
    return pl.DataFrame(
        {
            "date": [f"2021-{1 + d // 28:02d}-{1 + d % 28:02d}" for d in range(days + start)],
            "rank_ic_1d": common + own[0] + mean_1d,
            "rank_ic_5d": five,
        }
    ).with_columns(pl.col("rank_ic_5d").fill_nan(None)).slice(start)  # the evaluator writes nulls, not NaN


@pytest.fixture
def series() -> dict[str, pl.DataFrame]:
    # lgbm clearly beats gat at 1d (same market noise cancels in the difference); core misses 20 days.
    return {"oracle": daily_rank_ic(0.08, 1), "lgbm": daily_rank_ic(0.02, 2), "gat": daily_rank_ic(0.0, 3),
            "core": daily_rank_ic(0.0175, 4, days=DAYS - 20, start=20)}


def test_significance_summary_tests_each_model_against_the_baseline(metrics, series):
    tests = significance_tests(series, [1, 5])
    assert set(tests) == {1, 5} and tests[1].height == 4 * 3
    result = summary(leaderboard(metrics, HORIZONS), tests)
    sig = result["significance"]
    assert set(sig) == {"1d", "5d"}
    # One t per model against lgbm (the baseline); never the oracle; every pair is in the leaderboard.
    assert list(sig["1d"]) == ["gat-lgbm", "core-lgbm"]
    d = series["gat"]["rank_ic_1d"].to_numpy() - series["lgbm"]["rank_ic_1d"].to_numpy()
    mean, _, t, _, _ = newey_west_t(d)
    assert sig["1d"]["gat-lgbm"] == round(t, 3)
    assert sig["1d"]["gat-lgbm"] < -5
    assert abs(sig["1d"]["core-lgbm"]) < 2
    without_lgbm = significance_tests({m: f for m, f in series.items() if m != "lgbm"}, [1])
    assert list(summary(leaderboard(metrics, HORIZONS), without_lgbm)["significance"]["1d"]) == ["core-gat"]
    assert json.dumps(result, allow_nan=False)  # valid JSON for DVC
    assert "significance" not in summary(leaderboard(metrics, HORIZONS))


def test_significance_uses_common_days_and_skips_empty_series(series):
    # An unavailable oracle writes a header-only file; a model without a 5d column sits out at 5d.
    series["oracle"] = series["oracle"].clear()
    series["gat"] = series["gat"].drop("rank_ic_5d")
    tests = significance_tests(series, [1, 5])
    assert set(tests[1]["a"]) == {"lgbm", "gat", "core"}
    assert set(tests[5]["a"]) == {"lgbm", "core"}
    n = {(r["a"], r["b"]): r["n"] for r in tests[1].iter_rows(named=True)}
    assert n[("lgbm", "gat")] == DAYS and n[("core", "lgbm")] == DAYS - 20
    assert tests[5]["n"].to_list() == [DAYS - 24] * 2
    assert tests[5]["lags"].to_list() == [5, 5]  # max(floor(4 (276/100)^(2/9)), 5 - 1)
    assert significance_horizons([1, 5, 10, 20]) == [1, 5]
    assert significance_horizons([10, 20]) == [10]


def test_significance_markdown(metrics, series):
    tests = significance_tests(series, [1, 5])
    md = to_markdown(leaderboard(metrics, HORIZONS), HORIZONS, tests=tests)
    assert md.endswith("\n") and not md.endswith("\n\n")
    section = md[md.index("## Significance"):]
    assert "Newey-West" in section and "|t| > 2" in section and "5%, two-sided" in section
    assert "### RankIC 1d (280-300 common days, 5 lags)" in section
    table = section.split("### RankIC 1d")[1].split("\n\n")[1].splitlines()
    assert table[0] == "| row minus column | oracle | lgbm | gat | core |"
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")[1:]] for r in table[2:]}
    assert rows["lgbm"][1] == "—"  # no model against itself
    lgbm_gat = tests[1].filter(a="lgbm", b="gat").row(0, named=True)
    assert lgbm_gat["t"] > 2
    assert rows["lgbm"][2] == f"**+{lgbm_gat['diff']:.4f} (+{lgbm_gat['t']:.1f})**"  # |t| > 2 is bold
    assert rows["gat"][1] == f"**-{lgbm_gat['diff']:.4f} (-{lgbm_gat['t']:.1f})**"
    models = ["oracle", "lgbm", "gat", "core"]
    for r in tests[1].iter_rows(named=True):
        assert rows[r["a"]][models.index(r["b"])].startswith("**") == (abs(r["t"]) > 2)
    assert any(abs(t) < 2 for t in tests[1]["t"])  # the fixture has both kinds
    assert "### RankIC 5d" in section
    only_one = to_markdown(leaderboard(metrics, HORIZONS), HORIZONS, tests=significance_tests({"lgbm": series["lgbm"]}, [1]))
    assert "RankIC 1d: fewer than two models with a daily series" in only_one
    assert "## Significance" not in to_markdown(leaderboard(metrics, HORIZONS), HORIZONS)


def write_series(plots: Path, name: str, frame: pl.DataFrame) -> None:
    (plots / name).mkdir(parents=True, exist_ok=True)
    frame.write_csv(plots / name / "rank_ic.csv")


def test_load_rank_ic(tmp_path, series):
    write_series(tmp_path, "lgbm", series["lgbm"])
    write_series(tmp_path, "oracle", series["oracle"].clear())  # header only
    loaded = load_rank_ic(tmp_path, ["oracle", "lgbm", "gat"])  # gat has no file
    assert list(loaded) == ["oracle", "lgbm"]
    assert loaded["oracle"].height == 0 and loaded["oracle"].schema["rank_ic_1d"] == pl.Float64
    assert loaded["lgbm"]["rank_ic_5d"].null_count() == 4  # empty CSV cells read as null
    assert loaded["lgbm"]["rank_ic_1d"].to_list() == pytest.approx(series["lgbm"]["rank_ic_1d"].to_list())
    (tmp_path / "gat").mkdir()
    (tmp_path / "gat" / "rank_ic.csv").write_text("date,rank_ic_1d\n2021-01-01,abc\n")
    with pytest.raises(ReportError, match=str(tmp_path / "gat" / "rank_ic.csv")):
        load_rank_ic(tmp_path, ["gat"])


def test_stage_writes_significance(tmp_path, monkeypatch, metrics, series):
    for name, doc in metrics.items():
        write(tmp_path / "metrics" / f"{name}.json", doc)
    for name in ("oracle", "lgbm", "gat"):
        write_series(tmp_path / "plots", name, series[name])
    write_series(tmp_path / "plots", "zeta", series["core"])  # not on the board: never read
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["report.py"])
    stage = load_stage()

    stage.main()
    text = (tmp_path / "metrics" / "summary.json").read_text()
    sig = json.loads(text)["significance"]
    assert set(sig) == {"1d", "5d"}
    assert set(sig["1d"]) == {"gat-lgbm"}
    assert sig["1d"]["gat-lgbm"] < -5
    md = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "## Significance of the differences (Newey-West t)" in md
    assert "| row minus column | oracle | lgbm | gat |" in md
    stage.main()
    assert (tmp_path / "metrics" / "summary.json").read_text() == text  # byte-identical rerun

    # A file source: the oracle is unavailable and its rank_ic.csv is empty.
    write(tmp_path / "metrics" / "oracle.json", {"available": False})
    write_series(tmp_path / "plots", "oracle", series["oracle"].clear())
    stage.main()
    sig = json.loads((tmp_path / "metrics" / "summary.json").read_text())["significance"]
    assert list(sig["1d"]) == ["gat-lgbm"] and list(sig["5d"]) == ["gat-lgbm"]
    md = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "| row minus column | lgbm | gat |" in md


def test_run_facts_name_the_split_and_the_backtest():
    from alphagraph.runtime.config import params_from_dict
    from alphagraph.reporting.report import backtest_description, run_facts
    from alphagraph.evaluation.split import Fold

    d = dt.date
    folds = [Fold(k, (d(2015, 1, 1), d(2016, 1, 1)), (d(2016, 2, 1), d(2016, 6, 1)), (d(2016 + k, 7, 1), d(2016 + k, 12, 1))) for k in range(2)]
    params = params_from_dict({})
    facts = run_facts(params, {"stocks": 200, "first_date": "2015-01-02", "last_date": "2020-12-14"}, folds, "b")
    assert facts["data"] == "synthetic market (market_seed 0), 200 stocks, 2015-01-02 to 2020-12-14"
    assert facts["split"] == "walk forward, 2 folds, test days 2016-07-01 to 2017-12-01 (pooled)"
    fixed = params_from_dict({"split": {"val_start": "2016-01-01", "test_start": "2017-01-01"}})
    assert run_facts(fixed, {}, folds[:1], "b")["split"] == "fixed split, test days 2016-07-01 to 2016-12-01"
    assert backtest_description(params, "inputs/index.csv").endswith("benchmark: the index in inputs/index.csv")
    # Which fills the figures assume is said in the header, for both books.
    assert "fills at the next session's close after each prediction (execution lag 1)" in facts["long-short book"]
    assert "252 days a year, delisted stocks sold at their last close" in backtest_description(params, "equal_weight")
    qlib = params_from_dict({"eval": {"backtest": {"preset": "qlib"}}})
    assert "238 days a year, delisted stocks held as dead positions (Qlib)" in backtest_description(qlib, "equal_weight")
    ideal = params_from_dict({"eval": {"execution_lag": 0}})
    assert "same-close fills (execution lag 0: idealized" in run_facts(ideal, {}, folds, "b")["long-short book"]


# RSR-like: a 30-year file history whose early dates hold a handful of stocks each.
RSR_INGEST = {
    "stocks": 1026, "first_date": "1987-12-11", "last_date": "2017-12-08", "rows": 2_000_000, "dropped_rows": 2_015,
    "dropped.duplicate_key": 1_500, "dropped.null_value": 500, "dropped.non_finite": 0,
    "dropped.universe_unknown_code": 15,  # a universe row, not a price row
}
RSR_FEATURES = {"rows": 2_000_000, "null_share": 0.016502, "n_features": 191}
RSR_NORMALIZE = {"dates": 1_222, "dates_dropped_min_stocks": 6_339, "rows": 400_000, "rows_dropped_min_stocks": 1_600_000}


def test_run_facts_say_what_each_data_stage_kept_and_the_span_modelled():
    from alphagraph.runtime.config import params_from_dict
    from alphagraph.reporting.report import run_facts
    from alphagraph.evaluation.split import Fold

    d = dt.date
    folds = [Fold(k, (d(2013, 1, 2), d(2015, 1, 1)), (d(2015, 2, 1), d(2016, 1, 1)), (d(2016 + k, 1, 4), d(2016 + k, 12, 8)))
             for k in range(2)]
    params = params_from_dict({})
    facts = run_facts(params, RSR_INGEST, folds, "b", features=RSR_FEATURES, normalize=RSR_NORMALIZE,
                      span=(d(2013, 1, 2), d(2017, 12, 8)))
    assert facts["data"].endswith("1026 stocks, 1987-12-11 to 2017-12-08")  # as ingested
    assert facts["data kept"] == (
        "ingest 99.9% of price rows (2,000 of 2,002,000 dropped: duplicate_key 1,500, null_value 500),"
        " features all rows (warm-up windows kept: 1.7% of feature values null),"
        " normalize 16.2% of dates, 20.0% of rows (6,339 of 7,561 dates dropped: fewer than normalize.min_stocks = 20 stocks)"
    )
    assert facts["modelled"] == "2013-01-02 to 2017-12-08 (1,222 dates, normalized panel); folds 2013-01-02 to 2017-12-08"
    assert list(facts)[:4] == ["data", "data kept", "modelled", "split"]

    # The default synthetic run drops nothing (its ingest has no per-reason counts), and says so.
    synthetic = {"stocks": 200, "first_date": "2015-01-02", "last_date": "2020-12-14", "rows": 275_780, "dropped_rows": 0}
    facts = run_facts(params, synthetic, [], "b", features={"rows": 275_780, "null_share": 0.016502},
                      normalize={"dates": 1_500, "dates_dropped_min_stocks": 0, "rows": 275_780, "rows_dropped_min_stocks": 0},
                      span=(d(2015, 1, 2), d(2020, 12, 14)))
    assert facts["data kept"] == (
        "ingest all 275,780 price rows, features all rows (warm-up windows kept: 1.7% of feature values null),"
        " normalize all 1,500 dates"
    )
    assert facts["modelled"] == "2015-01-02 to 2020-12-14 (1,500 dates, normalized panel)"
    # A share is never rounded to 100% while rows were dropped.
    one = run_facts(params, {"rows": 99_999, "dropped_rows": 1}, [], "b")["data kept"]
    assert one == "ingest 99.9% of price rows (1 of 100,000 dropped)"


def test_stage_header_shows_the_data_kept_and_the_modelled_span(tmp_path, monkeypatch, metrics):
    for name, doc in {**metrics, "ingest": RSR_INGEST, "features": RSR_FEATURES, "normalize": RSR_NORMALIZE}.items():
        write(tmp_path / "metrics" / f"{name}.json", doc)
    panel = tmp_path / "data" / "normalized" / "panel.parquet"
    panel.parent.mkdir(parents=True)
    pl.DataFrame({"date": [dt.date(2013, 1, 2), dt.date(2017, 12, 8)], "code": ["A", "B"]}).write_parquet(panel)
    (tmp_path / "params.yaml").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["report.py", "--params", "params.yaml"])
    load_stage().main()
    page = (tmp_path / "reports" / "index.html").read_text()
    assert "<dt>data kept</dt><dd>ingest 99.9% of price rows" in page
    assert "normalize 16.2% of dates, 20.0% of rows (6,339 of 7,561 dates dropped" in page
    assert "<dt>modelled</dt><dd>2013-01-02 to 2017-12-08 (1,222 dates, normalized panel)</dd>" in page
