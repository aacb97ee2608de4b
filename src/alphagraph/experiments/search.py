"""Hyperparameter search with Optuna: trials train in-process on the pipeline's cached upstream
artifacts, are scored on validation only, and are each logged as a DVC experiment.

A search file (``search.yaml``) declares the model, the objective, the sampler, the pruner and
the space (``param.path: {type: float|int|categorical, ...}``); see :func:`load_search`. Each
trial takes ``params.yaml`` with the trial's values (validated by
:func:`alphagraph.runtime.config.params_from_dict`) and trains the model fold by fold on
``data/normalized/panel.parquet``, ``data/graph/edges.parquet`` and ``data/splits/folds.json``.

The test window is never read. Each fold trains on the rows dated before a cutoff (``holdout:
first_test``, the default: the first test window of ``folds.json``, so no fold sees any test
day; ``holdout: fold``: the fold's own test start), read with a predicate so later rows are
never loaded; every label that looks at or past the cutoff is nulled (:func:`labels_before`)
and graph snapshots dated on or after it are dropped. The folds' test ranges then hold no row.

Objective: per fold, the mean daily validation figure (``rank_ic_{h}d``, ``ic_{h}d``,
``rank_icir_{h}d``, ``icir_{h}d``) of the fold's predictions for its val rows (the model of its
selected epoch), against the ``y_{h}d`` labels; the trial's value is the mean over folds.
Pruning: after each epoch the trial reports the running objective (the mean of the finished
folds and the current fold's best value so far, from the epoch's validation record) at step
``position * STRIDE + epoch``, and at the end of fold ``position`` the mean of the finished
folds at ``(position + 1) * STRIDE``; LightGBM reports per fold only.

Parallel: ``--workers N`` runs N worker processes of this CLI on one Optuna storage
(``sqlite:///searches/{study}.db`` by default; ``journal:PATH`` for a journal file, e.g. on a
shared file system; any SQLAlchemy URL such as ``postgresql://...`` on a cluster). Several
machines run the same command with the same ``--storage``. ``--trials`` is the study's total.

Trial outputs: ``searches/{study}/trial-{n}/`` (the trial's values, per-epoch history and
result); each finished trial is also saved as a DVC experiment ``{study}-t{n}`` from
``searches/dvclive/`` (params and the validation objective), unless ``--no-dvc-exp`` or the
working directory is not a git + DVC repo. Saves are serialized by a lock under ``.dvc/tmp``.

This module runs the study (Optuna storage, sampler, pruner, workers) and the CLI; the search file is
parsed in :mod:`.search_space`, a trial trains in :mod:`.search_trial`, its records are written by
:mod:`.search_record`.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from alphagraph.runtime import paths
from alphagraph.runtime.config import ConfigError, params_from_dict, to_dict
from alphagraph.runtime.errors import UserError, run_main
from alphagraph.runtime.log import get_logger
from alphagraph.evaluation.split import load_folds
from alphagraph.experiments.search_record import LIVE_DIR, LOCK, SEARCHES, TrialRecorder, dvc_repo_ready, repo_lock
from alphagraph.experiments.search_space import (
    GROUPS,
    METRIC,
    SEARCH_KEYS,
    STUDY_NAME,
    UPSTREAM,
    ZOO_MODULES,
    Dim,
    Search,
    load_search,
    model_group,
    set_path,
    tidy,
)
from alphagraph.experiments.search_trial import (
    GRAPH_GROUPS,
    LABEL,
    STRIDE,
    Inputs,
    Objective,
    TrialFailed,
    _check_inputs,
    fold_objective,
    labels_before,
    search_folds,
    train_one_fold,
    trial_raw,
)

__all__ = [
    # moved to search_space, search_trial and search_record; importable from here as before
    "GROUPS", "METRIC", "SEARCH_KEYS", "STUDY_NAME", "UPSTREAM", "ZOO_MODULES", "Dim", "Search", "load_search",
    "model_group", "set_path", "tidy",
    "GRAPH_GROUPS", "LABEL", "STRIDE", "Inputs", "Objective", "TrialFailed", "fold_objective", "labels_before",
    "search_folds", "train_one_fold", "trial_raw",
    "LIVE_DIR", "LOCK", "SEARCHES", "TrialRecorder", "dvc_repo_ready", "repo_lock",
    # the study and its CLI
    "log", "make_sampler", "make_pruner", "make_storage", "default_storage", "counted_states", "open_study",
    "enqueue_baseline", "run_worker", "cmd_run", "format_value", "best_summary", "print_summary", "cmd_best", "main",
]

log = get_logger("search")


# ------------------------------------------------------------------ study


def make_sampler(search: Search, offset: int = 0) -> Any:
    """The study's sampler; worker ``offset`` shifts the seed (equal seeds would draw equal trials)."""
    import optuna

    s = search.sampler
    seed = None if s.get("seed") is None else s["seed"] + offset
    if s["type"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: a running trial counts as a bad one, so parallel workers spread out
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.get("startup_trials", 10), constant_liar=True)


