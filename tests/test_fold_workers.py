"""Folds trained in worker processes (distributed.fold_workers): the same results as one process, a
killed stage leaves no worker behind and resumes, a worker's error is the stage's one-line error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import deep_merge
from tests.test_resume import finish, reference, stage, stage_pids, temporaries, tree_bytes, wait_for


@pytest.fixture(scope="module")
def workspace(training_workspace) -> Path:
    return training_workspace


def params_file(repo: Path, name: str, overrides: dict) -> str:
    """A params file beside params.yaml with ``overrides`` (the stage's --params)."""
    params = deep_merge(yaml.safe_load((repo / "params.yaml").read_text()), overrides)
    (repo / name).write_text(yaml.safe_dump(params, sort_keys=False))
    return name


def workers_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (a stage's fold workers)."""
    children = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(proc.name))
    return children


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


@pytest.fixture(scope="module")
def expected(workspace) -> tuple[dict, dict[str, bytes]]:
    """The core stage's report and model files with the tests' params.yaml: one fold after another."""
    return reference(workspace, "core"), tree_bytes(workspace / "models" / "core")


def test_folds_in_two_workers_give_the_bytes_of_one_process(workspace, expected):
    two = params_file(workspace, "params_workers.yaml", {"distributed": {"fold_workers": 2}})
    rc, out = finish(stage(workspace, "core", "--params", two))
    assert rc == 0, out
    assert "core: 2 folds in 2 worker processes (fork)" in out  # forked before the stage read anything
    assert json.loads((workspace / "reports" / "models" / "core.json").read_text()) == expected[0]
    assert tree_bytes(workspace / "models" / "core") == expected[1]  # checkpoints byte-identical
    timings = json.loads((workspace / "metrics" / "timings" / "core.json").read_text())["core"]
    assert timings["worker_peak_rss_mb"] > 0


def test_a_killed_stage_takes_its_workers_along_and_the_rerun_resumes(workspace, expected):
    two = params_file(workspace, "params_workers.yaml", {"distributed": {"fold_workers": 2}})
    (workspace / "reports" / "models" / "core.json").unlink()
    proc = stage(workspace, "core", "--params", two)
    wait_for(workspace, ".alphagraph/work/core/*/fold1/last.pt", proc)  # both folds past their first epoch
    workers = workers_of(proc.pid)
    assert len(workers) >= 2, "the folds train in worker processes"
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    deadline = time.monotonic() + 30
    while any(alive(w) for w in workers):  # Linux sends them SIGTERM when the stage dies
        assert time.monotonic() < deadline, "fold workers outlived the killed stage"
        time.sleep(0.1)
    assert stage_pids(workspace, "core") == []

    rc, out = finish(stage(workspace, "core", "--params", two))
    assert rc == 0, out
    assert "resumed from" in out or "finished in an earlier run" in out, out
    assert json.loads((workspace / "reports" / "models" / "core.json").read_text()) == expected[0]
    assert temporaries(workspace) == []
    assert not (workspace / ".alphagraph").exists()


def test_an_error_in_a_worker_is_the_stage_s_one_line_error(workspace):
    bad = params_file(
        workspace, "params_bad.yaml", {"distributed": {"fold_workers": 2}, "train": {"neighbour_inputs": ["f_no_such_feature"]}}
    )
    rc, out = finish(stage(workspace, "core", "--params", bad))
    assert rc == 2, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.neighbour_inputs" in errors[0] and "f_no_such_feature" in errors[0], out
    assert not list(workspace.glob(".alphagraph/work/core/*/fold*/done"))
    os.remove(workspace / "params_bad.yaml")


def test_a_process_is_fork_safe_until_polars_pool_runs():
    """Workers are forked only while polars' compute pool has not started (a forked child would wait
    for its threads); imports alone leave the process forkable."""
    code = (
        "import polars as pl, torch; from alphagraph.train.workers import fork_safe; a = fork_safe();"
        " pl.DataFrame({'x': range(100_000)}).select(pl.col('x').sum()); print(a, fork_safe())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]
