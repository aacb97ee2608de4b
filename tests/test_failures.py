"""How a stage fails: one line naming the param and the fix, the right exit status, nothing half-written,
no empty resume folder, and (under ``dvc repro``) the command that brings back the outputs DVC removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from alphagraph.runtime.config import ConfigError, Params, check_device
from alphagraph.runtime.errors import UserError, restore_hint
from tests.conftest import ROOT, TINY_PARAMS, make_dvc_repo, run

SRC = str(ROOT / "src")


def python(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"}  # by hand unless the test says otherwise
    environ |= {"PYTHONPATH": SRC, "OMP_WAIT_POLICY": "PASSIVE", **env}
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def errors_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "interrupted:", "restore:"))]


# ---------------------------------------------------------------- 1. check_params names the param and the fix


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"train": {"epochs": -1}}, "error: params.yaml: train.epochs: must be >= 1 (training epochs per fold), got -1; e.g. 10, the default"),
        ({"gat": {"epochs": 0}}, "error: params.yaml: gat.epochs: must be >= 1 (training epochs per fold), got 0; e.g. 8, the default"),
        ({"train": {"batch_days": 0}}, "error: params.yaml: train.batch_days: must be >= 1 (trading days per optimizer step), got 0; e.g. 8, the default"),
        ({"lgbm": {"early_stopping_rounds": 0}}, "error: params.yaml: lgbm.early_stopping_rounds: must be >= 1"),
        ({"data": {"start": "2014-01-01", "end": "2013-01-01"}}, "error: params.yaml: data.end: 2013-01-01 is before data.start 2014-01-01"),
    ],
)
def test_check_params_stops_a_bad_training_param_in_one_line(tmp_path, override, expected):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(override))
    proc = python([str(ROOT / "stages/check_params.py")], tmp_path)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    (line,) = errors_of(stderr)
    assert line.startswith(expected), line


def test_device_cuda_without_a_gpu_names_device_and_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        check_device("cuda", "params.yaml")
    assert str(info.value) == (
        "params.yaml: device: cuda, but torch.cuda.is_available() is False on this machine (no GPU, no driver,"
        " or a CPU-only torch build): set device: auto (the GPU when there is one, else the CPU) or cpu"
    )
    for device in ("auto", "cpu"):
        check_device(device)
    # A stage that DVC does not rerun check_params for (cached), on a machine without a GPU: the same message.
    from alphagraph.train.loop import resolve_device

    with pytest.raises(UserError, match=r"^params: device: cuda, but torch\.cuda\.is_available\(\) is False"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: device: cuda is fine here")
def test_check_params_stops_device_cuda_on_a_machine_without_a_gpu(tmp_path):
    (tmp_path / "params.yaml").write_text("device: cuda\n")
    proc = python([str(ROOT / "stages/check_params.py")], tmp_path)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in stderr
    (line,) = errors_of(stderr)
    assert line.startswith("error: params.yaml: device: cuda, but torch.cuda.is_available() is False") and "set device: auto" in line


def test_reading_params_never_checks_the_machine(monkeypatch):
    """A CPU machine still reads a GPU run's params (the report, a comparison): only check_params and training check."""
    from alphagraph.runtime.config import params_from_dict

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert params_from_dict({"device": "cuda"}).device == "cuda"


# ----------------------------------------------------------- 2. a failed run leaves no empty resume folder


def _fold(k: int):
    import datetime as dt

    from alphagraph.evaluation.split import Fold

    day = dt.date(2020, 1, 1)
    return Fold(k, (day, day), (day, day), (day, day))


