"""End to end: `dvc repro` of the tiny config in a fresh git + DVC repo, and the DVC workflow on it."""

import difflib
import json
import os
import re
import shutil
import time

import polars as pl
import pytest

from alphagraph.experiments.reproduce import compare, load_dir
from tests.conftest import ROOT, run

REFERENCE = ROOT / "tests/reference/tiny"

pytestmark = pytest.mark.slow

STAGES = (
    "ingest", "features", "normalize", "split", "graph", "oracle", "feasible", "pretrain", "model@lgbm", "model@lgbm_graph",
    "model@gat", "model@core", "model@transformer", "model@linear", "model@linear_graph", "model@tgcn", "ensemble", "export", "report",
)
TIMED = [s.removeprefix("model@") for s in STAGES]  # a zoo stage logs under its model's name
MODEL_METRICS = ("features", "normalize", "graph", "oracle", "feasible", "lgbm", "gat", "core", "transformer", "linear",
                 "linear_graph", "tgcn", "ensemble", "ensemble_equal", "summary")


def snapshot(repo) -> dict[str, bytes]:
    """dvc.lock, the visual report and every metrics file except the timings (wall time is never reproducible)."""
    files = {"dvc.lock": (repo / "dvc.lock").read_bytes(), "index.html": (repo / "reports/index.html").read_bytes()}
    files |= {p.name: p.read_bytes() for p in sorted((repo / "metrics").glob("*.json"))}
    return files


def test_repro_runs_and_status_is_clean(tiny_repo):
    metrics = json.loads((tiny_repo / "metrics/ingest.json").read_text())
    assert metrics["stocks"] == 40 and metrics["source"] == "synthetic"
    prices = pl.read_parquet(tiny_repo / "data/raw/prices.parquet")
    assert prices.height == metrics["rows"]
    for name in MODEL_METRICS:
        assert (tiny_repo / f"metrics/{name}.json").exists(), name
    for stage in TIMED:
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
    ``alphagraph.experiments.reproduce`` for the neural models. After a deliberate change
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
    for key in ("rank_ic_1d", "sharpe_net_5d", "turnover_1d", "rank_ic_1d_vs_oracle", "metrics/transformer.json", "ensemble-lgbm"):
        assert key in out, key
    # The data stages' figures and the timings are files, not DVC metrics: shown when asked for.
    assert "n_features" not in out and "peak_rss_mb" not in out
    targets = ["metrics/ingest.json", "metrics/features.json", "metrics/graph.json", "metrics/timings/core.json"]
    out = run(["dvc", "metrics", "show", "--json", *targets], tiny_repo).stdout
    for key in ("stocks", "n_features", "mean_degree", "peak_rss_mb"):
        assert key in out, key


def test_exp_show_carries_the_headline_figures_in_under_210_metric_columns(tiny_repo):
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tiny_repo).stdout)[0]["data"]

    def leaves(tree) -> int:
        return sum(leaves(v) for v in tree.values()) if isinstance(tree, dict) else 1

    columns = {path: leaves(doc["data"]) for path, doc in shown["metrics"].items()}
    # 15 figures per model (9 in the tiny run) and 15 of the summary: the top-k pair took it from 132 to 150;
    # the feasible ceiling adds 21 (its headline, both variants' test and val RankIC 1d, the choice), the two
    # linear references 34 (15 each and their significance against lgbm at 1 and 5 days): 205.
    assert sum(columns.values()) < 210, columns
    assert set(shown["metrics"]["metrics/tgcn.json"]["data"]["test"]) == {
        f"{m}_{h}d" for m in ("ic", "rank_ic", "rank_icir", "sharpe", "sharpe_net", "turnover") for h in (1, 5)
    } | {"rank_ic_1d_vs_oracle", "topk_excess_return_1d", "topk_information_ratio_1d"}
    # Per fold, validation and training detail: a plain file per model, not a DVC metric.
    detail = json.loads((tiny_repo / "reports/models/tgcn.json").read_text())
    assert {"fold0", "fold1", "train", "psi"} <= set(detail) and "reports/models/tgcn.json" not in shown["metrics"]


