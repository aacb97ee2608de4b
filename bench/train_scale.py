"""Benchmark: wall time and peak memory of the gat and core stages on a large synthetic universe.

Builds a workspace (a folder with this repository's ``stages/`` and a
``params.yaml``, ``data.synthetic.n_stocks`` set) and runs the upstream stages
(check_params, ingest, features, normalize, split, graph) in it, or reuses one
given with ``--workdir`` whose normalized panel, folds and edges already exist.
Then each requested model stage runs as its own subprocess with a reduced
training config, and the script prints its wall time and peak resident memory
(the child's ``ru_maxrss`` from ``os.wait4``, the figure ``/usr/bin/time -v``
reports as "Maximum resident set size"). Training epochs are short on purpose:
validation and prediction run over the fold's full val and test windows.

Every stage runs with the installed ``alphagraph`` package (the editable
checkout), in the workspace's directory; ``--max-rss-gb`` kills a stage whose
resident memory passes the limit (reported as killed) instead of letting it
starve the machine.

Run:  .venv/bin/python bench/train_scale.py --n-stocks 2000 --workdir WORKSPACE
      .venv/bin/python bench/train_scale.py --n-stocks 2000 --workdir WORKSPACE \\
          --stages core --sampling neighbor --set train.fanouts=[10,5]
      .venv/bin/python bench/train_scale.py --n-stocks 300 --quick     (small, about a minute)

``--workdir`` defaults to a new temporary folder, kept afterwards (its path is
printed) so that a second run can reuse it.

Measured on the 2-core development machine, 2,000 stocks x 1,500 days
(2.77 M panel rows, 191 features, 7.0 M edges in 72 snapshots), one fold, the
default model params, 1 epoch of 32 training days (peak RSS, stage wall
time, epoch time incl. validation over 250 days; times are noisy, the
machine was shared):

    run             before (day batches read a full feature copy)   after (batches gather their own rows)
    gat  full       8158 MB, 320 s, epoch 140 s                     5995 MB, 246 s, epoch 98 s
    core full       killed at 8.3 GB (> 8 GB) in its first batch     6732 MB, 366 s, epoch 182 s
    core neighbor   killed at 8.2 GB (> 8 GB) in its first batch     6466 MB, 234 s, epoch 107 s

About 2.3 GB of what remains is the normalized panel the stage holds; the
rest is the libraries, the edge index and one (evaluation) batch.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ("check_params", "ingest", "features", "normalize", "split", "graph")
READY = ("data/normalized/panel.parquet", "data/splits/folds.json", "data/graph/edges.parquet")


def set_key(params: dict[str, Any], dotted: str, value: Any) -> None:
    """``params["a"]["b"] = value`` for ``dotted`` = "a.b" (the key must exist: typos fail here)."""
    *parents, leaf = dotted.split(".")
    node = params
    for key in parents:
        node = node[key]
    if leaf not in node:
        raise KeyError(f"unknown params key {dotted!r}")
    node[leaf] = value


def parse_sets(pairs: list[str]) -> list[tuple[str, Any]]:
    """``key=value`` pairs, values read as YAML (``train.fanouts=[10,5]``, ``train.epochs=2``)."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected key=value")
        out.append((key, yaml.safe_load(value)))
    return out


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(cmd: list[str], cwd: Path, log: Path, max_rss_gb: float | None) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, peak RSS (MB) of the child, return code, whether it was killed for memory."""
    killed = threading.Event()
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)

        def watch() -> None:
            limit = None if max_rss_gb is None else max_rss_gb * 1024 * 1024
            while proc.poll() is None:
                if limit is not None and _rss_kb(proc.pid) > limit:
                    killed.set()
                    proc.send_signal(signal.SIGKILL)
                    return
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        watcher.join(timeout=1)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # KiB on Linux
        "rc": proc.returncode,
        "killed_for_memory": killed.is_set(),
    }


def epoch_seconds(log: Path) -> list[float]:
    """Seconds of each training epoch, from the loop's log lines (``... epoch k: ... (12.3 s)``)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if " epoch " in line and line.rstrip().endswith(" s)"):
            try:
                out.append(float(line.rstrip()[:-3].rsplit("(", 1)[1]))
            except ValueError:
                pass
    return out


