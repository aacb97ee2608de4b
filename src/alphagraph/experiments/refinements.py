"""The refinement study: each refinement of the research plan on vs off, over seeds, same budget.

The plan's protocol: one change at a time against the current best, the same
training budget, and a success criterion: at least 5 % better on the target
metric, no other metric worse, at most 10 % more training time. Failures are
recorded with their numbers.

Here the target metric is the validation RankIC at 1 day (mean of the daily
RankICs over the validation days before the first test day): refinements are
selected on validation only, and on no day that any fold tests (pooled over
walk-forward folds, later folds' validation windows are earlier folds' test
days). So only the folds whose validation window ends before the first test
day are trained (fold 0 on a walk-forward split); their test windows give the test
figures, shown for the record. "No other metric worse": the validation RankIC 5d and IC 1d
may not fall by more than one paired standard error over seeds (a strict "not
lower" would fail most changes on noise alone). Training time is the CPU time
of training (pretraining included), so a loaded machine does not count as the
refinement's cost. Test figures are shown beside, for the record, never used
to judge.

Run on a workspace whose data stages are built (``dvc repro split graph``)::

    python -m alphagraph.experiments.refinements run --workspace . --results refine/synthetic \\
        --seeds 0 1 2 --set train.epochs=4 --set train.days_per_epoch=128
    python -m alphagraph.experiments.refinements report --results refine/synthetic --title "synthetic market"

Each (refinement, seed) run is a fresh process writing one JSON; a rerun skips
the runs already written. A refinement that changes the graph builds its own
edges in ``<results>/work/<name>/`` (the other data are linked, not copied).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from alphagraph.runtime import paths
from alphagraph.runtime.config import params_from_dict
from alphagraph.runtime.errors import UserError, run_main
from alphagraph.evaluation.evaluate import daily_ic
from alphagraph.runtime.io import read_parquet, write_json
from alphagraph.evaluation.split import first_test_day, validation_before_test

# name -> param overrides of the refinement; "baseline" is every switch off.
CATALOG: dict[str, dict[str, Any]] = {
    "baseline": {},
    "regime_weighting": {"train.regime_weighting": True},
    "sector_neutral": {"train.target": "sector_neutral"},
    "beta_neutral": {"train.target": "beta_neutral"},
    "adabelief": {"train.optimizer": "adabelief"},
    "warm_restarts": {"train.restart_epochs": 0.5, "train.restart_mult": 2.0},  # restarts inside a short budget
    "stochastic_depth": {"train.stochastic_depth": 0.2},
    "fan": {"train.window_norm": "fan"},
    "vol_similarity": {"train.edge_features": ["vol_similarity"]},
    "residual_corr_sector": {"graph.residualize_sector": True},
    # The linear path off (the default before it): the reference for pretraining, which excludes it.
    "no_ridge_path": {"train.wide": "none"},
    # pretraining: 2 epochs of 64 days, a fraction of the core budget (its time counts)
    "pretrain_masked": {
        "pretrain.objective": "masked", "pretrain.epochs": 2, "pretrain.days_per_epoch": 64, "train.init_from": "pretrain",
        "train.wide": "none",
    },
    "pretrain_contrastive": {
        "pretrain.objective": "contrastive", "pretrain.epochs": 2, "pretrain.days_per_epoch": 64, "train.init_from": "pretrain",
        "train.wide": "none",
    },
}
# Refinements judged against another catalog entry than the baseline (they exclude a default switch).
REFERENCE = {"pretrain_masked": "no_ridge_path", "pretrain_contrastive": "no_ridge_path"}
UPSTREAM = ("graph.",)  # overrides that need the workspace's edges rebuilt
TARGET = "val_rank_ic_1d"
GUARDS = ("val_rank_ic_5d", "val_ic_1d")
MIN_GAIN, MAX_TIME = 0.05, 1.10


def set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    """``tree[a][b] = value`` for ``key = "a.b"`` (a missing group is created; params validation names a typo)."""
    *groups, leaf = key.split(".")
    node = tree
    for g in groups:
        node = node.setdefault(g, {})
    node[leaf] = value


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` (value parsed as YAML) -> overrides."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"refinements: --set {item!r}: expected key=value")
        out[key] = yaml.safe_load(value)
    return out


def variant_params(base: Mapping[str, Any], budget: Mapping[str, Any], name: str, seed: int) -> dict[str, Any]:
    """The params dict of one run: base, then the budget, then the refinement's switches, then the seed."""
    if name not in CATALOG:
        raise UserError(f"refinements: unknown refinement {name!r}; known: {', '.join(CATALOG)}")
    tree = json.loads(json.dumps(base))
    for key, value in {**budget, **CATALOG[name], "seed": seed}.items():
        set_path(tree, key, value)
    params_from_dict(tree, f"refinement {name}")  # validated before any work
    return tree