def test_plots_render_and_follow_the_number_of_folds(tiny_repo, tmp_path):
    from alphagraph.train.outputs import write_training_curves

    def shown() -> dict:
        out = json.loads(run(["dvc", "plots", "show", "--json"], tiny_repo).stdout)
        assert not out.get("errors"), out["errors"]
        return out["data"]

    plots = shown()
    for plot in ("daily_rank_ic_1d", "cumulative_long_short_5d", "core_relation_weights", "plots/core/relation_attention.csv",
                 "plots/transformer/attention_lag.csv", "plots/transformer/importance.csv", "plots/lgbm/importance.csv"):
        assert plot in plots, plot
    for model in ("gat", "core", "transformer"):
        assert sorted(p for p in plots if p.startswith(f"plots/{model}/training/")) == [
            f"plots/{model}/training/fold{k}.csv" for k in range(2)
        ]
    # Four folds' curves (what split.n_splits: 4 writes), then two again: the plots follow the files.
    curve = pl.read_csv(tiny_repo / "plots/gat/training/fold0.csv")
    saved = tmp_path / "training"
    shutil.copytree(tiny_repo / "plots/gat/training", saved)
    try:
        os.chdir(tiny_repo)
        write_training_curves("gat", [(k, curve) for k in range(4)])
        assert [f"plots/gat/training/fold{k}.csv" for k in range(4)] == sorted(p for p in shown() if p.startswith("plots/gat/training/"))
        # The page follows the folds too: four validation curves in the GAT's figure.
        page = four_fold_page(tiny_repo)
        gat = page.split('data-model="gat"')[1].split("</section>")[0]
        assert all(f"fold {k}" in gat for k in range(4))
        write_training_curves("gat", [(k, curve) for k in range(2)])
        assert len([p for p in shown() if p.startswith("plots/gat/training/")]) == 2
    finally:
        os.chdir(ROOT)
        shutil.rmtree(tiny_repo / "plots/gat/training")
        shutil.copytree(saved, tiny_repo / "plots/gat/training")
    run(["dvc", "plots", "show", "-o", "dvc_plots"], tiny_repo)
    assert "attention_lag" in (tiny_repo / "dvc_plots/index.html").read_text()


def four_fold_page(repo) -> str:
    from alphagraph.runtime.config import load_params
    from alphagraph.reporting.report import leaderboard, load_metrics
    from alphagraph.reporting.page import render_report

    params = load_params(repo / "params.yaml")
    board = leaderboard(load_metrics(repo / "metrics", repo / "reports/models")[0], params.features.horizons)
    return render_report(repo, board, params.features.horizons, {"folds": "4"})


def page_models(page: str) -> list[str]:
    return re.findall(r'<section id="model-[^"]+" class="model" data-model="([^"]+)"', page)


def test_the_visual_report_shows_every_model_and_opens_in_a_browser(tiny_repo):
    page = (tiny_repo / "reports/index.html").read_text()
    board = json.loads((tiny_repo / "metrics/summary.json").read_text())
    assert board["best_model_rank_ic_1d"] in page_models(page)
    assert page_models(page) == ["oracle", "feasible", "lgbm", "lgbm_graph", "gat", "core", "ensemble", "ensemble_equal", "linear",
                                "linear_graph", "tgcn", "transformer"]
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # self-contained
    for key in ("fig-ov-topk", "fig-ov-decay", "fig-core-relw", "fig-core-lag"):
        assert key in page, key
    topk = pl.read_csv(tiny_repo / "plots/core/topk.csv")
    assert topk.height > 0 and {"benchmark", "excess_1d", "cum_excess_1d", "turnover_1d"} <= set(topk.columns)
    check = browser_check(tiny_repo / "reports/index.html")
    assert check.ok and check.figures == page.count("<figure"), check.errors


def browser_check(path):
    from alphagraph.reporting.browser_check import BrowserUnavailable, check_page

    try:
        return check_page(path)
    except BrowserUnavailable as exc:
        pytest.skip(f"no headless browser here: {exc}")


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
    # DVC cannot list params per entry of the model foreach: every model stage lists every model's
    # groups, so each reruns (pretrain: the core architecture, train, is its param) ...
    assert ran == {"pretrain", *(s for s in STAGES if s.startswith("model@")), "ensemble", "export", "report"}, out
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], tiny_repo).stdout)
    assert "metrics/core.json" in diff and diff["metrics/core.json"]["test.rank_ic_1d"]["diff"] != 0
    # ... and only the core model's figures move: the others rerun to the same bytes
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