@pytest.mark.parametrize("failure", [ConfigError("params: device: cuda, but ..."), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_work_folder(tmp_path, monkeypatch, failure):
    from alphagraph.train.resume import StageWork

    monkeypatch.chdir(tmp_path)
    stale = tmp_path / ".alphagraph" / "work" / "toy" / "0123456789abcdef0123"  # an earlier key's run, killed
    (stale / "fold0").mkdir(parents=True)
    (stale / "fold0" / "last.pt").write_bytes(b"x")
    work = StageWork("toy", Params(), [])

    def train_one(fold, run_dir):
        raise failure

    with pytest.raises(type(failure)):
        work.run_folds([_fold(0), _fold(1)], train_one)
    assert not (tmp_path / ".alphagraph").exists(), sorted(tmp_path.rglob("*"))


def test_a_later_fold_failing_keeps_the_finished_folds_and_nothing_else(tmp_path, monkeypatch):
    import polars as pl

    from alphagraph.train.resume import StageWork
    from alphagraph.train.outputs import FoldOutput
    from alphagraph.train.loop import FitResult

    monkeypatch.chdir(tmp_path)
    work = StageWork("toy", Params(), [])
    done = FoldOutput(pl.DataFrame({"pred_1d": [0.0]}), FitResult([], None, None, 0, False, True, 0.0))

    def train_one(fold, run_dir):
        if fold.fold == 1:
            raise UserError("fold 1: bad")
        return done, {}

    with pytest.raises(UserError):
        work.run_folds([_fold(0), _fold(1)], train_one)
    assert sorted(p.name for p in work.dir.iterdir()) == ["fold0"]
    assert (work.dir / "fold0" / "done" / "result.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: device: cuda trains")
def test_a_training_stage_with_device_cuda_and_no_gpu_fails_in_one_line_and_leaves_no_work_folder(training_workspace):
    """The stage that DVC runs when check_params is cached (it passed on a machine with a GPU)."""
    params = yaml.safe_load((training_workspace / "params.yaml").read_text())
    (training_workspace / "params_cuda.yaml").write_text(yaml.safe_dump({**params, "device": "cuda"}, sort_keys=False))
    proc = python(["stages/model.py", "--model", "gat", "--params", "params_cuda.yaml"], training_workspace)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr
    (line,) = errors_of(stderr)
    assert line.startswith("error: params: device: cuda, but torch.cuda.is_available() is False") and "set device: auto" in line
    assert not (training_workspace / ".alphagraph").exists()


# ------------------------------------------------------------------------- 3. Ctrl-C: one line, exit 130

BLOCKING_STAGE = """
import sys, time
from pathlib import Path
from alphagraph.runtime.errors import run_main
from alphagraph.runtime.io import atomic_path

def main():
    with atomic_path(Path("out") / "result.json") as tmp:
        tmp.write_text("{half")
        Path("ready").touch()
        time.sleep(120)

run_main(main)
"""


@pytest.mark.parametrize("under_dvc", [False, True], ids=["by-hand", "dvc"])
def test_ctrl_c_prints_one_line_exits_130_and_leaves_nothing_half_written(tmp_path, under_dvc):
    (tmp_path / "stage.py").write_text(BLOCKING_STAGE)
    proc = python(["stage.py"], tmp_path, **({"DVC_STAGE": "toy"} if under_dvc else {}))
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    expected = (
        "interrupted: toy stopped; temporary files removed; rerun dvc repro to resume" if under_dvc
        else "interrupted: python stage.py stopped; temporary files removed; rerun the command to resume"
    )
    assert stderr.strip().splitlines() == [expected]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out", "ready", "stage.py"]  # no result.json, no temporary


# -------------------------------------------------------- 5. the outputs DVC removed before a failed stage

DVC_YAML = """
stages:
  a:
    cmd: python a.py
    outs:
      - data/a.parquet
      - plots/a:
          cache: false
      - keep/a:
          persist: true
          cache: false
    metrics:
      - metrics/a.json:
          cache: false
  model:
    foreach: ${zoo.models}
    do:
      cmd: python model.py --model ${key}
      outs:
        - models/${key}
        - plots/${key}:
            cache: false
      metrics:
        - metrics/${key}.json:
            cache: false
  never_ran:
    cmd: python b.py
    outs:
      - data/b.parquet
  no_outs:
    cmd: python c.py
"""


def test_the_restore_hint_names_the_stage_its_cached_and_committed_outs(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("zoo:\n  models:\n    transformer: temporal\n    tgcn: tgcn\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  a:\n    cmd: python a.py\n  model@transformer:\n    cmd: x\n"
                                      "  model@tgcn:\n    cmd: x\n  no_outs:\n    cmd: python c.py\n")
    for path in ("metrics/a.json", "plots/a/rank_ic.csv", "metrics/transformer.json", "plots/transformer/rank_ic.csv"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["git", "add", "metrics", "plots"], tmp_path)  # plots/tgcn and metrics/tgcn.json: never committed

    lead = "DVC removed {0}'s outputs before running it; to get the last good ones back: "
    assert restore_hint("a", tmp_path) == lead.format("a") + "dvc checkout a && git checkout HEAD -- plots/a metrics/a.json"
    assert restore_hint("model@transformer", tmp_path) == (
        lead.format("model@transformer") + "dvc checkout model@transformer && git checkout HEAD -- plots/transformer metrics/transformer.json"
    )
    assert restore_hint("model@tgcn", tmp_path) == lead.format("model@tgcn") + "dvc checkout model@tgcn"
    assert restore_hint("never_ran", tmp_path) is None  # no earlier results: nothing to restore
    assert restore_hint("no_outs", tmp_path) is None
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert restore_hint(None, tmp_path) is None  # run by hand: DVC removed nothing


def test_a_failed_stage_under_dvc_prints_the_command_that_restores_its_last_outputs(tmp_path):
    """DVC removes a stage's outs (cache: false ones too) before running it; the printed command brings them back."""
    repo = make_dvc_repo(tmp_path / "repo", TINY_PARAMS)
    run(["dvc", "repro", "-q", "ingest"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "ingest"], repo)
    kept = {p: (repo / p).read_bytes() for p in ("metrics/ingest.json", "data/raw/prices.parquet", "data/raw/universe.parquet")}

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"] |= {"source": "file", "path": "inputs/typo.parquet"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro", "ingest"], repo, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out
    error, hint = errors_of(out)
    assert error == "error: inputs/typo.parquet: data file or directory not found (data.path)"
    assert hint == (
        "restore: DVC removed ingest's outputs before running it; to get the last good ones back:"
        " dvc checkout ingest && git checkout HEAD -- metrics/ingest.json"
    )
    assert not any((repo / p).exists() for p in kept)  # what DVC did before the command ran

    run(["git", "checkout", "--", "params.yaml"], repo)  # the typo fixed
    run(["sh", "-c", hint.split("back: ", 1)[1]], repo)
    assert {p: (repo / p).read_bytes() for p in kept} == kept
    assert "up to date" in run(["dvc", "status", "ingest"], repo).stdout
