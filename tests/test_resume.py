"""Stage-level resume: a killed training stage reuses finished folds, resumes the running one, leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

TEMP_SHAPE = re.compile(r"^\.[^/]+\.[A-Za-z0-9_]{8}(\.tmp)?$")


@pytest.fixture(scope="module")
def workspace(training_workspace) -> Path:
    return training_workspace


def stage(repo: Path, name: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    return subprocess.Popen(
        [sys.executable, "stages/model.py", "--model", name, *args], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=600)
    return proc.returncode, out


def wait_for(repo: Path, pattern: str, proc: subprocess.Popen) -> None:
    """Poll until a file matching ``pattern`` exists (the stage reached that point)."""
    deadline = time.monotonic() + 300
    while not list(repo.glob(pattern)):
        assert proc.poll() is None, f"stage ended before {pattern} appeared:\n{proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"{pattern} never appeared"
        time.sleep(0.02)


def stage_pids(repo: Path, name: str) -> list[int]:
    """Processes running ``stages/model.py --model {name}`` in ``repo``."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if f"stages/model.py --model {name}" in (proc / "cmdline").read_text().replace("\0", " ") and (proc / "cwd").resolve() == repo.resolve():
                pids.append(int(proc.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def temporaries(repo: Path) -> list[Path]:
    return [p for p in repo.rglob(".*") if TEMP_SHAPE.match(p.name) and ".dvc" not in p.parts and ".git" not in p.parts]


def reference(repo: Path, name: str) -> dict:
    rc, out = finish(stage(repo, name))
    assert rc == 0, out
    assert not (repo / ".alphagraph").exists(), "the work folder outlives a finished stage"
    return json.loads((repo / "reports" / "models" / f"{name}.json").read_text())


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sigkill_mid_fold_resumes_from_the_last_epoch_with_identical_metrics(workspace):
    expected = reference(workspace, "core")
    models = tree_bytes(workspace / "models" / "core")  # dvc.lock hashes these bytes: a resume must not change them
    (workspace / "reports" / "models" / "core.json").unlink()

    proc = stage(workspace, "core")
    wait_for(workspace, ".alphagraph/work/core/*/fold1/last.pt", proc)  # fold 0 done, fold 1 after its first epoch
    proc.send_signal(signal.SIGKILL)
    rc, _ = finish(proc)
    killed = rc == -signal.SIGKILL
    # What a SIGKILL during a write leaves: temporaries beside the outs. The next run removes them.
    (workspace / "models" / ".core.abcd1234").mkdir(parents=True, exist_ok=True)
    (workspace / "metrics" / ".core.json.abcd1234.tmp").write_text("{")
    (workspace / "data" / "predictions" / ".core.parquet.abcd1234.tmp").write_bytes(b"PAR1")

    rc, out = finish(stage(workspace, "core"))
    assert rc == 0, out
    if killed:  # the kill landed before the stage finished (it always should on a tiny config)
        assert "fold 0: finished in an earlier run, reused" in out
        assert re.search(r"fold 1: resumed from \S+last\.pt after epoch [12]", out), out
    assert json.loads((workspace / "reports" / "models" / "core.json").read_text()) == expected
    resumed = tree_bytes(workspace / "models" / "core")
    assert resumed.keys() == models.keys()
    assert [name for name in models if resumed[name] != models[name]] == []  # last.pt, best.pt: byte-identical
    assert temporaries(workspace) == []
    assert not (workspace / ".alphagraph").exists()


def test_a_resumed_fit_writes_the_same_checkpoint_bytes_as_an_uninterrupted_one(tmp_path):
    """Same tensors are not enough: DVC hashes bytes. Pickle wrote a string it had seen (by identity) as a
    back-reference, and a resumed run's history keys come from the unpickled checkpoint, not code constants."""
    from alphagraph.train.loop import LoopConfig, fit
    from tests.test_refit import ToyData, ToyModel, mse

    cfg = LoopConfig(epochs=3, lr=1e-2, batch_days=5, eval_batch_days=10, patience=0, num_threads=1, device="cpu", warmup_epochs=0.5)
    fit(ToyModel(seed=1), ToyData(), mse, cfg, run_dir=tmp_path / "straight")
    fit(ToyModel(seed=1), ToyData(), mse, cfg, run_dir=tmp_path / "resumed", until_epoch=1)
    for until in (2, None):  # resumed twice: after epoch 1, then after epoch 2
        fit(ToyModel(seed=7), ToyData(), mse, cfg, run_dir=tmp_path / "resumed", until_epoch=until)
    for name in ("last.pt", "best.pt"):
        assert (tmp_path / "straight" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes(), name


def test_checkpoint_bytes_depend_on_values_not_on_which_objects_are_shared(tmp_path):
    from alphagraph.train.loop import _save, load_checkpoint

    key = "".join(["val_", "loss"])  # a string built at run time: equal to, but not, the constant below
    shared = [{"val_loss": 1.0, "epoch": 1}, {"val_loss": 2.0, "epoch": 2}]
    distinct = [{key: 1.0, "epoch": 1}, {"".join(["val_", "loss"]): 2.0, "epoch": 2}]
    state = torch.nn.Linear(2, 1).state_dict()
    _save({"history": shared, "model": state}, tmp_path / "a.pt")
    _save({"history": distinct, "model": state}, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    loaded = load_checkpoint(tmp_path / "a.pt")
    assert loaded["history"] == shared and list(loaded["model"]._metadata) == list(state._metadata)  # a state_dict's version info kept


def test_sigterm_removes_temporaries_keeps_checkpoints_and_the_rerun_matches(workspace):
    expected = reference(workspace, "gat")
    proc = stage(workspace, "gat")
    wait_for(workspace, ".alphagraph/work/gat/*/fold0/last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    rc, out = finish(proc)
    if rc == 0:
        pytest.skip("the stage finished before SIGTERM arrived")
    assert rc == 128 + signal.SIGTERM, out
    assert "stopped by signal SIGTERM" in out and "Traceback" not in out
    assert temporaries(workspace) == []
    assert list(workspace.glob(".alphagraph/work/gat/*/fold0/last.pt")), "checkpoints must survive SIGTERM"

    rc, out = finish(stage(workspace, "gat"))
    assert rc == 0, out
    assert "fold 0: resumed from" in out
    assert json.loads((workspace / "reports" / "models" / "gat.json").read_text()) == expected


def test_ctrl_c_prints_one_line_exits_130_keeps_checkpoints_and_the_rerun_resumes(workspace):
    expected = reference(workspace, "gat")
    proc = stage(workspace, "gat")
    wait_for(workspace, ".alphagraph/work/gat/*/fold0/last.pt", proc)
    proc.send_signal(signal.SIGINT)
    rc, out = finish(proc)
    if rc == 0:
        pytest.skip("the stage finished before SIGINT arrived")
    assert rc == 128 + signal.SIGINT, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert [line for line in out.splitlines() if line.startswith("interrupted:")] == [
        "interrupted: python stages/model.py --model gat stopped; temporary files removed; rerun the command to resume"
    ]
    assert temporaries(workspace) == []
    assert list(workspace.glob(".alphagraph/work/gat/*/fold0/last.pt")), "checkpoints must survive Ctrl-C"

    rc, out = finish(stage(workspace, "gat"))
    assert rc == 0, out
    assert "fold 0: resumed from" in out
    assert json.loads((workspace / "reports" / "models" / "gat.json").read_text()) == expected


def test_changed_params_never_resume_an_older_run(workspace):
    proc = stage(workspace, "core")
    wait_for(workspace, ".alphagraph/work/core/*/fold0/last.pt", proc)
    proc.send_signal(signal.SIGKILL)
    finish(proc)
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["train"]["lr"] = params["train"]["lr"] / 2
    (workspace / "params_lr.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = stage(workspace, "core", "--params", "params_lr.yaml")
    rc, out = finish(proc)
    assert rc == 0, out
    assert "resumed" not in out and "reused" not in out
    assert "removed 1 work folder(s) of earlier params, data or code" in out
    assert not (workspace / ".alphagraph").exists()


def test_remove_stale_temporaries_touches_only_their_exact_shape(tmp_path):
    from alphagraph.runtime.io import remove_stale_temporaries, write_json

    target = tmp_path / "core.json"
    keep = [tmp_path / ".core.json.keepme", tmp_path / ".core.jsonx.abcd1234.tmp", tmp_path / "core.json.abcd1234.tmp"]
    for p in keep:
        p.write_text("x")
    (tmp_path / ".core.json.abcd1234.tmp").write_text("x")
    (tmp_path / ".core.json.zz_99yy1").mkdir()  # 8 characters: an atomic_dir temporary
    write_json({"a": 1}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([p.name for p in keep] + ["core.json"])
    assert remove_stale_temporaries(tmp_path / "missing" / "x") == []


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_a_killed_dvc_repro_picks_up_where_it_stopped(workspace, shell):
    """DVC does not forward SIGTERM to the stage; the stage asks for it when its parent dies, or
    when the shell's parent dies where DVC's shell (``$SHELL``, else /bin/sh) does not exec the stage."""
    if not Path(shell).exists():
        pytest.skip(f"no {shell}")
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", SHELL=shell,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    dvc = [str(Path(sys.executable).parent / "dvc")]
    proc = subprocess.Popen([*dvc, "repro", "-f", "-s", "model@gat"], cwd=workspace, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for(workspace, ".alphagraph/work/gat/*/fold0/last.pt", proc)
    proc.send_signal(signal.SIGTERM)
    rc, _ = finish(proc)
    if rc == 0:
        pytest.skip("dvc repro finished before SIGTERM arrived")
    deadline = time.monotonic() + 60  # the orphaned stage stops on its own, keeping its checkpoints
    while stage_pids(workspace, "gat"):
        assert time.monotonic() < deadline, "the stage outlived dvc repro"
        time.sleep(0.2)
    assert list(workspace.glob(".alphagraph/work/gat/*/fold0/last.pt"))
    proc = subprocess.run([*dvc, "repro", "-s", "model@gat"], cwd=workspace, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Fold 0 is picked up either way: resumed from its checkpoint, or, where it finished in the second or so
    # the signal takes to reach the stage (/bin/sh: the stage's watcher polls the shell's parent), reused whole.
    assert re.search(r"fold 0: (resumed from|finished in an earlier run, reused)", proc.stdout + proc.stderr), (
        proc.stdout + proc.stderr
    )
    assert temporaries(workspace) == [] and not (workspace / ".alphagraph").exists()