def make_pruner(search: Search) -> Any:
    import optuna

    p = search.pruner
    if p["type"] == "none":
        return optuna.pruners.NopPruner()
    kwargs = {"n_startup_trials": p.get("startup_trials", 5), "n_warmup_steps": p.get("warmup_steps", 0)}
    if p["type"] == "percentile":
        return optuna.pruners.PercentilePruner(p.get("percentile", 50.0), **kwargs)
    return optuna.pruners.MedianPruner(**kwargs)


def make_storage(url: str) -> Any:
    """``journal:PATH`` -> a journal file; else an SQLAlchemy URL (SQLite waits for its lock)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url.startswith("journal:"):
        file = Path(url.removeprefix("journal:"))
        file.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(file)))
    if "://" not in url:
        raise UserError(f"--storage {url!r}: an SQLAlchemy URL (sqlite:///searches/s.db, postgresql://...) or journal:PATH")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        db = url.split(":///", 1)[-1]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    # Heartbeats: a trial of a killed worker turns FAIL instead of RUNNING forever.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180, **kwargs)

# ------------------------------------------------------------------ CLI


def _base_params(path: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"{path}: params file not found") from None
    params_from_dict(raw, source=path)  # the base must be valid on its own
    return raw


def default_storage(study: str) -> str:
    return f"sqlite:///{SEARCHES / study}.db"


def counted_states() -> tuple[Any, ...]:
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def open_study(search: Search, storage: Any, study_name: str, offset: int = 0) -> Any:
    """Create or load the study; a study made by another search file is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage, study_name=study_name, direction=search.direction, load_if_exists=True,
        sampler=make_sampler(search, offset), pruner=make_pruner(search),
    )
    optuna.logging.set_verbosity(optuna.logging.INFO)
    stored = study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", search.signature())
    elif stored != search.signature():
        raise UserError(
            f"study {study_name} was created by another search (model, objective, direction, holdout, folds or"
            " space differ); pick a new --study name"
        )
    return study


def enqueue_baseline(study: Any, search: Search, base: dict[str, Any]) -> None:
    """Trial 0 of a new study: the base params' own values, the reference the search must beat
    (when each lies in the space; else the study starts with the sampler)."""
    tree = to_dict(params_from_dict(base))
    values: dict[str, Any] = {}
    for d in search.space:
        node: Any = tree
        for key in d.path.split("."):
            node = node[key]
        inside = node in d.choices if d.type == "categorical" else (
            isinstance(node, (int, float)) and not isinstance(node, bool) and d.low <= node <= d.high)
        if not inside:
            log.info("params.yaml's %s = %r is outside the space: no baseline trial", d.path, node)
            return
        values[d.path] = node
    study.enqueue_trial(values, user_attrs={"baseline": True})
    log.info("trial 0 is the baseline: params.yaml's own values %s", values)


