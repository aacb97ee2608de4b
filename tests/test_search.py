"""Hyperparameter search (alphagraph.experiments.search): parallel workers on shared storage, DVC experiments,
validation-only objectives (the test window is never read), search-file errors."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import polars as pl
import pytest
import yaml

from alphagraph.runtime import paths
from alphagraph.runtime.config import params_from_dict
from alphagraph.runtime.errors import UserError, run_main
from alphagraph.experiments.search import Inputs, Search, labels_before, load_search, main, search_folds
from alphagraph.evaluation.split import Fold, load_folds
from tests.conftest import deep_merge, run
from tests.test_train_loop import TINY_TRAIN

# Two folds whose test windows (20 days) are no longer than the embargo: fold 1's validation
# window ends the day before fold 0's test window, so holdout: first_test searches both folds.
PARAMS: dict[str, Any] = deep_merge(TINY_TRAIN, {
    "data": {"synthetic": {"n_stocks": 40, "n_days": 330}},
    "split": {"n_splits": 2, "min_train_days": 150, "val_days": 40, "test_days": 20, "embargo_days": 20},
    "train": {"hidden": 16, "heads": 2, "layers": 1, "seq_len": 4, "epochs": 2, "days_per_epoch": 24, "batch_days": 8,
              "patience": 0, "num_threads": 1, "pearl": {"samples": 2, "k": 2, "layers": 1, "dim": 4}},
    "lgbm": {"min_data_in_leaf": 50, "n_estimators": 20, "num_threads": 1},
})

SEARCH: dict[str, Any] = {
    "study": "tiny", "model": "core", "objective": "rank_ic_1d", "trials": 4,
    "sampler": {"type": "tpe", "seed": 0}, "pruner": {"type": "median", "startup_trials": 1},
    "space": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
              "train.dropout": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1}},
}


def build_workspace(root: Path) -> None:
    """The split and graph stages' artifacts of the tiny config, built in process, and its params.yaml."""
    from alphagraph.data.ingest import ingest
    from alphagraph.features.panel import build_panel
    from alphagraph.graph.build import build_edges
    from alphagraph.runtime.io import write_json, write_parquet
    from alphagraph.features.normalize import normalize_panel
    from alphagraph.evaluation.split import folds_to_json, make_folds

    params = params_from_dict(PARAMS)
    raw = ingest(params)
    features, _ = build_panel(raw.prices, raw.universe, params.features)
    panel, _ = normalize_panel(features, params.normalize, params.features.horizons)
    folds = make_folds(panel["date"].unique().sort().to_list(), params.split)
    edges, _ = build_edges(raw.prices, raw.universe, raw.relations, params.graph)
    write_parquet(panel, root / paths.NORMALIZED_PANEL)
    write_parquet(edges, root / paths.EDGES)
    write_json(folds_to_json(folds, params.split), root / paths.FOLDS)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("search")
    build_workspace(root)
    return root


def write_search(root: Path, name: str, **changes: Any) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(SEARCH | changes, sort_keys=False))
    return path


def study_trials(storage: str, study: str) -> list[optuna.trial.FrozenTrial]:
    from alphagraph.experiments.search import make_storage

    return optuna.load_study(study_name=study, storage=make_storage(storage)).get_trials()