def _window_metrics(frame: pl.DataFrame, split: str) -> dict[str, float]:
    part = validation_before_test(frame) if split == "val" else frame.filter(pl.col("split") == split)
    out = {}
    for h in (1, 5):
        if f"pred_{h}d" not in part.columns:
            continue
        ic = daily_ic(part, f"pred_{h}d", f"ret_{h}d")
        out[f"{split}_rank_ic_{h}d"] = float(ic["rank_ic"].mean())
        out[f"{split}_ic_{h}d"] = float(ic["ic"].mean())
    return out


def run_one(tree: dict[str, Any], name: str, out: Path) -> dict[str, Any]:
    """Train the core model on every fold of the workspace (cwd) with ``tree``'s params; write ``out``."""
    from alphagraph.models.core import core_index, train_core_fold
    from alphagraph.evaluation.split import load_folds

    params = params_from_dict(tree, f"refinement {name}")
    panel, folds = read_parquet(paths.NORMALIZED_PANEL, contiguous=True), load_folds(paths.FOLDS)
    first_test = first_test_day(folds)
    folds = [f for f in folds if f.val[1] < first_test]  # the others validate on test days
    if not folds:
        raise UserError(f"refinements: no fold's validation window ends before the first test day {first_test}: use a walk-forward split")
    index = core_index(read_parquet(paths.EDGES), panel, params)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    parts, epochs = [], []
    pretrain_dir = out.with_suffix(".pretrain")
    for fold in folds:
        if params.train.init_from == "pretrain":  # pretraining counts in the refinement's training time
            from alphagraph.models.core import core_kwargs
            from alphagraph.features.normalize import feature_columns
            from alphagraph.models.core.pretrain import pretrain_fold, pretrained_path, save_pretrained

            core, history = pretrain_fold(panel, index, fold, params)
            kwargs = core_kwargs(params.train, feature_columns(panel), index.relations, len(params.features.horizons), params.seed)
            save_pretrained(core, kwargs, params.pretrain.objective, fold.fold, history, pretrained_path(fold.fold, pretrain_dir))
        fold_out, _ = train_core_fold(panel, index, fold, params, progress=False, pretrain_dir=pretrain_dir)
        parts.append(fold_out.predictions)
        epochs.append(fold_out.result.epochs_run)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    horizons = [h for h in (1, 5) if h in params.features.horizons]
    rets = panel.select("date", "code", *[f"ret_{h}d" for h in horizons])
    frame = pl.concat(parts).join(rets, on=["date", "code"], how="left")
    record = {
        "refinement": name, "seed": params.seed, "cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1),
        "epochs_run": epochs, "folds": [f.fold for f in folds], "val_before": str(first_test),
        **_window_metrics(frame, "val"), **_window_metrics(frame, "test"),
    }
    write_json(record, out)
    return record


def _workspace(root: Path, results: Path, name: str, overrides: Mapping[str, Any], params_file: Path) -> Path:
    """``root`` itself, or for a refinement that changes the graph a workspace with its own edges."""
    if not any(k.startswith(UPSTREAM) for k in overrides):
        return root
    ws = results / "work" / name
    if (ws / paths.EDGES).exists():
        return ws
    for sub in ("data/raw", "data/features", "data/normalized", "data/splits", "inputs"):
        link = ws / sub
        if (root / sub).exists() and not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to((root / sub).resolve(), target_is_directory=True)
    stage = Path(__file__).resolve().parents[2] / "stages" / "graph.py"
    subprocess.run([sys.executable, str(stage), "--params", str(params_file.resolve())], cwd=ws, check=True)
    return ws