def run_worker(args: argparse.Namespace, search: Search, base: dict[str, Any], study_name: str, quota: int) -> None:
    """One worker: ``quota`` trials at most, stopping when the study holds ``--trials`` finished trials."""
    import optuna

    if search.model != "lgbm":
        import torch

        torch.set_num_threads(args.threads)
    storage = make_storage(args.storage)
    study = open_study(search, storage, study_name, args.worker_offset)
    folds = search_folds(search, load_folds(paths.FOLDS))
    inputs = Inputs(search.group, params_from_dict(base).features.label_delay)
    out_dir = SEARCHES / study_name
    objective = Objective(search, base, folds, inputs, args.threads, out_dir)
    dvc_exp = not args.no_dvc_exp and dvc_repo_ready()
    callbacks = [optuna.study.MaxTrialsCallback(args.trials, states=counted_states()), TrialRecorder(search, out_dir, dvc_exp)]
    log.info(
        "worker %d: up to %d trials of study %s (%s), folds %s, %d threads%s", args.worker_offset, quota, study_name,
        search.model, [f.fold for f, _ in folds], args.threads, "" if dvc_exp else ", no DVC experiments",
    )
    study.optimize(objective, n_trials=quota, callbacks=callbacks, catch=(ConfigError, TrialFailed))
    log.info("worker %d: done", args.worker_offset)


