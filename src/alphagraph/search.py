"""Hyperparameter search with Optuna: trials train in-process on the pipeline's cached upstream
artifacts, are scored on validation only, and are each logged as a DVC experiment.

A search file (``search.yaml``) declares the model, the objective, the sampler, the pruner and
the space (``param.path: {type: float|int|categorical, ...}``); see :func:`load_search`. Each
trial takes ``params.yaml`` with the trial's values (validated by
:func:`alphagraph.config.params_from_dict`) and trains the model fold by fold on
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
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import fcntl
import math
import os
import re
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from alphagraph import paths
from alphagraph.config import ConfigError, Params, params_from_dict, to_dict
from alphagraph.errors import UserError, run_main
from alphagraph.io import write_csv, write_json, write_text
from alphagraph.log import get_logger
from alphagraph.split import Fold, label_end, load_folds

log = get_logger("search")

SEARCHES = Path("searches")
LIVE_DIR = SEARCHES / "dvclive"  # not git-ignored: DVC refuses a dvc.yaml that git ignores
LOCK = Path(".dvc/tmp/alphagraph-search.lock")
STRIDE = 1000  # pruning steps: fold position * STRIDE + epoch (epochs < STRIDE)
UPSTREAM = ("data", "features", "normalize", "split", "graph")  # stages before the models: their artifacts are fixed
GROUPS = {"core": "train", "gat": "gat", "lgbm": "lgbm"}
ZOO_MODULES = ("temporal", "tgcn")  # zoo modules a search can train
GRAPH_GROUPS = ("train", "gat", "tgcn")  # params groups of the models that read the graph stage's edges
METRIC = re.compile(r"^(rank_ic|ic|rank_icir|icir)_(\d+)d$")
LABEL = re.compile(r"^(y|ret|dir|sig)_(\d+)d$")
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SEARCH_KEYS = ("study", "model", "objective", "direction", "trials", "sampler", "pruner", "holdout", "folds", "space")


# ------------------------------------------------------------------ search file


def tidy(value: Any) -> Any:
    """A float to 10 significant digits (0.7000000000000001 -> 0.7): what a trial trains with and
    what ``best`` prints, so the printed command reproduces the trial exactly."""
    return float(f"{value:.10g}") if isinstance(value, float) else value


@dataclass(frozen=True)
class Dim:
    """One searched param: ``float`` / ``int`` (low, high, log, step) or ``categorical`` (choices)."""

    path: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.type == "float":
            return tidy(trial.suggest_float(self.path, self.low, self.high, log=self.log, step=self.step))
        if self.type == "int":
            return trial.suggest_int(self.path, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.path, list(self.choices))

    def endpoints(self) -> list[Any]:
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class Search:
    """A validated search file."""

    study: str
    model: str
    group: str  # the params group the model reads (train for core, a zoo model's module, ...)
    objective: str
    horizon: int
    direction: str
    trials: int
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    holdout: str
    folds: tuple[int, ...] | None
    space: tuple[Dim, ...]

    def signature(self) -> dict[str, Any]:
        """What a study's trials must share (stored on the study; a resumed study must match)."""
        return {
            "model": self.model, "objective": self.objective, "direction": self.direction, "holdout": self.holdout,
            "folds": None if self.folds is None else list(self.folds),
            "space": {d.path: _plain_dim(d) for d in self.space},
        }


def _plain_dim(d: Dim) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(d).items() if k != "path" and v not in (None, (), False)}
    if "choices" in out:
        out["choices"] = list(out["choices"])
    return out


def model_group(model: str, params: Params) -> str:
    """The params group ``model`` trains with; UserError for an unknown model."""
    if model in GROUPS:
        return GROUPS[model]
    if model in params.zoo.models:
        module = params.zoo.models[model]
        if module not in ZOO_MODULES:
            raise UserError(f"search: model {model} (zoo module {module}) cannot be searched; zoo modules: {', '.join(ZOO_MODULES)}")
        return module
    known = ", ".join([*GROUPS, *params.zoo.models])
    raise UserError(f"search: model {model!r} is not core, gat, lgbm or a zoo model of params.yaml (zoo.models); known: {known}")


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """``raw[a][b][c] = value`` for ``path = "a.b.c"`` (missing groups created)."""
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"search: {path}: {key} is not a params group")
    node[leaf] = value


