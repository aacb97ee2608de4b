"""Benchmark: this project's top-k backtest against Qlib's own, on one run's predictions, side by side.

    python bench/qlib_backtest.py                       # every model of the workspace's run, 1-day scores
    python bench/qlib_backtest.py --models core lgbm --qlib-python /path/to/venv/bin/python

Both systems get each model's pooled test predictions (``pred_1d``) and the run's
prices (rounded to float32, as Qlib stores them) and benchmark. This project's side
runs with ``eval.backtest.preset: qlib`` (next-session fills, annualization 238,
delisted stocks held as dead positions) over the workspace's ``eval.backtest``
strategy and costs; Qlib's side is pyqlib 0.9.7's ``backtest`` with
``TopkDropoutStrategy`` (``alphagraph.evaluation.qlib_parity``), in its own Python
(``--qlib-python``, ``ALPHAGRAPH_QLIB_PYTHON``, or the environment ``bench/qlib.py``
creates), once per ``--hash-seeds``: Qlib lists held stocks from a Python set, so
when more of them lack a score than ``n_drop`` and nothing is bought (dead positions
pile up) its pick follows string hashing. Prints each model's figures from both
systems, the largest daily difference, the days whose holdings differ from Qlib's
first run and between Qlib's two runs, and each side's seconds and peak memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import yaml

from alphagraph.runtime import paths
from alphagraph.evaluation.backtest import Market, topk_dropout, topk_stats
from alphagraph.runtime.config import params_from_dict
from alphagraph.evaluation.qlib_parity import as_qlib_sees, compare, qlib_python, qlib_topk_backtest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=Path("."))
    ap.add_argument("--models", nargs="+", help="default: every predictions file of the run")
    ap.add_argument("--qlib-python", default=None)
    ap.add_argument("--hash-seeds", type=int, nargs="+", default=[0, 1],
                    help="PYTHONHASHSEED of each Qlib run: its choice among unscored held stocks follows string hashing")
    args = ap.parse_args()
    python = args.qlib_python or qlib_python()
    if python is None:
        sys.exit("no pyqlib: pass --qlib-python, set ALPHAGRAPH_QLIB_PYTHON, or run python bench/qlib.py once")
    os.chdir(args.workspace)
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw.setdefault("eval", {})["execution_lag"] = 1  # the preset's conventions, whatever the workspace chose
    raw["eval"].setdefault("backtest", {}).update(preset="qlib", annualization=238.0, delisting="hold", replace_only=False)
    p = params_from_dict(raw)
    bt = p.eval.backtest
    prices = as_qlib_sees(pl.read_parquet(paths.PRICES))
    market = Market.from_frames(prices.select("date", "code", "close"), pl.read_parquet(paths.BENCHMARK))
    files = sorted(paths.PREDICTIONS.glob("*.parquet")) + sorted(Path("data/ensemble").glob("ensemble*.parquet"))
    models = {f.stem: f for f in files if args.models is None or f.stem in args.models}
    print(f"top-k {bt.topk}, n_drop {bt.n_drop}, costs {bt.open_cost}/{bt.close_cost} (min {bt.min_cost}), "
          f"execution lag {p.eval.execution_lag}, annualization {bt.annualization:g}, delisting {bt.delisting}")
    head = (f"{'model':<15} {'ours: excess/yr':>15} {'IR':>6} {'MDD':>7} {'qlib: excess/yr':>15} {'IR':>6} {'MDD':>7}"
            f" {'qlib, hash 1':>12} {'max |d ret|':>11} {'days held differ':>16} {'qlib vs qlib':>12} {'ours s':>7} {'qlib s':>7}")
    print(head)
    ours_s = qlib_s = 0.0
    for name, path in models.items():
        preds = pl.read_parquet(path)
        scores = preds.filter(pl.col("split") == "test").select("date", "code", score=pl.col("pred_1d").cast(pl.Float64))
        if scores.is_empty():
            continue
        t0 = time.perf_counter()
        ours = topk_dropout(scores, market, bt, p.eval.execution_lag, source=name)
        mine = topk_stats(ours, bt.annualization)
        t1 = time.perf_counter()
        runs = []
        for seed in args.hash_seeds:
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(qlib_topk_backtest(python, prices, scores, market, bt, Path(tmp), hash_seed=seed))
        t2 = time.perf_counter()
        (report, positions, risk), (_, positions2, risk2) = runs[0], runs[-1]
        res = compare(ours, report, positions, bt.annualization)
        itself = sum(positions[d] != positions2.get(d) for d in positions)
        ours_s, qlib_s = ours_s + t1 - t0, qlib_s + (t2 - t1) / len(runs)
        print(f"{name:<15} {mine['excess_return']:>15.2%} {mine['information_ratio']:>6.2f} {mine['max_drawdown']:>7.2%}"
              f" {risk['annualized_return']:>15.2%} {risk['information_ratio']:>6.2f} {risk['max_drawdown']:>7.2%}"
              f" {risk2['annualized_return']:>12.2%} {res['max_abs_diff']['return']:>11.1e}"
              f" {len(res['holdings_differ_on']):>8} / {res['days']:<5} {itself:>12} {t1 - t0:>7.1f} {(t2 - t1) / len(runs):>7.1f}",
              flush=True)
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    peak_qlib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"total: ours {ours_s:.1f} s (peak {peak_self:.2f} GB, this process), qlib {qlib_s:.1f} s "
          f"(peak {peak_qlib:.2f} GB, its process, data writing included); ratio {qlib_s / max(ours_s, 1e-9):.1f}x")


if __name__ == "__main__":
    main()