def run(args: argparse.Namespace) -> None:
    root, results = Path(args.workspace).resolve(), Path(args.results).resolve()
    base = yaml.safe_load((root / args.params).read_text())
    budget = parse_set(args.set)
    names = args.only or list(CATALOG)
    results.mkdir(parents=True, exist_ok=True)
    for name in names:
        for seed in args.seeds:
            out = results / f"{name}_s{seed}.json"
            if out.exists():
                continue
            tree = variant_params(base, budget, name, seed)
            params_file = results / "params" / f"{name}_s{seed}.yaml"
            params_file.parent.mkdir(parents=True, exist_ok=True)
            params_file.write_text(yaml.safe_dump(tree, sort_keys=False))
            ws = _workspace(root, results, name, CATALOG[name], params_file)
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "alphagraph.experiments.refinements", "one", "--params", str(params_file), "--name", name, "--out", str(out)]
            proc = subprocess.run(cmd, cwd=ws, env=os.environ | {"OMP_WAIT_POLICY": "PASSIVE"})
            if proc.returncode:
                print(f"{name} seed {seed}: FAILED (exit {proc.returncode})", flush=True)
                continue
            rec = json.loads(out.read_text())
            print(f"{name} seed {seed}: val RankIC 1d {rec[TARGET]:.4f}, cpu {rec['cpu_seconds']:.0f} s, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)


def _paired(on: Mapping[int, Mapping[str, float]], off: Mapping[int, Mapping[str, float]], key: str) -> tuple[float, float]:
    """Mean and standard error over seeds of on - off."""
    d = np.array([on[s][key] - off[s][key] for s in sorted(set(on) & set(off))])
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def _worse(diff: float, se: float) -> bool:
    """A guard metric is worse when it falls by more than one paired standard error (any fall with one seed)."""
    return diff < -se if np.isfinite(se) else diff < 0


def judge(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per refinement: means over seeds, paired differences, the verdict of the criterion."""
    by: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in records:
        by.setdefault(r["refinement"], {})[r["seed"]] = r
    if "baseline" not in by:
        raise UserError("refinements: no baseline runs in the results")
    rows = []
    for name in [n for n in CATALOG if n in by]:
        against = REFERENCE.get(name, "baseline")
        against = against if against in by else "baseline"
        on, off = by[name], by[against]
        seeds = sorted(set(on) & set(off))
        mean = {k: float(np.mean([on[s][k] for s in seeds])) for k in (TARGET, *GUARDS, "test_rank_ic_1d", "cpu_seconds")}
        row: dict[str, Any] = {"refinement": name, "against": against, "seeds": len(seeds), **mean}
        if name != "baseline":
            base_mean = float(np.mean([off[s][TARGET] for s in seeds]))
            d, se = _paired(on, off, TARGET)
            row |= {"gain": d / abs(base_mean) if base_mean else float("nan"), "diff": d, "diff_se": se}
            row["test_diff"] = _paired(on, off, "test_rank_ic_1d")[0]
            worse = [g for g in GUARDS if _worse(*_paired(on, off, g))]
            time_ratio = mean["cpu_seconds"] / float(np.mean([off[s]["cpu_seconds"] for s in seeds]))
            row["time_ratio"] = time_ratio
            reasons = ([f"gain {row['gain']:+.1%} < +5%"] if not row["gain"] >= MIN_GAIN else []) + \
                [f"{g} worse" for g in worse] + ([f"time x{time_ratio:.2f} > 1.10"] if time_ratio > MAX_TIME else [])
            row["verdict"] = "pass" if not reasons else "fail: " + "; ".join(reasons)
        rows.append(row)
    return rows


def to_markdown(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    head = ("| refinement | seeds | val RankIC 1d | vs baseline (± s.e.) | gain | val RankIC 5d | val IC 1d "
            "| test RankIC 1d (diff) | CPU s | time | verdict |")
    lines = [f"### {title}", "", head, "|" + "---|" * 11]
    for r in rows:
        base = r["refinement"] == "baseline"
        against = "" if r.get("against", "baseline") == "baseline" else f" (vs {r['against']})"
        lines.append(
            f"| {r['refinement']}{against} | {r['seeds']} | {r[TARGET]:.4f} | "
            + ("" if base else f"{r['diff']:+.4f} ± {r['diff_se']:.4f}") + " | "
            + ("" if base else f"{r['gain']:+.1%}") + f" | {r['val_rank_ic_5d']:.4f} | {r['val_ic_1d']:.4f} | "
            + f"{r['test_rank_ic_1d']:.4f}" + ("" if base else f" ({r['test_diff']:+.4f})")
            + f" | {r['cpu_seconds']:.0f} | " + ("" if base else f"x{r['time_ratio']:.2f}") + " | "
            + ("" if base else r["verdict"]) + " |"
        )
    return "\n".join(lines) + "\n"


def report(args: argparse.Namespace) -> None:
    records = [json.loads(p.read_text()) for p in sorted(Path(args.results).glob("*_s*.json"))]
    text = to_markdown(judge(records), args.title)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m alphagraph.experiments.refinements", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run refinements x seeds on a built workspace")
    p.add_argument("--workspace", default=".")
    p.add_argument("--params", default="params.yaml", help="the base params, relative to the workspace")
    p.add_argument("--results", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", choices=list(CATALOG))
    p.add_argument("--set", action="append", default=[], help="budget override for every run, key=value")
    p = sub.add_parser("one", help=argparse.SUPPRESS)
    p.add_argument("--params", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("report", help="judge the results against the baseline")
    p.add_argument("--results", required=True)
    p.add_argument("--title", default="refinements")
    p.add_argument("--out")
    args = parser.parse_args(argv)
    if args.cmd == "one":
        run_one(yaml.safe_load(Path(args.params).read_text()), args.name, Path(args.out))
    else:
        (run if args.cmd == "run" else report)(args)


if __name__ == "__main__":
    run_main(main)