def cmd_run(args: argparse.Namespace) -> None:
    base = _base_params(args.params)
    search = load_search(args.search, base)
    study_name = args.study or search.study
    if not STUDY_NAME.match(study_name):
        raise UserError(f"--study {study_name!r}: letters, digits, '_', '.', '-' only")
    args.storage = args.storage or default_storage(study_name)
    args.trials = args.trials or search.trials
    _check_inputs(search.group)
    search_folds(search, load_folds(paths.FOLDS))  # fail early on bad folds
    if args.workers < 1:
        raise UserError(f"--workers: at least 1, got {args.workers}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    args.threads = args.threads or max(1, cores // args.workers)
    if args.quota is not None:  # a worker spawned by _spawn: the study exists
        run_worker(args, search, base, study_name, args.quota)
        return
    study = open_study(search, make_storage(args.storage), study_name, args.worker_offset)
    if not study.get_trials(deepcopy=False):
        enqueue_baseline(study, search, base)
    finished = len(study.get_trials(deepcopy=False, states=counted_states()))
    left = args.trials - finished
    if left <= 0:
        log.info("study %s already holds %d finished trials (--trials %d)", study_name, finished, args.trials)
    elif args.workers == 1:
        run_worker(args, search, base, study_name, left)
    else:
        _spawn(args, study_name, left)
    print_summary(study_name, args.storage)


def _spawn(args: argparse.Namespace, study_name: str, left: int) -> None:
    """``--workers`` processes of this CLI on one storage, splitting the trials left between them."""
    procs = []
    for w in range(args.workers):
        quota = left // args.workers + (w < left % args.workers)
        if quota == 0:
            continue
        cmd = [
            sys.executable, "-m", "alphagraph.experiments.search", "run", str(args.search), "--study", study_name,
            "--storage", args.storage, "--trials", str(args.trials), "--workers", "1", "--quota", str(quota),
            "--threads", str(args.threads), "--worker-offset", str(args.worker_offset + w), "--params", args.params,
        ] + (["--no-dvc-exp"] if args.no_dvc_exp else [])
        procs.append(subprocess.Popen(cmd))
    try:
        codes = [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        raise
    failed = [i for i, c in enumerate(codes) if c != 0]
    if failed:
        raise UserError(f"search: worker(s) {failed} exited with {[codes[i] for i in failed]} (their messages are above)")


def format_value(value: Any) -> str:
    """A value as ``dvc exp run -S`` reads it (YAML)."""
    text = yaml.safe_dump(tidy(value), default_flow_style=True).strip()
    return text.removesuffix("...").strip()


def best_summary(study: Any) -> dict[str, Any]:
    """The best trial of ``study``: values, validation objective, per-fold values, and the command."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    sig = study.user_attrs.get("search", {})
    if not complete:
        raise UserError(f"study {study.study_name}: no complete trial yet ({', '.join(f'{v} {k}' for k, v in counts.items() if v)})")
    best = study.best_trial
    baseline = next((t for t in complete if t.user_attrs.get("baseline")), None)
    command = "dvc exp run -n " + shlex.quote(f"{study.study_name}-best") + "".join(
        " -S " + shlex.quote(f"{k}={format_value(v)}") for k, v in sorted(best.params.items())
    )
    return {
        "study": study.study_name, "model": sig.get("model"), "objective": sig.get("objective"),
        "direction": study.direction.name.lower(), "trials": {k: v for k, v in counts.items() if v},
        "best_trial": best.number, "value": best.value, "folds": best.user_attrs.get("folds", {}),
        "params": {k: tidy(v) for k, v in sorted(best.params.items())}, "command": command,
        "baseline": None if baseline is None else {"trial": baseline.number, "value": baseline.value},
    }


def print_summary(study_name: str, storage: str) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(storage))
    except KeyError:
        raise UserError(f"study {study_name} not found in {storage}") from None
    s = best_summary(study)
    counts = ", ".join(f"{v} {k}" for k, v in s["trials"].items())
    print(f"study {s['study']} ({storage}): {counts}")
    folds = ", ".join(f"fold {k} {v:.4f}" for k, v in s["folds"].items())
    print(f"best trial {s['best_trial']}: validation {s['objective']} {s['value']:.4f} ({s['direction']}; {folds})")
    for k, v in s["params"].items():
        print(f"  {k} = {format_value(v)}")
    if s["baseline"] is not None:
        print(f"baseline (params.yaml's values): trial {s['baseline']['trial']}, validation {s['objective']} {s['baseline']['value']:.4f}")
    print("the full pipeline with these values (its test figures are computed there, once):")
    print(f"  {s['command']}")
    return s


def cmd_best(args: argparse.Namespace) -> None:
    study = args.study
    if study is None:
        base = _base_params(args.params)
        study = load_search(args.search, base).study
    print_summary(study, args.storage or default_storage(study))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m alphagraph.experiments.search", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or continue) a study")
    run.add_argument("search", nargs="?", default="search.yaml", help="the search file (default search.yaml)")
    run.add_argument("--study", help="study name (default: the file's study)")
    run.add_argument("--storage", help="sqlite:///PATH, journal:PATH or an RDB URL (default sqlite:///searches/STUDY.db)")
    run.add_argument("--trials", type=int, help="total trials of the study, all workers and machines together")
    run.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    run.add_argument("--threads", type=int, help="torch / LightGBM threads per worker (default cores // workers)")
    run.add_argument("--worker-offset", type=int, default=0, help="added to the sampler seed per worker; distinct per machine")
    run.add_argument("--no-dvc-exp", action="store_true", help="trial files only, no DVC experiments")
    run.add_argument("--params", default="params.yaml", help="the base params (default params.yaml)")
    run.add_argument("--quota", type=int, help=argparse.SUPPRESS)  # a spawned worker's share
    best = sub.add_parser("best", help="the best trial and the dvc exp run command that reproduces it")
    best.add_argument("search", nargs="?", default="search.yaml", help="search file naming the study (without --study)")
    best.add_argument("--study")
    best.add_argument("--storage")
    best.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    (cmd_run if args.command == "run" else cmd_best)(args)
    if args.command == "run" and args.quota is None:
        log.info("search done in %.0f s", time.perf_counter() - started)


if __name__ == "__main__":
    run_main(main)
