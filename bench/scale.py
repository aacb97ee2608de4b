"""Benchmark: the data stages at scale - wall time and peak memory of each stage.

    python bench/scale.py                              # 4,000 stocks x 2,500 days (10 M rows)
    python bench/scale.py --stocks 800 --days 3000
    python bench/scale.py --assert-peak-gb 8           # exit 1 if a stage's peak RSS exceeds 8 GB
    python bench/scale.py --stages ingest features     # a subset (later stages need earlier outputs)

Runs the real stage scripts (``stages/ingest.py``, ``features``, ``normalize``,
``split``, ``graph``) one after another as subprocesses, in a temporary working
folder with a generated ``params.yaml``: the repository's own, with the synthetic
source and the requested size. Each stage's peak memory is the maximum resident set
of its process (``ru_maxrss`` of the child, from ``os.wait4``), which counts what
numpy, polars and Arrow allocate natively. Wall seconds move with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["ingest", "features", "normalize", "split", "graph"]


def make_params(workdir: Path, n_stocks: int, n_days: int) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = "synthetic"
    params["data"]["synthetic"]["n_stocks"] = n_stocks
    params["data"]["synthetic"]["n_days"] = n_days
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(stage: str, workdir: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GB, exit status) of ``python stages/<stage>.py`` in ``workdir``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=workdir, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024**2, proc.returncode  # ru_maxrss: KB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stocks", type=int, default=4000)
    ap.add_argument("--days", type=int, default=2500)
    ap.add_argument("--stages", nargs="+", default=STAGES, choices=STAGES)
    ap.add_argument("--assert-peak-gb", type=float, default=None)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the artifacts here (default: a temporary folder)")
    args = ap.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="alphagraph-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    make_params(workdir, args.stocks, args.days)
    print(f"{args.stocks} stocks x {args.days} days, in {workdir}")
    print(f"{'stage':<10} {'wall s':>8} {'peak RSS GB':>12}")
    failed = over = False
    try:
        for stage in args.stages:
            wall, peak, rc = run_stage(stage, workdir)
            flag = ""
            if rc:
                flag, failed = f"  FAILED (exit {rc})", True
            elif args.assert_peak_gb is not None and peak > args.assert_peak_gb:
                flag, over = f"  over {args.assert_peak_gb:g} GB", True
            print(f"{stage:<10} {wall:>8.1f} {peak:>12.2f}{flag}", flush=True)
            if rc:
                break
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed or over else 0


if __name__ == "__main__":
    sys.exit(main())
