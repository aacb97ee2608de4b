"""End to end: `dvc repro` of the tiny config in a fresh git + DVC repo, and the DVC workflow on it."""

import difflib
import json
import os
import shutil
import time

import polars as pl
import pytest

from alphagraph.reproduce import compare, load_dir
from tests.conftest import ROOT, run

REFERENCE = ROOT / "tests/reference/tiny"

pytestmark = pytest.mark.slow

STAGES = ("ingest", "features", "normalize", "split", "graph", "oracle", "lgbm", "lgbm_graph", "gat", "core", "export", "report")
MODEL_METRICS = ("features", "normalize", "graph", "oracle", "lgbm", "gat", "core", "summary")


def snapshot(repo) -> dict[str, bytes]:
    """dvc.lock and every metrics file except the timings (wall time is never reproducible)."""
    files = {"dvc.lock": (repo / "dvc.lock").read_bytes()}
    files |= {p.name: p.read_bytes() for p in sorted((repo / "metrics").glob("*.json"))}
    return files


def test_repro_runs_and_status_is_clean(tiny_repo):
    metrics = json.loads((tiny_repo / "metrics/ingest.json").read_text())
    assert metrics["stocks"] == 40 and metrics["source"] == "synthetic"
    prices = pl.read_parquet(tiny_repo / "data/raw/prices.parquet")
    assert prices.height == metrics["rows"]
    for name in MODEL_METRICS:
        assert (tiny_repo / f"metrics/{name}.json").exists(), name
    for stage in STAGES:
        timing = json.loads((tiny_repo / f"metrics/timings/{stage}.json").read_text())[stage]
        assert timing["seconds"] > 0 and timing["peak_rss_mb"] > 0, stage
    assert (tiny_repo / "data/splits/folds.json").exists()
    export = pl.read_parquet(tiny_repo / "data/export/rl_features.parquet")
    assert export.height == pl.read_parquet(tiny_repo / "data/normalized/panel.parquet").height
    assert "| core |" in (tiny_repo / "reports/leaderboard.md").read_text()
    assert run(["dvc", "status", "-q"], tiny_repo, check=False).returncode == 0
    # A second repro has nothing to do.
    again = run(["dvc", "repro"], tiny_repo)
    assert "Running stage" not in again.stdout


def test_tiny_run_reproduces_the_committed_reference(tiny_repo):
    """CI's reproduction check: the tiny config from scratch against committed metrics.

    Exact for the data stages, the oracle and LightGBM; within the tolerances of
    ``alphagraph.reproduce`` for the neural models. After a deliberate change
    that moves the figures: ALPHAGRAPH_UPDATE_REFERENCE=1 pytest tests/test_pipeline_e2e.py -k reference
    """
    if os.environ.get("ALPHAGRAPH_UPDATE_REFERENCE"):
        REFERENCE.mkdir(parents=True, exist_ok=True)
        for path in (tiny_repo / "metrics").glob("*.json"):
            shutil.copy2(path, REFERENCE / path.name)
    moved = compare(load_dir(REFERENCE), load_dir(tiny_repo / "metrics"))
    assert not moved, "the tiny run moved away from tests/reference/tiny:\n" + "\n".join(moved)


def test_a_colleague_pulls_the_run_from_a_dvc_remote(tiny_repo, tmp_path):
    """A local-folder remote stands in for S3/GCS/SSH: push the run, clone, pull, nothing is stale."""
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], tiny_repo)
    run(["dvc", "push", "-q"], tiny_repo)
    run(["git", "add", "-A"], tiny_repo)
    run(["git", "commit", "-qm", "the run, with its remote"], tiny_repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(tiny_repo), str(clone)], tmp_path)
    run(["dvc", "pull", "-q"], clone)
    assert run(["dvc", "status", "-q"], clone, check=False).returncode == 0
    for out in ("data/raw/prices.parquet", "data/predictions/core.parquet", "models/core/fold0/best.pt"):
        assert (clone / out).read_bytes() == (tiny_repo / out).read_bytes(), out
    again = run(["dvc", "repro"], clone)
    assert "Running stage" not in again.stdout


def test_metrics_show_lists_keys(tiny_repo):
    out = run(["dvc", "metrics", "show", "--json"], tiny_repo).stdout
    for key in ("stocks", "n_features", "mean_degree", "rank_ic_1d", "sharpe_net_5d", "rank_ic_1d_vs_oracle", "peak_rss_mb"):
        assert key in out, key


def test_plots_render(tiny_repo):
    run(["dvc", "plots", "show", "-o", "dvc_plots"], tiny_repo)
    html = (tiny_repo / "dvc_plots/index.html").read_text()
    for plot in ("rank_ic_1d", "cum_return_5d", "gat_training", "core_training", "core_relation_weights"):
        assert plot in html, plot


def test_forced_repro_is_byte_identical_and_an_experiment_changes_only_what_it_should(tiny_repo):
    before = snapshot(tiny_repo)
    run(["dvc", "repro", "-f", "-q"], tiny_repo)
    after = snapshot(tiny_repo)
    assert after.keys() == before.keys()
    changed = [k for k in before if before[k] != after[k]]
    diff = difflib.unified_diff(before["dvc.lock"].decode().splitlines(), after["dvc.lock"].decode().splitlines(), lineterm="", n=8)
    assert changed == [], "\n".join(diff)

    run(["git", "add", "-A"], tiny_repo)
    run(["git", "commit", "-qm", "baseline run", "--allow-empty"], tiny_repo)
    out = run(["dvc", "exp", "run", "-S", "train.lr=5e-4"], tiny_repo).stdout
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    assert ran == {"core", "export", "report"}, out
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], tiny_repo).stdout)
    assert "metrics/core.json" in diff and diff["metrics/core.json"]["test.rank_ic_1d"]["diff"] != 0
    assert "metrics/gat.json" not in diff and "metrics/lgbm.json" not in diff
    params = json.loads(run(["dvc", "params", "diff", "--json"], tiny_repo).stdout)
    assert params["params.yaml"]["train.lr"]["new"] == 0.0005
    shown = run(["dvc", "exp", "show", "--json"], tiny_repo).stdout
    assert "0.0005" in shown


def test_queued_grid_runs(tiny_repo):
    run(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.001,0.002"], tiny_repo)
    assert run(["dvc", "queue", "status"], tiny_repo).stdout.count("Queued") == 2
    run(["dvc", "queue", "start"], tiny_repo, capture=False)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], tiny_repo).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    shown = run(["dvc", "exp", "show", "--json"], tiny_repo).stdout
    assert "0.001" in shown and "0.002" in shown