def test_two_workers_on_shared_storage_finish_the_study_as_dvc_experiments(workspace, tmp_path):
    """2 worker processes, one SQLite study, 4 trials in total, each saved as a DVC experiment."""
    repo = tmp_path / "repo"
    shutil.copytree(workspace, repo)
    (repo / ".gitignore").write_text("/data/\n/searches/*\n!/searches/dvclive/\n")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "init"], repo)
    search = write_search(repo, "search")
    run(["git", "add", "search.yaml"], repo)
    run(["git", "commit", "-qm", "search"], repo)
    done = run([sys.executable, "-m", "alphagraph.experiments.search", "run", "search.yaml", "--workers", "2"], repo)
    assert search.exists()

    trials = study_trials("sqlite:///" + str(repo / "searches/tiny.db"), "tiny")
    states = [t.state for t in trials]
    assert len(trials) == 4 and all(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)
    assert sum(s == optuna.trial.TrialState.COMPLETE for s in states) >= 1
    for t in trials:  # every trial trained both folds or was pruned on the way
        assert (repo / f"searches/tiny/trial-{t.number}/result.json").exists()
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert set(t.user_attrs["folds"]) == {"0", "1"}
            assert t.value == pytest.approx(np.mean(list(t.user_attrs["folds"].values())))
    # One experiment per trial, saved one at a time: 4 refs, the workspace left as it was.
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
    names = sorted(r.rsplit("/", 1)[-1] for r in refs if "/exec/" not in r)
    assert names == [f"tiny-t{t.number}" for t in sorted(trials, key=lambda t: str(t.number))]
    assert run(["git", "status", "--porcelain"], repo).stdout.strip() == "?? searches/"
    exp = refs[0] if "/exec/" not in refs[0] else refs[1]
    shown = run(["git", "show", f"{exp}:searches/dvclive/params.yaml"], repo).stdout
    logged = yaml.safe_load(shown)
    assert set(logged["train"]) == {"lr", "dropout"} and logged["search"]["study"] == "tiny"
    best = run([sys.executable, "-m", "alphagraph.experiments.search", "best", "--study", "tiny"], repo).stdout
    command = best.splitlines()[-1].strip()
    assert command.startswith("dvc exp run -n tiny-best -S train.dropout=") and " -S train.lr=" in command
    assert command in done.stdout  # the run's own summary


def poison(root: Path, start: dt.date) -> None:
    """Every feature and label of the panel rows from ``start`` on replaced by noise (x1000 for
    floats), and the graph's snapshots from ``start`` on with reversed, 100 times larger weights."""
    file = root / paths.NORMALIZED_PANEL
    panel = pl.read_parquet(file)
    rng = np.random.default_rng(1)
    cols = []
    for c in panel.columns:
        if c in ("date", "code"):
            continue
        dtype = panel.schema[c]
        noise = rng.normal(0, 1e3, panel.height) if dtype.is_float() else rng.integers(0, 2, panel.height)
        cols.append(pl.when(pl.col("date") >= start).then(pl.Series(noise).cast(dtype)).otherwise(pl.col(c)).alias(c))
    panel.with_columns(cols).write_parquet(file)
    edges = pl.read_parquet(root / paths.EDGES)
    later_edges = pl.col("snapshot") >= start
    edges.with_columns(weight=pl.when(later_edges).then(-pl.col("weight") * 100).otherwise(pl.col("weight"))).write_parquet(root / paths.EDGES)


def run_study(root: Path, name: str, monkeypatch, **changes: Any) -> dict[int, tuple[Any, dict[str, float]]]:
    monkeypatch.chdir(root)
    write_search(root, name, **changes)
    main(["run", f"{name}.yaml", "--study", name, "--storage", f"journal:searches/{name}.log", "--no-dvc-exp"])
    return {t.number: (t.value, t.user_attrs.get("folds")) for t in study_trials(f"journal:searches/{name}.log", name)}


def test_the_search_never_reads_the_test_window(workspace, tmp_path, monkeypatch):
    """Poisoning every row from the first test day on changes no trial (1 worker, seeded sampler);
    the same poison from a validation day on (the control) changes every trial."""
    clean, dirty, control = tmp_path / "clean", tmp_path / "dirty", tmp_path / "control"
    for root in (clean, dirty, control):
        shutil.copytree(workspace, root)
    folds = load_folds(workspace / paths.FOLDS)
    poison(dirty, min(f.test[0] for f in folds))
    poison(control, folds[-1].val[0])
    # Every frame a trial trains on ends before the first test day (the rows after are never loaded).
    last: list[dt.date] = []
    panel, edges = Inputs.panel, Inputs.edges
    monkeypatch.setattr(Inputs, "panel", lambda self, cutoff: record(panel(self, cutoff), "date", last))
    monkeypatch.setattr(Inputs, "edges", lambda self, cutoff: record(edges(self, cutoff), "snapshot", last))
    kw = {"trials": 2, "model": "lgbm", "pruner": "none", "space": {"lgbm.num_leaves": {"type": "int", "low": 4, "high": 16}}}
    before, after = run_study(clean, "s", monkeypatch, **kw), run_study(dirty, "s", monkeypatch, **kw)
    assert len(before) == 2 and all(set(folds) == {"0", "1"} for _, folds in before.values())
    assert before == after
    poisoned = run_study(control, "s", monkeypatch, **kw)
    assert all(poisoned[k][1][f] != before[k][1][f] for k in before for f in ("0", "1"))
    core = run_study(clean, "core", monkeypatch, trials=1)
    assert core == run_study(dirty, "core", monkeypatch, trials=1)
    assert last and max(last) < min(f.test[0] for f in folds)


