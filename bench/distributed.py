"""Benchmark: a graph-model stage in 1 process against N data-parallel processes (torchrun, gloo or nccl).

    python bench/distributed.py --workdir W                  # core, 1 vs 2 processes
    python bench/distributed.py --workdir W --stage gat --nproc 4 --set device=cuda

``W`` is a workspace whose training inputs exist: a DVC copy of this
repository after ``dvc repro graph oracle``, or one built by
``bench/train_scale.py --workdir W``. The stage runs as
``python stages/model.py --model <stage> --params <generated>`` (N > 1 relaunches itself
under torchrun), once per process count, each time in a fresh process. The
script prints the wall seconds, the speed-up, the peak resident memory summed
over the process tree (sampled every 0.2 s from /proc), and the test and
validation RankIC of each run with their differences to the 1-process run.
``--deterministic`` turns dropout and PEARL's random features off, the
setting in which the runs are expected to agree (see docs/scale.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            p = int(stat.parent.name)
            children.setdefault(int(fields[1]), []).append(p)
            rss[p] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run(workdir: Path, stage: str, params_file: str) -> dict[str, Any]:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    t0 = time.perf_counter()
    with open(workdir / f"bench_{params_file}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "stages/model.py", "--model", stage, "--params", params_file], cwd=workdir, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        peak = [0]

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_rss_kb(proc.pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        rc = proc.wait()
        watcher.join()
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"{stage} with {params_file} failed ({rc}); see {workdir / f'bench_{params_file}.log'}")
    metrics = json.loads((workdir / "metrics" / f"{stage}.json").read_text())
    return {"wall": wall, "peak_gb": peak[0] / 1024**2, "metrics": metrics}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--stage", choices=["core", "gat"], default="core")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--deterministic", action="store_true", help="dropout 0, pearl.mode none")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params override (YAML value)")
    args = ap.parse_args()

    params = yaml.safe_load((args.workdir / "params.yaml").read_text())
    sets = [s.split("=", 1) for s in args.set]
    if args.deterministic:
        group = "train" if args.stage == "core" else "gat"
        sets += [[f"{group}.dropout", "0.0"]] + ([["train.pearl.mode", "none"]] if args.stage == "core" else [])
    for key, value in sets:
        node = params
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
    results = {}
    for n in (1, args.nproc):
        params.setdefault("distributed", {})["nproc_per_node"] = n
        name = f"params_bench_n{n}.yaml"
        (args.workdir / name).write_text(yaml.safe_dump(params, sort_keys=False))
        results[n] = run(args.workdir, args.stage, name)
        print(f"{n} process(es): {results[n]['wall']:.1f} s wall, peak RSS {results[n]['peak_gb']:.2f} GB (process tree)", flush=True)

    one, many = results[1], results[args.nproc]
    print(f"\n{args.stage}: speed-up {one['wall'] / many['wall']:.2f}x with {args.nproc} processes;"
          f" memory ratio {many['peak_gb'] / one['peak_gb']:.2f}")
    print(f"{'metric':<28}{'1 process':>12}{f'{args.nproc} processes':>14}{'diff':>10}")
    rows = [(f"test.{k}", one["metrics"]["test"].get(k), many["metrics"]["test"].get(k)) for k in ("rank_ic_1d", "rank_ic_5d", "ic_1d")]
    rows += [(f"train.{k}", v, many["metrics"]["train"].get(k)) for k, v in one["metrics"]["train"].items()]
    for key, a, b in rows:
        diff = "" if a is None or b is None else f"{b - a:+.4f}"
        print(f"{key:<28}{a!s:>12}{b!s:>14}{diff:>10}")


if __name__ == "__main__":
    main()
