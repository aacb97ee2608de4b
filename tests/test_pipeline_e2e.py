"""End to end: `dvc repro` of the tiny config in a fresh git + DVC repo."""

import json

import polars as pl
import pytest

from tests.conftest import run

pytestmark = pytest.mark.slow


def test_repro_runs_and_status_is_clean(tiny_repo):
    metrics = json.loads((tiny_repo / "metrics/ingest.json").read_text())
    assert metrics["stocks"] == 40 and metrics["source"] == "synthetic"
    prices = pl.read_parquet(tiny_repo / "data/raw/prices.parquet")
    assert prices.height == metrics["rows"]
    for name in ("features", "normalize", "graph", "oracle", "lgbm", "gat"):
        assert (tiny_repo / f"metrics/{name}.json").exists(), name
    assert (tiny_repo / "data/splits/folds.json").exists()
    assert run(["dvc", "status", "-q"], tiny_repo, check=False).returncode == 0
    # A second repro has nothing to do.
    again = run(["dvc", "repro"], tiny_repo)
    assert "Running stage" not in again.stdout


def test_metrics_show_lists_keys(tiny_repo):
    out = run(["dvc", "metrics", "show", "--json"], tiny_repo).stdout
    for key in ("stocks", "n_features", "mean_degree", "rank_ic_1d", "sharpe_net_5d", "rank_ic_1d_vs_oracle"):
        assert key in out, key


def test_plots_render(tiny_repo):
    run(["dvc", "plots", "show", "-o", "dvc_plots"], tiny_repo)
    html = (tiny_repo / "dvc_plots/index.html").read_text()
    assert "rank_ic_1d" in html and "cum_return_5d" in html
