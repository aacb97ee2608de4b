"""Seed spread of dvc experiments (alphagraph.experiments.seeds): grouping, mean/std, paired differences, dvc JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from alphagraph.runtime.errors import UserError
from alphagraph.experiments.seeds import (
    HEADLINE,
    SeedWarning,
    aggregate,
    group_experiments,
    main,
    name_prefix,
    paired,
    parse_exp_show,
)



def params(seed: int, mode: str = "rpearl", device: str = "auto", threads: int = 2) -> dict:
    return {
        "seed": seed, "device": device,
        "lgbm.num_threads": threads, "graph.blas_threads": 1,
        "train.pearl.mode": mode, "train.fanouts": [15, 10],
    }


def run(name: str, seed: int, core: float, lgbm: float, **kw) -> dict:
    """An experiment as :func:`parse_exp_show` returns it; ``core``/``lgbm`` set every headline metric."""
    return {
        "name": name, "rev": f"rev-{name}", "baseline": "base",
        "params": params(seed, **kw),
        "metrics": {"lgbm": {m: lgbm for m in HEADLINE}, "core": {m: core for m in HEADLINE}},
    }


CORE_DEFAULT, LGBM_DEFAULT = [0.050, 0.056, 0.062], [0.044, 0.047, 0.041]
CORE_NOPEARL = [0.060, 0.058, 0.064]


@pytest.fixture
def experiments() -> list[dict]:
    # Two configurations x three seeds, interleaved; the speed knobs differ within a configuration.
    out = []
    for seed in range(3):
        out.append(run(f"default-{seed + 1}", seed, CORE_DEFAULT[seed], LGBM_DEFAULT[seed], threads=seed + 1))
        out.append(run(f"nopearl-s{seed}", seed, CORE_NOPEARL[seed], LGBM_DEFAULT[seed], mode="none", device="cpu"))
    return out


def test_groups_by_params_without_seed_and_speed_knobs(experiments):
    rows = aggregate(experiments)
    assert [r["group"] for r in rows] == ["default", "nopearl"]  # labelled by the shared name prefix
    default, nopearl = rows
    assert default["seeds"] == [0, 1, 2] and default["members"] == ["default-1", "default-2", "default-3"]
    assert default["params"] == {"train.pearl.mode": "rpearl"}  # what tells the groups apart
    assert list(default["metrics"]) == ["lgbm", "core"]  # leaderboard order
    stats = default["metrics"]["core"]["rank_ic_1d"]
    assert stats["n"] == 3
    assert stats["mean"] == pytest.approx(np.mean(CORE_DEFAULT))
    assert stats["std"] == pytest.approx(np.std(CORE_DEFAULT, ddof=1))
    assert nopearl["metrics"]["core"]["sharpe_net_1d"]["mean"] == pytest.approx(np.mean(CORE_NOPEARL))
    assert set(default["metrics"]["core"]) == set(HEADLINE)


def test_labels_fall_back_to_params_and_name_grouping(experiments):
    for e in experiments:
        e["name"] = f"x{e['params']['seed']}{e['params']['train.pearl.mode']}"  # no shared prefix
    rows = aggregate(experiments)
    assert [r["group"] for r in rows] == ['train.pearl.mode="rpearl"', 'train.pearl.mode="none"']
    # By name, the suffixes -<k> and -s<k> are dropped; here every name is its own group.
    names = [run("a-1", 0, 0.1, 0.1), run("a-2", 1, 0.2, 0.1, mode="none"), run("a-s7", 7, 0.3, 0.1), run("b", 0, 0.4, 0.1)]
    groups = group_experiments(names, by="name")
    assert [(g["group"], len(g["members"])) for g in groups] == [("a", 3), ("b", 1)]
    assert [name_prefix(n) for n in ("core-nopearl-12", "core-s3", "core-3b", "lgbm")] == ["core-nopearl", "core", "core-3b", "lgbm"]


def test_missing_values_and_models_count_per_model(experiments):
    experiments[0]["metrics"]["core"]["rank_ic_1d"] = None  # a null metric is not a zero
    experiments[2]["metrics"]["lgbm_graph"] = {"rank_ic_1d": 0.05}  # a model only one run has
    with pytest.warns(SeedWarning, match="one seed only"):
        aggregate([experiments[1]])
    default = aggregate(experiments)[0]
    assert default["metrics"]["core"]["rank_ic_1d"] == pytest.approx(
        {"mean": np.mean(CORE_DEFAULT[1:]), "std": np.std(CORE_DEFAULT[1:], ddof=1), "n": 2}
    )
    graph = default["metrics"]["lgbm_graph"]
    assert graph["rank_ic_1d"] == {"mean": 0.05, "std": None, "n": 1}
    assert graph["sharpe_1d"] == {"mean": None, "std": None, "n": 0}
    assert list(default["metrics"]) == ["lgbm", "lgbm_graph", "core"]


def test_errors_and_warnings(experiments):
    with pytest.raises(UserError, match="no finished experiments"):
        aggregate([])
    with pytest.warns(SeedWarning, match="one seed only") as caught:
        rows = aggregate(experiments[:1])
    assert rows[0]["metrics"]["core"]["rank_ic_1d"]["std"] is None and len(caught) == 1
    again = run("default-again", 0, 0.9, 0.9)  # seed 0 of the same configuration a second time
    with pytest.warns(SeedWarning, match="seed 0 already"):
        rows = aggregate([*experiments, again])
    assert rows[0]["members"] == ["default-1", "default-2", "default-3"]
    with pytest.raises(UserError, match="--by"):
        aggregate(experiments, by="seed")


def test_paired_difference_over_seeds(experiments):
    out = paired(experiments, "core", "lgbm")
    assert [c["group"] for c in out] == ["default", "nopearl"]
    diffs = np.subtract(CORE_DEFAULT, LGBM_DEFAULT)
    assert out[0]["metrics"]["rank_ic_1d"] == pytest.approx({"mean": diffs.mean(), "std": diffs.std(ddof=1), "n": 3})
    with pytest.raises(UserError, match="both gat and lgbm"):
        paired(experiments, "gat", "lgbm")


def exp_show_json(experiments: list[dict]) -> list[dict]:
    """The layout of ``dvc exp show --json`` (dvc 3.x): commits with their experiments."""

    def nest(flat: dict) -> dict:
        tree: dict = {}
        for key, value in flat.items():
            *parents, leaf = key.split(".")
            node = tree
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return tree

    def data(e: dict) -> dict:
        metrics = {f"metrics/{m}.json": {"data": {"test": t, "fold0": {"rank_ic_1d": 9.0}}} for m, t in e["metrics"].items()}
        metrics |= {
            "metrics/oracle.json": {"data": {"available": False}},
            "metrics/summary.json": {"data": {"best_model_rank_ic_1d": "core", "lgbm": {"rank_ic_1d": 9.0}}},
            "metrics/timings/core.json": {"data": {"core": {"seconds": 3.0}}},
            "metrics/broken.json": {"error": {"type": "YAMLError", "msg": "bad"}},
        }
        return {"rev": e["rev"], "timestamp": "2026-12-01T00:00:00", "params": {"params.yaml": {"data": nest(e["params"])}},
                "metrics": metrics, "deps": {}, "outs": {}, "meta": {}}

    exps = [{"name": e["name"], "executor": None, "revs": [{"rev": e["rev"], "name": e["name"], "data": data(e), "error": None, "experiments": None}]}
            for e in experiments]
    exps.append({"name": "queued-1", "executor": {"state": "queued", "name": None, "local": None},
                 "revs": [{"rev": "q1", "name": "queued-1", "data": {"rev": "q1", "params": {}, "metrics": {}}, "error": None, "experiments": None}]})
    # A running experiment already carries metrics: the workspace's, not its own.
    exps.append({"name": "running-1", "executor": {"state": "running", "name": "dvc-task", "local": None},
                 "revs": [{"rev": "r1", "name": "running-1", "data": data(run("running", 0, 0.05, 0.044)), "error": None, "experiments": None}]})
    # A search trial (alphagraph.experiments.search): the workspace's metrics beside its own validation params file.
    trial = data(run("trial", 0, 0.05, 0.044))
    trial["params"]["searches/dvclive/params.yaml"] = {"data": {"search": {"study": "s", "trial": 0}}}
    exps.append({"name": "s-t0", "executor": None, "revs": [{"rev": "t0", "name": "s-t0", "data": trial, "error": None, "experiments": None}]})
    exps.append({"name": "failed-1", "executor": None,
                 "revs": [{"rev": "f1", "name": "failed-1", "data": {}, "error": {"type": "ReproductionError", "msg": "boom"}, "experiments": None}]})
    head = data(run("main", 0, 0.05, 0.044))
    return [
        {"rev": "workspace", "name": None, "data": head, "error": None, "experiments": None},
        {"rev": "base", "name": "main", "data": head, "error": None, "experiments": exps},
    ]


def test_parse_exp_show(experiments):
    parsed, skipped = parse_exp_show(exp_show_json(experiments))
    assert skipped == ["queued-1", "running-1", "s-t0", "failed-1"]
    assert [e["name"] for e in parsed] == [e["name"] for e in experiments]
    first = parsed[0]
    assert first["baseline"] == "base" and first["params"] == experiments[0]["params"]
    assert set(first["metrics"]) == {"lgbm", "core"}  # no unavailable oracle, summary or timings
    assert first["metrics"]["core"]["rank_ic_1d"] == CORE_DEFAULT[0]
    with_base, _ = parse_exp_show(exp_show_json(experiments), baselines=True)
    assert [e["name"] for e in with_base][:2] == ["main", "default-1"]  # the commit, never the workspace
    with pytest.raises(UserError, match="list of commits"):
        parse_exp_show({"workspace": {}})
    # Two baselines: labels name the commit, and the same params on another commit is another group.
    other = [dict(e, baseline="other") for e in experiments[:2]]
    with pytest.warns(SeedWarning):
        groups = [r["group"] for r in aggregate([*experiments, *other])]
    assert groups == ["base:default", "base:nopearl", "other:default", "other:nopearl"]


def test_cli_prints_tables_and_writes_json(tmp_path, experiments, capsys):
    source = tmp_path / "exp.json"
    source.write_text(json.dumps(exp_show_json(experiments)))
    out = tmp_path / "seeds.json"
    main(["--input", str(source), "--compare", "core", "lgbm", "--out", str(out), "--metrics", "rank_ic_1d,sharpe_1d"])
    captured = capsys.readouterr()
    assert "skipped (queued, running, failed or search trials): queued-1, running-1, s-t0, failed-1" in captured.err
    lines = captured.out.splitlines()
    assert "| group | model | seeds | rank_ic_1d | sharpe_1d |" in lines
    core = np.mean(CORE_DEFAULT), np.std(CORE_DEFAULT, ddof=1)
    assert f"| default | core | 3 | {core[0]:.4f} ± {core[1]:.4f} | {core[0]:.2f} ± {core[1]:.2f} |" in lines
    assert any(line.startswith("| nopearl | core − lgbm | 3 |") for line in lines)
    doc = json.loads(out.read_text())
    assert doc["groups"][1]["metrics"]["core"]["rank_ic_1d"]["mean"] == round(np.mean(CORE_NOPEARL), 6)  # rounded as in metrics files
    assert doc["comparisons"][0]["a"] == "core"
    with pytest.raises(UserError, match="--compare: no metrics for gat"):
        main(["--input", str(source), "--compare", "gat", "core"])


def test_cli_reports_no_experiments_as_a_user_error(tmp_path):
    source = tmp_path / "exp.json"
    source.write_text(json.dumps(exp_show_json([])))
    done = subprocess.run(
        [sys.executable, "-m", "alphagraph.experiments.seeds", "--input", str(source)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: no finished experiments")
