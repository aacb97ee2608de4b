"""Training the core model on one fold (the ridge path and the pretrained encoder included) and its model-stage hooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch import nn

from alphagraph.evaluation.split import Fold
from alphagraph.features.normalize import feature_columns
from alphagraph.models.core.attention import attention_maps
from alphagraph.models.core.data import core_fold_data, core_index, core_loss, wide_columns, wide_index
from alphagraph.models.core.model import CoreModel, core_kwargs
from alphagraph.models.core.pretrain import load_pretrained, pretrain_inputs
from alphagraph.runtime import distributed as ddp
from alphagraph.runtime import paths
from alphagraph.runtime.config import Params
from alphagraph.runtime.io import write_json
from alphagraph.train import FoldOutput, seed_everything, train_fold
from alphagraph.train.importance import fold_maps, stack_folds
from alphagraph.train.loop import loop_config


def set_ridge_path(model: CoreModel, fit: Any, features: Sequence[str], extra: Sequence[str]) -> None:
    """Load a fold's ridge solution (:class:`~alphagraph.models.linear.LinearFold`) into the frozen linear path."""
    at = {c: j for j, c in enumerate(fit.features)}
    order = torch.tensor([at[c] for c in [*features, *extra]])
    with torch.no_grad():
        for j, h in enumerate(sorted(fit.coef, key=list(fit.coef).index)):
            model.wide.weight[j] = torch.from_numpy(fit.coef[h]).to(model.wide.weight.dtype)[order]
            model.wide.bias[j] = fit.intercept[h]
        nn.init.zeros_(model.reg.weight)
        nn.init.zeros_(model.reg.bias)


def train_core_fold(
    panel: pl.DataFrame,
    index: Any,
    fold: Fold,
    params: Params,
    run_dir: str | Path | None = None,
    progress: bool | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    pretrain_dir: str | Path = paths.MODELS / "pretrain",
    wide: Any = None,
) -> tuple[FoldOutput, CoreModel]:
    """Train the core model on one fold: predictions for its val/test rows and the model.

    ``on_epoch_end`` gets each epoch's history record (the hyperparameter search prunes through it);
    ``wide``: :func:`wide_index` (built here when ``train.wide`` is on and it is not given)."""
    cfg = params.train
    wide = wide if wide is not None else wide_index(panel, params)
    data = core_fold_data(panel, index, fold, params, wide=wide)
    seed_everything(params.seed * 1000 + fold.fold)
    features = feature_columns(panel)
    model = CoreModel.from_config(cfg, features, index.relations, len(data.horizons), seed=params.seed, wide_dim=data.wide_dim)
    if cfg.wide == "ridge":  # draws no random number: the run's stream is the same as without it
        from alphagraph.models.linear import fit_linear_fold

        set_ridge_path(model, fit_linear_fold("linear_graph", wide, fold, params), features, wide_columns(wide, panel))
    if cfg.init_from == "pretrain":  # the pretrain stage's encoder; draws no random number, the run goes on as before
        kwargs = core_kwargs(cfg, features, index.relations, len(data.horizons), params.seed, data.wide_dim)
        load_pretrained(model, kwargs, fold.fold, pretrain_dir)
    loop = loop_config(cfg, params.seed, params.device, progress)
    return train_fold(model, data, core_loss(cfg, data), loop, fold.fold, run_dir, on_epoch_end=on_epoch_end), model


# ------------------------------------------------------------------ model stage hooks

MAPS = ("importance", "attention_lag", "relation_attention", "stock_attention")  # plots files, the folds stacked


@dataclass
class CoreIndex:
    """Built once for every fold: the relation graph index and the linear path's inputs (None when off)."""

    graph: Any
    wide: Any


def zoo_index(name: str, panel: pl.DataFrame, edges: pl.DataFrame | None, params: Params) -> CoreIndex:
    """The model stage's index: :func:`core_index` and :func:`wide_index`."""
    _check_kind(name)
    return CoreIndex(core_index(edges, panel, params), wide_index(panel, params, edges))


def zoo_inputs(name: str, params: Params, folds: Sequence[Fold]) -> list[Path]:
    """The raw files the training targets / weights read (only with those switches on) and the
    pretrained encoders it starts from: a change of any restarts the resume folder."""
    inputs = [paths.UNIVERSE] * (params.train.target == "sector_neutral") + [paths.PRICES] * params.train.regime_weighting
    return inputs + pretrain_inputs(params, folds)


def train_zoo_fold(
    name: str, panel: pl.DataFrame, index: CoreIndex, fold: Fold, params: Params, run_dir: str | Path | None = None
) -> tuple[FoldOutput, dict[str, pl.DataFrame]]:
    """The model stage's fold: ``model.json`` (what the export stage rebuilds the model from) in
    ``run_dir`` and the interpretability frames (the relation report among them)."""
    _check_kind(name)
    out, model = train_core_fold(panel, index.graph, fold, params, run_dir=run_dir, wide=index.wide)
    if not ddp.is_main() or run_dir is None:
        return out, {}
    features = feature_columns(panel)
    wide_dim = 0 if model.wide is None else model.wide.in_features - len(features)
    kwargs = core_kwargs(params.train, features, index.graph.relations, len(params.features.horizons), params.seed, wide_dim)
    write_json({"kwargs": kwargs, "features": features, "horizons": params.features.horizons, "fold": fold.fold}, Path(run_dir) / "model.json")
    data = core_fold_data(panel, index.graph, fold, params, wide=index.wide)
    return out, fold_maps(model, data, fold.fold, params.seed, next(model.parameters()).device, attention_maps)


def zoo_summary(
    name: str, index: Callable[[], CoreIndex], frames: dict[str, Sequence[pl.DataFrame]], params: Params
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """Per relation, the weight and neighbour attention averaged over folds and layers (metrics and
    a plot), and the attention maps and feature importance, the folds stacked."""
    relations = pl.concat(frames["relations"])
    summary = relations.group_by("relation", maintain_order=True).agg(pl.col("weight", "attention").mean())
    metrics = {
        f"{row['relation']}.{k}": None if row[k] is None else round(row[k], 6)
        for row in summary.iter_rows(named=True) for k in ("weight", "attention")
    }
    plots = {"relations": relations.with_columns(pl.col("weight", "attention").round(6))}
    plots |= {key: stack_folds(key, frames[key]) for key in MAPS if frames.get(key)}
    return {"relations": metrics}, plots


def _check_kind(name: str) -> None:
    if name != "core":
        raise ValueError(f"the core module trains core, not {name!r}")
