"""Benchmark: features + normalize of this project against Qlib's Alpha158 handler, side by side.

    python bench/qlib.py                                   # 800 stocks x 3,000 days
    python bench/qlib.py --qlib-python /path/to/venv/bin/python
    python bench/qlib.py --stocks 200 --days 1000 --processors nn

Both sides get the same random-walk OHLCV panel (``bench/features.py``'s
``make_panel``: late listings, delistings, suspensions). Qlib reads its own binary
format, written here directly: ``calendars/day.txt``, ``instruments/all.txt`` and per
instrument per field a float32 file whose first value is the start index into the
calendar (``features/<code>/<field>.day.bin``); ``$vwap`` is (high + low + close) / 3,
like this project's stand-in ``f_typical0``.

Qlib side: ``qlib.contrib.data.handler.Alpha158`` on all instruments and the whole
period, built cold (no expression or dataset cache), ``kernels`` = the usable cores.
Processors (``--processors``):

* ``lightgbm`` (default): those of Qlib's benchmark config
  ``examples/benchmarks/LightGBM/workflow_config_lightgbm_Alpha158.yaml``, which sets
  none, so Alpha158's defaults apply: no infer processors; learn processors
  ``DropnaLabel`` and ``CSZScoreNorm(fields_group=label)``;
* ``nn``: those of Qlib's neural-network Alpha158 configs (e.g. the MLP and GATs
  ones): infer ``RobustZScoreNorm(fields_group=feature, clip_outlier=true)`` and
  ``Fillna(fields_group=feature)``; learn ``DropnaLabel`` and
  ``CSRankNorm(fields_group=label)``.

This project's side: the features stage (191 features, Alpha158's 158 among them, and
the targets) then the normalize stage (per-date robust z-scores of every feature and
rank-gauss labels), file to file as the stages run them.

Each side runs in its own subprocess; times are wall seconds and CPU seconds (user +
system, all threads; Qlib's worker processes included: on a shared machine the wall
clock moves with the neighbours' load, the CPU much less), peak memory is the
maximum resident set of that process (Qlib's worker processes, which also hold data,
are reported separately where the platform gives it: ``RUSAGE_CHILDREN``).

Qlib is not a dependency of this project: the benchmark creates a virtual environment
for it (``pip install pyqlib==0.9.7``) unless ``--qlib-python`` points at one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from features import make_panel  # noqa: E402

from alphagraph.evaluation.qlib_parity import QLIB_VERSION, write_qlib_data  # noqa: E402

PEAK = textwrap.dedent(
    """
    def peak_gb():  # this process's own peak RSS (ru_maxrss would also count the parent's at fork)
        try:
            line = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
            return int(line.split()[1]) / 1024**2
        except (OSError, IndexError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    """
)

OURS = textwrap.dedent(
    """
    import json, resource, sys, time
    import polars as pl
    from alphagraph.runtime.config import FeaturesConfig, NormalizeConfig
    from alphagraph.features.stream import build_panel_file
    from alphagraph.features.normalize import normalize_file

    HELPER
    work = sys.argv[1]
    t0, c0 = time.perf_counter(), time.process_time()
    prices = pl.read_parquet(work + "/prices.parquet")
    universe = pl.read_parquet(work + "/universe.parquet")
    m = build_panel_file(prices, universe, FeaturesConfig(), work + "/features.parquet")
    t1, c1 = time.perf_counter(), time.process_time()
    s = normalize_file(work + "/features.parquet", work + "/normalized.parquet", NormalizeConfig(), FeaturesConfig().horizons)
    t2, c2 = time.perf_counter(), time.process_time()
    peak = peak_gb()
    print(json.dumps({"features_s": t1 - t0, "normalize_s": t2 - t1, "total_s": t2 - t0, "peak_gb": peak,
                      "features_cpu": c1 - c0, "normalize_cpu": c2 - c1, "total_cpu": c2 - c0,
                      "rows": s["rows"], "n_features": m["n_features"]}))
    """
).replace("HELPER\n", PEAK)

QLIB = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import qlib
    from qlib.constant import REG_CN

    HELPER
    work, processors, kernels = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cal = open(work + "/qlib/calendars/day.txt").read().split()
    t0 = time.perf_counter()
    cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    qlib.init(provider_uri=work + "/qlib", region=REG_CN, kernels=kernels,
              expression_cache=None, dataset_cache=None)
    from qlib.contrib.data.handler import Alpha158
    kw = dict(instruments="all", start_time=cal[0], end_time=cal[-1], fit_start_time=cal[0], fit_end_time=cal[-1])
    if processors == "nn":
        kw["infer_processors"] = [
            {"class": "RobustZScoreNorm", "kwargs": {"fields_group": "feature", "clip_outlier": True}},
            {"class": "Fillna", "kwargs": {"fields_group": "feature"}},
        ]
        kw["learn_processors"] = [{"class": "DropnaLabel"}, {"class": "CSRankNorm", "kwargs": {"fields_group": "label"}}]
    h = Alpha158(**kw)
    df = h.fetch(col_set="feature", data_key="learn")
    t1 = time.perf_counter()
    # user + system CPU of this process and of its (finished) workers
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu0 + sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])
    me = peak_gb()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(json.dumps({"total_s": t1 - t0, "total_cpu": cpu, "peak_gb": me, "workers_peak_gb": kids,
                      "rows": int(df.shape[0]), "n_features": int(df.shape[1])}))
    """
).replace("HELPER\n", PEAK)


