"""Benchmark: each model's training throughput, seconds per epoch and stock-days per second per core.

Trains every model of ``zoo.models`` (or ``--models``) on one fold of the
current workspace's artifacts (run ``dvc repro graph pretrain`` first) for
``--epochs`` epochs, in this process, through the model stage's own hooks
(:mod:`alphagraph.models.zoo`), with no checkpoints and no interpretability
maps. An epoch is ``days_per_epoch`` training days plus the validation pass;
its time is the gap between two epoch ends (the first, which also builds the
model and its data, is reported apart as setup). Models without epochs
(LightGBM, the ridges) report their whole fit as one "epoch" over every
training day. Stock-days per second per core = the epoch's training
stock-days / its seconds / the model's ``num_threads``.

``--out FILE`` writes the figures as JSON; ``--baseline FILE`` (an earlier
``--out``) prints each model's ratio to it, so a regression shows:

    python bench/models.py --epochs 3 --out bench/models_before.json
    python bench/models.py --epochs 3 --baseline bench/models_before.json

Peak memory is the process's peak resident set (``resource.getrusage``), for
the whole run, since models run one after another in one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from alphagraph.evaluation.split import load_folds
from alphagraph.evaluation.walkforward import label_reach
from alphagraph.models.zoo import GRAPH_MODULES, GROUPS, zoo_module
from alphagraph.runtime import paths
from alphagraph.runtime.config import Params, load_params
from alphagraph.runtime.io import read_parquet
from alphagraph.train import split_codes
from alphagraph.train.outputs import TRAIN
from alphagraph.train.fold import epoch_callback


def with_epochs(params: Params, module: str, epochs: int) -> Params:
    """``params`` with the module's group training exactly ``epochs`` epochs (no early stop)."""
    group = GROUPS.get(module, module)
    cfg = getattr(params, group)
    if not hasattr(cfg, "epochs"):
        return params
    return dataclasses.replace(params, **{group: dataclasses.replace(cfg, epochs=epochs, patience=epochs + 1)})


def measure(name: str, module_name: str, params: Params, panel: Any, edges: Any, fold: Any, epochs: int) -> dict[str, Any]:
    module = zoo_module(module_name)
    params = with_epochs(params, module_name, epochs)
    cfg = getattr(params, GROUPS.get(module_name, module_name))
    codes = split_codes(panel, fold, label_reach(params))
    train_days = np.unique(panel["date"].to_numpy()[codes == TRAIN]).size
    stocks_per_day = int((codes == TRAIN).sum()) / max(train_days, 1)
    ends: list[float] = []
    start = time.perf_counter()
    index = module.zoo_index(name, panel, edges, params)
    with epoch_callback(lambda record: ends.append(time.perf_counter())):
        module.train_zoo_fold(name, panel, index, fold, params, None)
    total = time.perf_counter() - start
    days = min(getattr(cfg, "days_per_epoch", None) or train_days, train_days)
    if len(ends) >= 2:  # epochs: the gaps between epoch ends; the first includes the setup
        epoch_s = statistics.median(np.diff(ends))
        setup_s = ends[0] - start - epoch_s
    else:  # a closed-form or boosted fit: one pass over every training day
        epoch_s, setup_s, days = total, 0.0, train_days
    threads = max(int(getattr(cfg, "num_threads", 1) or 1), 1)
    return {
        "epochs": len(ends), "seconds_per_epoch": round(epoch_s, 3), "setup_seconds": round(max(setup_s, 0.0), 3),
        "total_seconds": round(total, 3), "stock_days_per_epoch": round(days * stocks_per_day),
        "stock_days_per_s_per_core": round(days * stocks_per_day / epoch_s / threads, 1), "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models", nargs="+", help="names of zoo.models (default: all)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trained model (>= 2 to time an epoch apart from setup)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    parser.add_argument("--baseline", type=Path, help="an earlier --out: print each model's ratio to it")
    args = parser.parse_args()
    params = load_params(args.params)
    names = args.models or list(params.zoo.models)
    if unknown := [n for n in names if n not in params.zoo.models]:
        parser.error(f"--models: {unknown} not in zoo.models ({', '.join(params.zoo.models)})")
    panel = read_parquet(paths.NORMALIZED_PANEL, contiguous=True)
    fold = next(f for f in load_folds(paths.FOLDS) if f.fold == args.fold)
    edges = read_parquet(paths.EDGES) if any(params.zoo.models[n] in GRAPH_MODULES for n in names) else None
    baseline = json.loads(args.baseline.read_text())["models"] if args.baseline else {}
    results = {}
    print(f"{'model':<14} {'s/epoch':>8} {'setup s':>8} {'stock-days/s/core':>18} {'vs baseline':>12}")
    for name in names:
        r = measure(name, params.zoo.models[name], params, panel, edges, fold, args.epochs)
        results[name] = r
        ratio = ""
        if name in baseline:
            ratio = f"{baseline[name]['seconds_per_epoch'] / r['seconds_per_epoch']:.2f}x"
        print(f"{name:<14} {r['seconds_per_epoch']:>8.2f} {r['setup_seconds']:>8.1f} {r['stock_days_per_s_per_core']:>18,.0f} {ratio:>12}", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:,.0f} MB (the whole run); vs baseline = baseline s/epoch / this s/epoch (> 1: faster)")
    if args.out:
        args.out.write_text(json.dumps({"fold": args.fold, "epochs": args.epochs, "peak_rss_mb": round(peak_mb), "models": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