def build_workspace(workdir: Path, params: dict[str, Any], max_rss_gb: float | None) -> list[dict[str, Any]]:
    """Copy the stage scripts and params into ``workdir`` and run the upstream stages there."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "stages", workdir / "stages", dirs_exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    results = []
    for stage in UPSTREAM:
        r = run_measured([sys.executable, f"stages/{stage}.py"], workdir, workdir / f"bench_{stage}.log", max_rss_gb)
        results.append({"stage": stage, **r})
        print(f"  {stage:<13} {r['seconds']:>7.1f} s {r['peak_rss_mb']:>7d} MB" + ("" if r["rc"] == 0 else f"  FAILED rc={r['rc']}"), flush=True)
        if r["rc"] != 0:
            raise SystemExit(f"{stage} failed (log: {workdir / f'bench_{stage}.log'})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-stocks", type=int, default=2000)
    parser.add_argument("--n-days", type=int, default=None, help="data.synthetic.n_days (default: params.yaml's)")
    parser.add_argument("--workdir", type=Path, default=None, help="workspace to build or reuse")
    parser.add_argument("--stages", nargs="+", default=["gat", "core"], choices=["gat", "core"])
    parser.add_argument("--sampling", nargs="+", default=["full", "neighbor"], choices=["full", "neighbor"], help="core: train.sampling")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--days-per-epoch", type=int, default=32)
    parser.add_argument("--n-splits", type=int, default=1, help="split.n_splits of a new workspace")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra params override for the model stages")
    parser.add_argument("--max-rss-gb", type=float, default=None, help="kill a stage whose RSS passes this")
    parser.add_argument("--quick", action="store_true", help="a small market (400 days) for a smoke test")
    args = parser.parse_args()

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    upstream = copy.deepcopy(base)
    set_key(upstream, "data.synthetic.n_stocks", args.n_stocks)
    if args.quick:
        args.n_days = args.n_days or 400
        set_key(upstream, "split.min_train_days", 100)
        set_key(upstream, "split.val_days", 60)
        set_key(upstream, "split.test_days", 60)
    if args.n_days:
        set_key(upstream, "data.synthetic.n_days", args.n_days)
    set_key(upstream, "split.n_splits", args.n_splits)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"train_scale_{args.n_stocks}_"))
    ready = all((workdir / p).exists() for p in READY)
    print(f"workspace: {workdir} ({'reused' if ready else 'building'})", flush=True)
    if ready:
        upstream = yaml.safe_load((workdir / "params.yaml").read_text())
        if not (workdir / "stages").exists():
            shutil.copytree(ROOT / "stages", workdir / "stages")
    else:
        build_workspace(workdir, upstream, args.max_rss_gb)
    n_stocks = upstream["data"]["synthetic"]["n_stocks"]

    runs = []
    for stage in args.stages:
        for sampling in args.sampling if stage == "core" else ["full"]:
            params = copy.deepcopy(upstream)
            group = "gat" if stage == "gat" else "train"
            set_key(params, f"{group}.epochs", args.epochs)
            set_key(params, f"{group}.days_per_epoch", args.days_per_epoch)
            if stage == "core":
                set_key(params, "train.sampling", sampling)
            for key, value in parse_sets(args.set):
                if key.split(".")[0] in (group, "seed", "device"):
                    set_key(params, key, value)
            tag = f"{stage}_{sampling}"
            pfile = workdir / f"params_bench_{tag}.yaml"
            pfile.write_text(yaml.safe_dump(params, sort_keys=False))
            # No resume from an earlier (killed) run: its checkpoints and work folder would skip training.
            shutil.rmtree(workdir / "models" / stage, ignore_errors=True)
            shutil.rmtree(workdir / ".alphagraph" / "work" / stage, ignore_errors=True)
            log = workdir / f"bench_{tag}.log"
            r = run_measured([sys.executable, "stages/model.py", "--model", stage, "--params", pfile.name], workdir, log, args.max_rss_gb)
            epochs = epoch_seconds(log)
            runs.append((tag, r, epochs))
            note = "killed: over --max-rss-gb" if r["killed_for_memory"] else ("" if r["rc"] == 0 else f"FAILED rc={r['rc']} (log: {log})")
            print(f"  {tag:<13} {r['seconds']:>7.1f} s {r['peak_rss_mb']:>7d} MB  epochs {epochs} s  {note}", flush=True)

    print(f"\n{n_stocks} stocks, {args.epochs} epoch(s) of {args.days_per_epoch} days, workspace {workdir}")
    print(f"{'run':<14}{'wall s':>8}{'peak RSS MB':>13}{'epoch s':>10}  status")
    for tag, r, epochs in runs:
        status = "killed (memory)" if r["killed_for_memory"] else ("ok" if r["rc"] == 0 else f"rc {r['rc']}")
        epoch = f"{max(epochs):.1f}" if epochs else "-"
        print(f"{tag:<14}{r['seconds']:>8.1f}{r['peak_rss_mb']:>13d}{epoch:>10}  {status}")


if __name__ == "__main__":
    main()