def qlib_python(given: str | None, cache: Path) -> str:
    if given:
        return given
    venv = cache / f"qlib-{QLIB_VERSION}"
    py = venv / "bin" / "python"
    if not py.exists():
        print(f"creating {venv} (pip install pyqlib=={QLIB_VERSION}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"pyqlib=={QLIB_VERSION}"], check=True)
    return str(py)


def run_child(python: str, code: str, *args: str, env: dict | None = None) -> dict:
    res = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, env=env)
    if res.returncode:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"child {python} failed (exit {res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stocks", type=int, default=800)
    ap.add_argument("--days", type=int, default=3000)
    ap.add_argument("--qlib-python", default=None, help="a Python with pyqlib installed (default: create a venv)")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "alphagraph-bench")
    ap.add_argument("--processors", choices=["lightgbm", "nn"], default="lightgbm")
    ap.add_argument("--kernels", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()

    python = qlib_python(args.qlib_python, args.cache)
    with tempfile.TemporaryDirectory(prefix="alphagraph-qlib-") as tmp:
        work = Path(tmp)
        prices, universe = make_panel(args.stocks, args.days)
        prices.write_parquet(work / "prices.parquet")
        universe.write_parquet(work / "universe.parquet")
        write_qlib_data(prices, work / "qlib")
        print(f"panel: {args.stocks} stocks x {args.days} days, {prices.height:,} rows; {args.kernels} cores")
        del prices, universe

        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        ours = run_child(sys.executable, OURS, str(work), env=env)
        theirs = run_child(python, QLIB, str(work), args.processors, str(args.kernels))

    print(f"{'':<34} {'wall s':>8} {'CPU s':>8} {'peak GB':>8}")
    print(f"{'alphagraph features':<34} {ours['features_s']:>8.1f} {ours['features_cpu']:>8.1f}")
    print(f"{'alphagraph normalize':<34} {ours['normalize_s']:>8.1f} {ours['normalize_cpu']:>8.1f}")
    print(f"{'alphagraph features + normalize':<34} {ours['total_s']:>8.1f} {ours['total_cpu']:>8.1f}"
          f" {ours['peak_gb']:>8.2f}   ({ours['n_features']} features, {ours['rows']:,} rows)")
    print(f"{'Qlib ' + QLIB_VERSION + ' Alpha158 (' + args.processors + ')':<34} {theirs['total_s']:>8.1f} "
          f"{theirs['total_cpu']:>8.1f} {theirs['peak_gb']:>8.2f}   ({theirs['n_features']} features,"
          f" {theirs['rows']:,} rows; workers' peak {theirs['workers_peak_gb']:.2f} GB)")
    print(f"speed-up (Qlib / alphagraph, features + normalize): {theirs['total_s'] / ours['total_s']:.1f}x wall,"
          f" {theirs['total_cpu'] / ours['total_cpu']:.1f}x CPU")


if __name__ == "__main__":
    main()
