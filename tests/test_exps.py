"""The compact experiments table (alphagraph.experiments.exps) on a canned `dvc exp show --json -A`.

tests/fixtures/exp_show.json: a real document (dvc 3.67) trimmed to the workspace, one
commit with four seed experiments (``-S seed=1..4``) and one commit without any;
deps and outs dropped.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import alphagraph
from alphagraph.runtime.errors import UserError
from alphagraph.experiments.exps import HEADLINE, changed_params, experiment_rows, main, metric_cell

FIXTURE = Path(__file__).parent / "fixtures" / "exp_show.json"
EXPERIMENTS = ["sheen-ghat", "oaten-ludo", "fenny-lien", "xeric-ludo"]


@pytest.fixture
def doc() -> list:
    return json.loads(FIXTURE.read_text())


def test_rows_are_the_baseline_then_its_experiments(doc):
    rows, skipped = experiment_rows(doc)
    assert skipped == []
    # The workspace and the commit without experiments are not rows.
    assert [r.name for r in rows] == ["b8102ff", *EXPERIMENTS]
    assert [r.baseline for r in rows] == [True, False, False, False, False]
    assert rows[1].rev == "90ab339"
    assert changed_params(rows) == ["seed"]  # of ~200 params only the seed grid differs
    assert rows[1].metrics["core"]["rank_ic_1d"] == pytest.approx(0.024918)


def test_table_on_the_canned_document(doc, capsys):
    main(["--input", str(FIXTURE)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [ln for ln in lines if ln.startswith("test ")] == [f"test {m}" for m in HEADLINE]
    header = lines[1].split()
    # experiment, rev, the changed param, then every model in leaderboard order
    assert header[:5] == ["experiment", "rev", "seed", "oracle", "feasible"]
    assert {"core", "lgbm", "lgbm_graph", "ensemble", "transformer"} <= set(header)
    sheen = next(ln for ln in lines if ln.startswith("sheen-ghat")).split()
    assert sheen[1:3] == ["90ab339", "4"] and sheen[header.index("core")] == "0.0249"
    assert "workspace" not in out and "4487b21" not in out
    # narrow enough for a terminal: far from dvc's hundreds of columns
    assert max(len(ln) for ln in lines) < 160


def test_markdown_and_selection(capsys):
    main(["--input", str(FIXTURE), "--md", "--metrics", "rank_ic_1d,topk_excess_return_1d", "--models", "core,lgbm"])
    out = capsys.readouterr().out
    assert "### test rank_ic_1d" in out and "### test topk_excess_return_1d" in out
    assert "| experiment | rev | seed | core | lgbm |" in out
    assert "|---|---|---|---:|---:|" in out
    assert "| sheen-ghat | 90ab339 | 4 | 5.6% | -0.4% |" in out  # excess return in percent
    assert "sharpe" not in out


def test_params_filter_and_no_changed_params(capsys):
    main(["--input", str(FIXTURE), "--metrics", "rank_ic_1d", "--params", "train.*"])
    out = capsys.readouterr().out
    assert " seed " not in out.splitlines()[1] and "(no param differs between these runs)" in out


def test_unknown_model_or_metric_is_one_clear_error():
    with pytest.raises(UserError, match=r"--models: no test metrics for nope \(found: oracle, feasible"):
        main(["--input", str(FIXTURE), "--models", "core,nope"])
    with pytest.raises(UserError, match="--metrics: no test metrics for rank_ic_2d"):
        main(["--input", str(FIXTURE), "--metrics", "rank_ic_2d"])


def test_queued_and_failed_experiments_are_skipped(doc, capsys, tmp_path):
    commit = next(c for c in doc if c.get("experiments"))
    queued = copy.deepcopy(commit["experiments"][0])
    queued["name"] = "queued-one"
    queued["executor"] = {"state": "queued", "name": "dvc-task", "local": None}
    queued["revs"][0].update(name="queued-one", data=None)
    commit["experiments"].insert(0, queued)
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(doc))
    main(["--input", str(path), "--metrics", "rank_ic_1d"])
    captured = capsys.readouterr()
    assert "queued-one" not in captured.out and "queued-one" in captured.err


def test_no_experiments_is_one_clear_error(doc, tmp_path):
    for commit in doc:
        commit["experiments"] = None
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="no finished experiments in .*run one first, e.g. dvc exp run -S"):
        main(["--input", str(path)])


def test_outside_a_dvc_repo_fails_with_one_line(tmp_path):
    src = str(Path(alphagraph.__file__).parents[1])  # this checkout's package, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "alphagraph.experiments.exps"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ") and "not inside a DVC repository" in done.stderr


def test_metric_formats():
    assert metric_cell("rank_ic_1d", 0.024918) == "0.0249"
    assert metric_cell("rank_icir_1d", 0.3012) == "0.30"
    assert metric_cell("sharpe_net_1d", -0.97283) == "-0.97"
    assert metric_cell("topk_excess_return_1d", 0.056026) == "5.6%"
    assert metric_cell("sharpe_1d", None) == "—"