def _leaf(tree: dict[str, Any], path: str) -> tuple[bool, str]:
    """Whether ``path`` names a leaf of the params tree, else what is wrong."""
    node: Any = tree
    done: list[str] = []
    for key in path.split("."):
        if not isinstance(node, dict):
            return False, f"{'.'.join(done)} is a value, not a group"
        if key not in node:
            where = ".".join(done) or "the top level"
            return False, f"unknown param (keys of {where}: {', '.join(sorted(node))})"
        node, done = node[key], [*done, key]
    if isinstance(node, dict):
        return False, f"a params group, not a value (its keys: {', '.join(sorted(node))})"
    return True, ""


def _number(value: Any, where: str, integer: bool) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise UserError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    return value


def _parse_dim(path: str, spec: Any, where: str) -> Dim:
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected a mapping like {{type: float, low: 0.001, high: 0.01}}, got {spec!r}")
    kind = spec.get("type")
    allowed = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}
    if kind not in allowed:
        raise UserError(f"{where}.type: one of float, int, categorical, got {kind!r}")
    extra = sorted(set(spec) - allowed[kind])
    if extra:
        raise UserError(f"{where}: unknown key {extra[0]} for type {kind} (allowed: {', '.join(sorted(allowed[kind]))})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}.choices: expected a non-empty list")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise UserError(f"{where}.choices: only null, booleans, numbers and strings, got {bad[0]!r}")
        return Dim(path, kind, choices=tuple(choices))
    integer = kind == "int"
    for key in ("low", "high"):
        if key not in spec:
            raise UserError(f"{where}: {key} is required for type {kind}")
    low, high = _number(spec["low"], f"{where}.low", integer), _number(spec["high"], f"{where}.high", integer)
    if not low < high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    use_log = spec.get("log", False)
    if not isinstance(use_log, bool):
        raise UserError(f"{where}.log: expected true or false, got {use_log!r}")
    if use_log and low <= 0:
        raise UserError(f"{where}: log: true needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, f"{where}.step", integer)
        if step <= 0:
            raise UserError(f"{where}.step: must be > 0, got {step}")
        if use_log and (kind == "float" or step != 1):
            raise UserError(f"{where}: step and log: true cannot be combined")
    return Dim(path, kind, low=low, high=high, log=use_log, step=step)


def load_search(path: str | Path, base: dict[str, Any]) -> Search:
    """Read and validate a search file against the base params ``base`` (the parsed params.yaml)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: search file not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of {', '.join(SEARCH_KEYS)}")
    unknown = sorted(set(doc) - set(SEARCH_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]} (known keys: {', '.join(SEARCH_KEYS)})")
    params = params_from_dict(base)
    study = str(doc.get("study") or path.stem)
    if not STUDY_NAME.match(study):
        raise UserError(f"{path}: study {study!r}: letters, digits, '_', '.', '-' only (it names files and DVC experiments)")
    model = doc.get("model", "core")
    group = model_group(str(model), params)
    objective = str(doc.get("objective", "rank_ic_1d"))
    m = METRIC.match(objective)
    if not m:
        raise UserError(f"{path}: objective {objective!r}: one of rank_ic_{{h}}d, ic_{{h}}d, rank_icir_{{h}}d, icir_{{h}}d")
    horizon = int(m.group(2))
    if horizon not in params.features.horizons:
        raise UserError(f"{path}: objective {objective}: horizon {horizon} is not in features.horizons {params.features.horizons}")
    direction = doc.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise UserError(f"{path}: direction: maximize or minimize, got {direction!r}")
    trials = doc.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"{path}: trials: a positive integer, got {trials!r}")
    sampler = _options(doc.get("sampler"), f"{path}: sampler", {"tpe": {"seed", "startup_trials"}, "random": {"seed"}}, "tpe")
    pruner = _options(
        doc.get("pruner"), f"{path}: pruner",
        {"median": {"startup_trials", "warmup_steps"}, "percentile": {"startup_trials", "warmup_steps", "percentile"}, "none": set()},
        "median",
    )
    for key in ("seed", "startup_trials", "warmup_steps"):
        for opts in (sampler, pruner):
            if key in opts and opts[key] is not None and (isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < 0):
                raise UserError(f"{path}: {key}: a non-negative integer, got {opts[key]!r}")
    if "percentile" in pruner and not (isinstance(pruner["percentile"], (int, float)) and 0 < pruner["percentile"] < 100):
        raise UserError(f"{path}: pruner.percentile: a number in (0, 100), got {pruner['percentile']!r}")
    holdout = doc.get("holdout", "first_test")
    if holdout not in ("first_test", "fold"):
        raise UserError(f"{path}: holdout: first_test (no fold reads any test day) or fold (each fold stops at its own test window), got {holdout!r}")
    folds = doc.get("folds")
    if folds is not None:
        if not isinstance(folds, list) or not folds or any(isinstance(k, bool) or not isinstance(k, int) for k in folds):
            raise UserError(f"{path}: folds: null (every usable fold) or a list of fold numbers, got {folds!r}")
        folds = tuple(dict.fromkeys(folds))
    space = doc.get("space")
    if not isinstance(space, dict) or not space:
        raise UserError(f"{path}: space: a non-empty mapping of param path -> {{type: ..., ...}}")
    tree = to_dict(params)
    dims = []
    for key, spec in space.items():
        key = str(key)
        where = f"{path}: space.{key}"
        top = key.split(".")[0]
        if top in UPSTREAM:
            raise UserError(
                f"{where}: {top} is read by an upstream stage (data, features, normalize, split and graph build the"
                " artifacts every trial trains on), so it cannot be searched in-process; grid it as pipeline"
                f" experiments instead: dvc exp run --queue -S '{key}=A,B,C' && dvc queue start"
            )
        ok, why = _leaf(tree, key)
        if not ok:
            raise UserError(f"{where}: {why}")
        if top != group:
            raise UserError(f"{where}: model {model} does not read {top}.* (its params group is {group}.*)")
        dim = _parse_dim(key, spec, where)
        for value in dim.endpoints():  # each bound / choice must be a valid value of the param
            raw = copy.deepcopy(base)
            set_path(raw, key, value)
            try:
                params_from_dict(raw, source="params.yaml")
            except ConfigError as exc:
                raise UserError(f"{where}: value {value!r} is not valid: {exc}") from None
        dims.append(dim)
    return Search(study, str(model), group, objective, horizon, direction, trials, sampler, pruner, holdout, folds, tuple(dims))


def _options(spec: Any, where: str, kinds: dict[str, set[str]], default: str) -> dict[str, Any]:
    spec = {"type": default} if spec is None else spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or spec.get("type", default) not in kinds:
        raise UserError(f"{where}: type one of {', '.join(kinds)}, got {spec!r}")
    kind = spec.get("type", default)
    extra = sorted(set(spec) - kinds[kind] - {"type"})
    if extra:
        raise UserError(f"{where}: unknown key {extra[0]} for {kind} (allowed: {', '.join(sorted(kinds[kind])) or 'none'})")
    return {**spec, "type": kind}


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


# ------------------------------------------------------------------ data before the cutoff


def search_folds(search: Search, folds: Sequence[Fold]) -> list[tuple[Fold, dt.date]]:
    """``(fold, cutoff)`` per searched fold: training data are the rows dated before the cutoff."""
    if not folds:
        raise UserError(f"{paths.FOLDS}: no folds")
    first = min(f.test[0] for f in folds)
    by_number = {f.fold: f for f in folds}
    wanted = list(search.folds) if search.folds is not None else sorted(by_number)
    missing = [k for k in wanted if k not in by_number]
    if missing:
        raise UserError(f"search: folds {missing} are not in {paths.FOLDS} (folds: {sorted(by_number)})")
    out = []
    for k in wanted:
        fold = by_number[k]
        cutoff = first if search.holdout == "first_test" else fold.test[0]
        if fold.val[1] >= cutoff:
            if search.folds is not None:
                raise UserError(
                    f"search: fold {k}'s validation window ends {fold.val[1]}, not before the first test day {cutoff}"
                    " (holdout: first_test); leave it out of folds, or use holdout: fold"
                )
            continue
        out.append((fold, cutoff))
    if not out:
        raise UserError(
            f"search: no fold has its validation window before the first test day {first} (holdout: first_test);"
            " folds whose test blocks cover the calendar (split.scheme purged_kfold) leave no day free of"
            " test days: search on a walk-forward split"
        )
    return out


def labels_before(panel: pl.DataFrame, cutoff: dt.date, label_delay: int) -> pl.DataFrame:
    """Null every label of ``panel`` (its rows dated before ``cutoff``) that may look at or past the cutoff.

    ``{y,ret,dir,sig}_{h}d`` of a row is kept when the stock's row ``h + label_delay`` trading
    days later is in ``panel``. A row whose longest label window is not (while its stock still
    trades on the panel's last day) loses every label: :func:`alphagraph.split.assign_split`
    purges it from validation, as its window reaches the test window.
    """
    labels = {name: int(m.group(2)) + label_delay for name in panel.columns if (m := LABEL.match(name))}
    if not labels:
        return panel
    alive = pl.col("date").max().over("code") == panel["date"].max()
    reaches = label_end(max(labels.values())).is_null() & alive
    return panel.with_columns(
        pl.when(label_end(reach).is_null() | reaches).then(None).otherwise(pl.col(name)).alias(name)
        for name, reach in labels.items()
    )


class Inputs:
    """The upstream artifacts before each cutoff, read once per worker (rows after never load)."""

    def __init__(self, group: str, label_delay: int) -> None:
        self.graph = group in GRAPH_GROUPS
        self.label_delay = label_delay
        self._panels: dict[dt.date, pl.DataFrame] = {}
        self._edges: dict[dt.date, pl.DataFrame] = {}
        self._indexes: dict[tuple[Any, ...], Any] = {}

    def panel(self, cutoff: dt.date) -> pl.DataFrame:
        if cutoff not in self._panels:
            frame = pl.scan_parquet(paths.NORMALIZED_PANEL).filter(pl.col("date") < cutoff).collect()
            self._panels[cutoff] = labels_before(frame, cutoff, self.label_delay)
        return self._panels[cutoff]

    def edges(self, cutoff: dt.date) -> pl.DataFrame | None:
        if not self.graph:
            return None
        if cutoff not in self._edges:
            self._edges[cutoff] = pl.scan_parquet(paths.EDGES).filter(pl.col("snapshot") < cutoff).collect()
        return self._edges[cutoff]

    def index(self, cutoff: dt.date, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """The model's graph / window index for ``cutoff``, cached while the params it reads (``key``) repeat."""
        full = (cutoff, *key)
        if full not in self._indexes:
            self._indexes[full] = build()
        return self._indexes[full]


def _check_inputs(group: str) -> None:
    need = [paths.NORMALIZED_PANEL, paths.FOLDS] + ([paths.EDGES] if group in GRAPH_GROUPS else [])
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise UserError(
            f"search: {', '.join(missing)} missing; trials train on the pipeline's upstream artifacts:"
            " run dvc repro split graph (or dvc pull) first"
        )


# ------------------------------------------------------------------ one fold, one trial


def fold_objective(predictions: pl.DataFrame, panel: pl.DataFrame, metric: str) -> float:
    """The mean daily validation figure ``metric`` of a fold's predictions (val rows) against ``y_{h}d``."""
    from alphagraph.evaluate import daily_ic

    kind, h = METRIC.match(metric).groups()  # type: ignore[union-attr]
    pred, y = f"pred_{h}d", f"y_{h}d"
    val = predictions.filter(pl.col("split") == "val").select("date", "code", pred)
    frame = val.join(panel.select("date", "code", y), on=["date", "code"], how="left").with_columns(pl.col(y).fill_nan(None))
    series = daily_ic(frame, pred, y)["rank_ic" if kind.startswith("rank") else "ic"].to_numpy()
    if series.size == 0:
        return float("nan")
    mean = float(series.mean())
    if kind.endswith("icir"):
        std = float(series.std(ddof=1)) if series.size > 1 else float("nan")
        return mean / std if std > 0 else float("nan")
    return mean


def train_one_fold(
    search: Search, params: Params, inputs: Inputs, fold: Fold, cutoff: dt.date, on_epoch_end: Callable[[dict[str, Any]], None]
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The fold's predictions (val rows) and its per-epoch history, trained on rows before ``cutoff``."""
    from alphagraph.train.fold import epoch_callback

    panel, edges = inputs.panel(cutoff), inputs.edges(cutoff)
    model = search.model
    if model == "lgbm":
        from alphagraph.models.lgbm import train_fold as train_lgbm
        from alphagraph.walkforward import split_for

        result = train_lgbm(split_for(panel, fold, params), fold.fold, [search.horizon], params.lgbm, params.seed)
        return result.predictions, [{"best_iteration": result.best_iteration[search.horizon]}]
    if model == "core":
        from alphagraph.models.core import core_index, train_core_fold

        cfg = params.train
        index = inputs.index(cutoff, ("core", _key(cfg.relations), _key(params.graph.relations), cfg.use_edges),
                             lambda: core_index(edges, panel, params))
        out, _, _ = train_core_fold(panel, index, fold, params, progress=False, on_epoch_end=on_epoch_end)
        return out.predictions, out.result.history
    with epoch_callback(on_epoch_end):  # these trainers take no callback: train_fold finds it here
        if model == "gat":
            from alphagraph.models.gat import gat_index, train_gat_fold

            index = inputs.index(cutoff, ("gat", _key(params.gat.relations), _key(params.graph.relations)),
                                 lambda: gat_index(edges, panel, params))
            out = train_gat_fold(panel, index, fold, params, progress=False)
        elif search.group == "temporal":
            from alphagraph.models.temporal import TemporalConfig, fit_temporal_fold, temporal_index

            index = inputs.index(cutoff, ("temporal",), lambda: temporal_index(panel))
            out, _, _ = fit_temporal_fold(panel, fold, params, TemporalConfig.for_model(model, params), progress=False, index=index)
        elif search.group == "tgcn":
            from alphagraph.models.tgcn import fit_tgcn_fold, zoo_index

            index = inputs.index(cutoff, ("tgcn", _key(params.tgcn.relations), _key(params.graph.relations)),
                                 lambda: zoo_index(model, panel, edges, params))
            out, _, _ = fit_tgcn_fold(panel, index, fold, params, progress=False)
        else:  # load_search admits no other group
            raise AssertionError(search.group)
    return out.predictions, out.result.history


def _key(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def trial_raw(base: dict[str, Any], values: dict[str, Any], group: str, threads: int) -> dict[str, Any]:
    """The base params with the trial's values; the model's threads set to this worker's share of the cores."""
    raw = copy.deepcopy(base)
    if f"{group}.num_threads" not in values:
        set_path(raw, f"{group}.num_threads", threads)
    for path, value in values.items():
        set_path(raw, path, value)
    return raw


class TrialFailed(Exception):
    """A trial whose objective is undefined: recorded as FAIL, the search goes on."""


@dataclass
class Objective:
    """Optuna's objective: one trial = params -> train fold by fold -> mean validation figure."""

    search: Search
    base: dict[str, Any]
    folds: list[tuple[Fold, dt.date]]
    inputs: Inputs
    threads: int
    out_dir: Path
    maximize: bool = field(init=False)

    def __post_init__(self) -> None:
        self.maximize = self.search.direction == "maximize"

    def __call__(self, trial: Any) -> float:
        import optuna

        values = {d.path: d.suggest(trial) for d in self.search.space}
        folder = self.out_dir / f"trial-{trial.number}"
        write_text(yaml.safe_dump(_nested(values), sort_keys=False), folder / "params.yaml")
        try:
            params = params_from_dict(trial_raw(self.base, values, self.search.group, self.threads), source=f"trial {trial.number}")
        except ConfigError as exc:  # a combination of valid values can still be invalid (e.g. hidden vs heads)
            trial.set_user_attr("error", str(exc))
            raise
        history: list[dict[str, Any]] = []
        done: list[float] = []
        try:
            for position, (fold, cutoff) in enumerate(self.folds):
                reporter = self._reporter(trial, position, done, fold.fold, history)
                predictions, fold_history = train_one_fold(self.search, params, self.inputs, fold, cutoff, reporter)
                if self.search.model == "lgbm":
                    history.extend({"fold": fold.fold, **r} for r in fold_history)
                value = fold_objective(predictions, self.inputs.panel(cutoff), self.search.objective)
                if not math.isfinite(value):  # e.g. constant predictions: this trial fails, the search goes on
                    trial.set_user_attr("error", f"fold {fold.fold}: validation {self.search.objective} is undefined")
                    raise TrialFailed(trial.user_attrs["error"])
                done.append(value)
                trial.set_user_attr("folds", {str(f.fold): v for (f, _), v in zip(self.folds, done)})
                trial.report(sum(done) / len(done), (position + 1) * STRIDE)
                if position + 1 < len(self.folds) and trial.should_prune():
                    raise optuna.TrialPruned(f"after fold {fold.fold}")
        finally:
            if history:
                write_csv(pl.DataFrame(history, infer_schema_length=None), folder / "history.csv")
        return sum(done) / len(done)

    def _reporter(self, trial: Any, position: int, done: list[float], fold: int, history: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
        import optuna

        key = f"val_{self.search.objective}"
        best: list[float] = []

        def on_epoch_end(record: dict[str, Any]) -> None:
            history.append({"fold": fold, **{k: v for k, v in record.items() if isinstance(v, (int, float, type(None)))}})
            value = record.get(key)
            epoch = int(record["epoch"])
            if value is None or not math.isfinite(value) or epoch >= STRIDE:
                return
            best[:] = [value if not best else (max if self.maximize else min)(best[0], value)]
            trial.report((sum(done) + best[0]) / (len(done) + 1), position * STRIDE + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"fold {fold} epoch {epoch}")

        return on_epoch_end


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in values.items():
        set_path(out, path, value)
    return out


# ------------------------------------------------------------------ trial records


def dvc_repo_ready() -> bool:
    """A git repo with a commit and DVC initialised, here (the repo root)."""
    if not (Path(".dvc").is_dir() and Path(".git").exists()):
        return False
    done = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True, check=False)
    return done.returncode == 0


@contextmanager
def repo_lock() -> Iterator[None]:
    """One DVC experiment save at a time in this repo (git's index and DVC's lock are shared)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class TrialRecorder:
    """Optuna callback after each finished trial: ``result.json``, and a DVC experiment from ``searches/dvclive/``."""

    search: Search
    out_dir: Path
    dvc_exp: bool

    def __call__(self, study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        steps = sorted(trial.intermediate_values)
        partial = trial.intermediate_values[steps[-1]] if steps else None
        result = {
            "study": study.study_name, "trial": trial.number, "state": state, "objective": self.search.objective,
            "value": trial.value, "last_reported": partial, "folds": trial.user_attrs.get("folds", {}),
            "params": {k: tidy(v) for k, v in trial.params.items()}, "error": trial.user_attrs.get("error"),
            "seconds": None if trial.datetime_complete is None or trial.datetime_start is None
            else round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1),
        }
        write_json(result, self.out_dir / f"trial-{trial.number}" / "result.json")
        if self.dvc_exp:
            try:
                self._save_experiment(study.study_name, trial, result)
            except Exception as exc:  # noqa: BLE001 - a failed save must not stop the search
                log.warning("trial %d: not saved as a DVC experiment (%s: %s)", trial.number, type(exc).__name__, exc)

    def _save_experiment(self, study: str, trial: Any, result: dict[str, Any]) -> None:
        from dvc.repo import Repo
        from dvclive import Live

        name = f"{study}-t{trial.number}"
        with repo_lock():
            with Live(dir=str(LIVE_DIR), dvcyaml=str(LIVE_DIR / "dvc.yaml"), save_dvc_exp=False) as live:
                live.log_params(_nested(result["params"]) | {"search": {
                    "study": study, "trial": trial.number, "model": self.search.model, "state": result["state"]}})
                # validation figures only: a trial has no test figures
                live.summary[f"val_{self.search.objective}"] = result["value"]
                live.summary["val_last_reported"] = result["last_reported"]
                for k, v in result["folds"].items():
                    live.summary[f"val_fold{k}"] = v
            with Repo(".") as repo:
                # targets: commit no pipeline stage (a missing output would fail the save)
                repo.experiments.save(
                    targets=[str(LIVE_DIR / "dvc.yaml")], name=name, force=True, include_untracked=[str(LIVE_DIR)],
                    message=f"search {study} trial {trial.number} ({result['state']})",
                )
        log.info("trial %d saved as DVC experiment %s", trial.number, name)


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
            sys.executable, "-m", "alphagraph.search", "run", str(args.search), "--study", study_name,
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
    parser = argparse.ArgumentParser(prog="python -m alphagraph.search", description=__doc__.split("\n\n")[0])
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
