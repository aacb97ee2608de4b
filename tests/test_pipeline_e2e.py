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
    assert run(["dvc", "status", "-q"], tiny_repo, check=False).returncode == 0
    # A second repro has nothing to do.
    again = run(["dvc", "repro"], tiny_repo)
    assert "Running stage" not in again.stdout


def test_metrics_show_lists_keys(tiny_repo):
    out = run(["dvc", "metrics", "show", "--json"], tiny_repo).stdout
    assert "rows" in out and "stocks" in out