def record(frame: pl.DataFrame | None, column: str, last: list[dt.date]) -> pl.DataFrame | None:
    if frame is not None:
        last.append(frame[column].max())
    return frame


def test_labels_that_reach_the_cutoff_are_nulled():
    """A trades up to the cutoff: the rows whose longest label window (ret_2d, 3 rows with the
    delay) reaches it lose every label. B stopped trading earlier: each label is nulled on its own."""
    dates = [dt.date(2024, 1, d) for d in range(1, 8)]
    frame = pl.DataFrame({
        "date": dates + dates[:5], "code": ["A"] * 7 + ["B"] * 5, "f_x": np.arange(12.0),
        "y_1d": np.arange(12.0), "ret_2d": np.arange(12.0),
    })
    out = labels_before(frame, dt.date(2024, 1, 8), label_delay=1)
    a, b = out.filter(pl.col("code") == "A"), out.filter(pl.col("code") == "B")
    assert a["y_1d"].to_list() == [0, 1, 2, 3, None, None, None] and a["ret_2d"].null_count() == 3
    assert b["y_1d"].to_list() == [7, 8, 9, None, None] and b["ret_2d"].to_list() == [7, 8, None, None, None]
    assert out["f_x"].to_list() == frame["f_x"].to_list()


def search_of(tmp_path: Path, **changes: Any) -> Search:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(SEARCH | changes, sort_keys=False))
    return load_search(path, PARAMS)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"space": {"train.lrr": {"type": "float", "low": 0.1, "high": 1.0}}}, "space.train.lrr: unknown param"),
        ({"space": {"graph.top_k": {"type": "int", "low": 2, "high": 8}}}, "dvc exp run --queue -S 'graph.top_k=A,B,C'"),
        ({"space": {"gat.lr": {"type": "float", "low": 0.1, "high": 1.0}}}, "model core does not read gat.*"),
        ({"space": {"train.temporal": {"type": "categorical", "choices": ["lstm", "gru"]}}}, "value 'gru' is not valid"),
        ({"space": {"train.lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}}, "log: true needs low > 0"),
        ({"model": "xgboost"}, "model 'xgboost' is not core, gat, lgbm"),
        ({"objective": "rank_ic_3d"}, "horizon 3 is not in features.horizons"),
        ({"holdout": "none"}, "holdout: first_test"),
    ],
)
def test_a_bad_search_file_names_the_problem(tmp_path, changes, message):
    with pytest.raises(UserError) as info:
        search_of(tmp_path, **changes)
    assert message in str(info.value)


def test_the_cli_reports_a_user_error_in_one_line(workspace, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**SEARCH, "space": {"split.val_days": {"type": "int", "low": 20, "high": 60}}}))
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: main(["run", str(path), "--no-dvc-exp"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "split is read by an upstream stage" in err and len(err.splitlines()) == 1


def test_first_test_holdout_keeps_only_folds_validated_before_the_first_test_day(tmp_path):
    d = dt.date.fromordinal
    folds = [Fold(0, (d(1), d(100)), (d(121), d(160)), (d(181), d(200))), Fold(1, (d(1), d(140)), (d(161), d(200)), (d(221), d(240)))]
    search = search_of(tmp_path)
    assert [(f.fold, c) for f, c in search_folds(search, folds)] == [(0, d(181))]
    per_fold = search_of(tmp_path, holdout="fold")
    assert [(f.fold, c) for f, c in search_folds(per_fold, folds)] == [(0, d(181)), (1, d(221))]
    with pytest.raises(UserError, match="fold 1's validation window ends"):
        search_folds(search_of(tmp_path, folds=[0, 1]), folds)
