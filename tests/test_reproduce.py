"""The reference comparison: exact for data stages and LightGBM, within tolerance for neural models."""

import copy
import json
from pathlib import Path

import pytest

from alphagraph.experiments.reproduce import compare, flatten, load_dir, main, tolerance

REFERENCE = {
    "ingest": {"rows": 100, "first_date": "2015-01-02"},
    "lgbm": {"test": {"rank_ic_1d": 0.0445, "sharpe_1d": 6.0}},
    "core": {"test": {"rank_ic_1d": 0.0582, "sharpe_1d": 8.7}, "train": {"best_epoch_fold0": 4}},
}


def test_identical_runs_reproduce():
    assert compare(REFERENCE, copy.deepcopy(REFERENCE)) == []


def test_exact_metrics_must_not_move_at_all():
    run = copy.deepcopy(REFERENCE)
    run["lgbm"]["test"]["rank_ic_1d"] = 0.0445001
    (line,) = compare(REFERENCE, run)
    assert line.startswith("metrics/lgbm.json test.rank_ic_1d: reference 0.0445, run 0.0445001") and "must be identical" in line


def test_neural_metrics_move_within_their_tolerance_only():
    run = copy.deepcopy(REFERENCE)
    run["core"]["test"]["rank_ic_1d"] += 0.01
    run["core"]["train"]["best_epoch_fold0"] = 6  # a tie can move the best epoch: not compared
    assert compare(REFERENCE, run) == []
    run["core"]["test"]["rank_ic_1d"] = 0.0582 + 2 * tolerance("core", "test.rank_ic_1d")
    (line,) = compare(REFERENCE, run)
    assert "metrics/core.json test.rank_ic_1d" in line and "tolerance" in line


def test_best_model_may_flip_between_models_tied_within_tolerance():
    ref = copy.deepcopy(REFERENCE) | {"summary": {"best_model_rank_ic_1d": "core"}}
    run = copy.deepcopy(ref)
    run["summary"]["best_model_rank_ic_1d"] = "lgbm"
    run["lgbm"]["test"]["rank_ic_1d"] = 0.0582 + 1e-5  # the run's best by 1e-5 over core, which did not move
    moved = lambda: [line.split(":")[0] for line in compare(ref, run)]  # noqa: E731
    assert moved() == ["metrics/lgbm.json test.rank_ic_1d"]  # the exact file is reported for itself, the pick is a tie
    run["core"]["test"]["rank_ic_1d"] = 0.0582 - 2 * tolerance("core", "test.rank_ic_1d")  # not a tie: core fell
    assert "metrics/summary.json best_model_rank_ic_1d" in moved()


def test_missing_and_new_keys_are_reported():
    run = copy.deepcopy(REFERENCE)
    del run["core"]["test"]["sharpe_1d"]
    run["ingest"]["stocks"] = 5
    lines = compare(REFERENCE, run)
    assert any("test.sharpe_1d: missing in the run" in l for l in lines)
    assert any("ingest.json stocks: not in the reference" in l for l in lines)
    assert "metrics/core.json: missing in the run" in compare(REFERENCE, {k: v for k, v in run.items() if k != "core"})


def test_flatten_uses_dvc_keys():
    assert flatten({"test": {"ic_1d": 1, "x": {"y": 2}}, "rows": 3}) == {"test.ic_1d": 1, "test.x.y": 2, "rows": 3}


def test_command_exits_non_zero_with_a_readable_diff(tmp_path, capsys):
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    for stem, doc in REFERENCE.items():
        (ref / f"{stem}.json").write_text(json.dumps(doc))
        (run / f"{stem}.json").write_text(json.dumps(doc))
    assert main(["--reference", str(ref), "--metrics", str(run)]) == 0
    edited = copy.deepcopy(REFERENCE["lgbm"])
    edited["test"]["sharpe_1d"] = 6.5  # a reference value edited by hand
    (ref / "lgbm.json").write_text(json.dumps(edited))
    assert main(["--reference", str(ref), "--metrics", str(run)]) == 1
    out = capsys.readouterr().out
    assert "metrics/lgbm.json test.sharpe_1d: reference 6.5, run 6.0, diff -0.5 (must be identical)" in out


@pytest.mark.parametrize(
    ("stem", "key", "expected"),
    [("graph", "edges_total", 0.0), ("core", "train.best_epoch_fold0", None), ("tgcn", "test.rank_ic_1d", 0.02),
     ("summary", "significance.1d.core-lgbm", 1.0), ("ensemble", "test.sharpe_1d", 1.0),
     ("core", "test.topk_information_ratio_1d", 1.0), ("gat", "test.topk_excess_return_1d", 0.05),
     ("core", "test.rank_ic_1d_vs_oracle", 0.25), ("core", "test.rank_icir_5d", 0.15)],
)
def test_tolerance_lookup(stem, key, expected):
    assert tolerance(stem, key) == expected


@pytest.mark.parametrize("folder", ["metrics", "tests/reference/tiny"])
def test_every_committed_headline_metric_has_a_derived_tolerance(folder):
    root = Path(__file__).resolve().parents[1]
    for stem, doc in load_dir(root / folder).items():
        for key in flatten(doc):
            tolerance(stem, key)  # raises for a metric without a rule
    run = copy.deepcopy(REFERENCE)
    run["core"]["test"]["new_figure_1d"] = 1.0
    (line,) = compare(REFERENCE, run)
    assert "test.new_figure_1d: no reproduce tolerance rule" in line
