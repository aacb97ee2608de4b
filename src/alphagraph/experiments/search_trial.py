"""One trial of a search: the upstream artifacts before each cutoff (the test window is never
read) and the objective that trains the model fold by fold on them and scores validation."""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from alphagraph.runtime import paths
from alphagraph.runtime.config import ConfigError, Params, params_from_dict
from alphagraph.runtime.errors import UserError
from alphagraph.runtime.io import write_csv, write_text
from alphagraph.evaluation.split import Fold, label_end
from alphagraph.experiments.search_space import METRIC, Search, _nested, set_path

STRIDE = 1000  # pruning steps: fold position * STRIDE + epoch (epochs < STRIDE)
GRAPH_GROUPS = ("train", "gat", "tgcn")  # params groups of the models that read the graph stage's edges
LABEL = re.compile(r"^(y|ret|dir|sig)_(\d+)d$")


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
    trades on the panel's last day) loses every label: :func:`alphagraph.evaluation.split.assign_split`
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
    from alphagraph.evaluation.evaluate import daily_ic

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
        from alphagraph.evaluation.walkforward import split_for

        result = train_lgbm(split_for(panel, fold, params), fold.fold, [search.horizon], params.lgbm, params.seed)
        return result.predictions, [{"best_iteration": result.best_iteration[search.horizon]}]
    if model == "core":
        from alphagraph.models.core import core_index, train_core_fold

        cfg = params.train
        index = inputs.index(cutoff, ("core", _key(cfg.relations), _key(params.graph.relations), cfg.use_edges),
                             lambda: core_index(edges, panel, params))
        out, _ = train_core_fold(panel, index, fold, params, progress=False, on_epoch_end=on_epoch_end)
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

