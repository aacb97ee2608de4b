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
plots from the per-fold frames; ``index()`` returns what ``zoo_index`` built, building it on
first call: with fold workers the stage itself trains nothing and needs it only if the summary
does; without the hook each frame key is one plots file,
:func:`alphagraph.train.importance.stack_folds`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl

from alphagraph.evaluation.split import Fold
from alphagraph.runtime import paths
from alphagraph.runtime.config import KINDS, Params
from alphagraph.runtime.io import read_parquet
from alphagraph.train.workers import FoldWorkers

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
    module: ModuleType, name: str, index: Callable[[], Any], frames: dict[str, list[pl.DataFrame]], params: Params
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """The metrics entries and plots files (``plots/{name}/{key}.csv``) of a model's per-fold frames
    (``index()``: the model's ``zoo_index``, built on first call)."""
    if hasattr(module, "zoo_summary"):
        return module.zoo_summary(name, index, frames, params)
    from alphagraph.train.importance import stack_folds

    return {}, {key: stack_folds(key, parts) for key, parts in frames.items() if parts}


def read_inputs(module: str) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The normalized panel (one chunk per column, for fast batch reads) and, for a graph module, the edges."""
    panel = read_parquet(paths.NORMALIZED_PANEL, contiguous=True)
    return panel, read_parquet(paths.EDGES) if module in GRAPH_MODULES else None


@dataclass(frozen=True)
class ZooSetup:
    """A fold worker's setup for one model: it reads the artifacts and builds the index once, as the stage does,
    and returns its ``train_one(fold, run_dir)``."""

    name: str
    module: str
    params: Params

    def __call__(self) -> Callable[[Fold, Path], Any]:
        module = zoo_module(self.module)
        panel, edges = read_inputs(self.module)
        index = module.zoo_index(self.name, panel, edges, self.params)
        return lambda fold, run_dir: module.train_zoo_fold(self.name, panel, index, fold, self.params, run_dir)


def fold_workers(name: str, module: str, params: Params) -> FoldWorkers | None:
    """``distributed.fold_workers`` worker processes for a torch model's folds (None: 1, or not a torch model:
    LightGBM and the ridges keep their cores busy on their own)."""
    n = params.distributed.fold_workers
    if n <= 1 or module not in TORCH_MODULES:
        return None
    return FoldWorkers(n, ZooSetup(name, module, params))
