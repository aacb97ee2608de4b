"""The model stage's registry: which module trains which model, and what the stage asks of a module.

A model is one entry ``name: module`` of ``zoo.models`` in params.yaml; dvc.yaml's
``model`` stage runs once per entry (``foreach``), and ``alphagraph.models.{module}``
(:data:`alphagraph.runtime.config.KINDS` lists the names each trains) provides:

- ``zoo_index(name, panel, edges, params)``: what every fold shares, built once;
- ``train_zoo_fold(name, panel, index, fold, params, run_dir)``: a
  :class:`~alphagraph.train.fold.FoldOutput` and named per-fold frames (files it
  writes into ``run_dir`` become ``models/{name}/fold{k}/``);

and optionally ``zoo_inputs(name, params, folds)`` (more files the run's resume
key reads) and ``zoo_summary(name, index, frames, params)`` (metrics entries and
plots from the per-fold frames; without it each frame key is one plots file,
:func:`alphagraph.train.importance.stack_folds`).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from alphagraph.evaluation.split import Fold
from alphagraph.runtime import paths
from alphagraph.runtime.config import KINDS, Params

# Modules whose models read the graph stage's edges.
GRAPH_MODULES = ("gat", "core", "tgcn", "linear")
# Modules whose models read the raw closes (linear_graph's relational features: neighbours' returns).
PRICE_MODULES = ("linear",)
# Modules that train with torch: the stage relaunches under torchrun with distributed.nproc_per_node > 1.
TORCH_MODULES = ("gat", "core", "temporal", "tgcn")
# The params group of a module, where it is not the module's name.
GROUPS = {"core": "train"}


def zoo_module(module: str) -> ModuleType:
    """``alphagraph.models.{module}``, imported on demand (torch is heavy)."""
    if module not in KINDS:
        raise ValueError(f"unknown zoo module {module!r}; known: {', '.join(KINDS)}")
    return importlib.import_module(f"alphagraph.models.{module}")


def params_group(params: Params, module: str) -> Any:
    """The module's params group (its training loop's refit settings live there)."""
    return getattr(params, GROUPS.get(module, module))


def stage_inputs(module: ModuleType, module_name: str, name: str, params: Params, folds: Sequence[Fold]) -> list[Path]:
    """The files a model's run reads: its resume key (a change restarts the work folder)."""
    inputs = [paths.NORMALIZED_PANEL, paths.FOLDS]
    inputs += [paths.EDGES] * (module_name in GRAPH_MODULES) + [paths.PRICES] * (module_name in PRICE_MODULES)
    if hasattr(module, "zoo_inputs"):
        inputs += module.zoo_inputs(name, params, folds)
    return inputs


def summarize(
    module: ModuleType, name: str, index: Any, frames: dict[str, list[pl.DataFrame]], params: Params
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """The metrics entries and plots files (``plots/{name}/{key}.csv``) of a model's per-fold frames."""
    if hasattr(module, "zoo_summary"):
        return module.zoo_summary(name, index, frames, params)
    from alphagraph.train.importance import stack_folds

    return {}, {key: stack_folds(key, parts) for key, parts in frames.items() if parts}
