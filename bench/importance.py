"""Benchmark: how steady the core model's permutation importance is, RankIC drop against rank shift.

    python bench/importance.py                 # folds 1 and 2, two disjoint 16-day windows each
    python bench/importance.py --days 32 --folds 2

For each fold's trained core model (``models/core/fold{k}``, after ``dvc repro model@core``),
importance by feature family (:func:`alphagraph.train.importance.feature_groups`) is measured
on the last ``--days`` validation days and on the ``--days`` before them, and the two windows'
figures are correlated across families, for the RankIC ``drop`` and for the ``rank_shift``.
A figure that describes the model, not the days, gives the same ranking on both windows.
Prints the seconds each window took (one forward pass per family and batch of days).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from alphagraph.evaluation.split import load_folds
from alphagraph.models.core.data import core_fold_data, core_index, wide_index
from alphagraph.rl.export import load_core
from alphagraph.runtime import paths
from alphagraph.runtime.config import load_params
from alphagraph.runtime.io import read_parquet
from alphagraph.train.importance import feature_groups, permutation_importance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--days", type=int, default=16)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    params = load_params("params.yaml")
    panel = read_parquet(paths.NORMALIZED_PANEL).rechunk()
    edges = read_parquet(paths.EDGES)
    index, wide = core_index(edges, panel, params), wide_index(panel, params, edges)
    folds = {f.fold: f for f in load_folds(paths.FOLDS)}
    for k in args.folds:
        data = core_fold_data(panel, index, folds[k], params, wide=wide)
        groups = feature_groups(data.feature_cols)
        model, _ = load_core(paths.MODELS / "core" / f"fold{k}")
        val = list(data.dates("val"))
        windows = {"last": val[-args.days:], "before": val[-2 * args.days:-args.days]}
        out = {}
        for name, days in windows.items():
            t = time.perf_counter()
            out[name] = permutation_importance(model, data, days, groups, seed=params.seed)
            print(f"fold {k}, {name} {args.days} days: {time.perf_counter() - t:.1f} s ({len(groups)} families)")
        for col in ("drop", "rank_shift"):
            a, b = out["last"][col].to_numpy(), out["before"][col].to_numpy()
            common = len(set(np.argsort(-a)[: args.top]) & set(np.argsort(-b)[: args.top]))
            print(f"fold {k} {col:>10}: correlation of the two windows {np.corrcoef(a, b)[0, 1]:+.3f},"
                  f" top {args.top} in common {common}")


if __name__ == "__main__":
    main()
