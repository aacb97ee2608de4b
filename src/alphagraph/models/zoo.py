"""The model zoo: which module trains which model (kept free of torch so params checks stay light).

A zoo model is one entry ``name: module`` of ``zoo.models`` in params.yaml;
dvc.yaml's ``model`` stage runs once per entry (``foreach``), and
``alphagraph.models.{module}`` trains it with the params group ``{module}``.
Each module has ``zoo_index(name, panel, edges, params)`` and
``train_zoo_fold(name, panel, index, fold, params, run_dir)`` returning a
``FoldOutput`` and a dict of extra per-fold frames.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The model names each zoo module can train (a module trains several kinds when they share it).
KINDS: dict[str, tuple[str, ...]] = {
    "temporal": ("lstm", "gru", "alstm", "transformer"),
    "tgcn": ("tgcn",),
    "linear": ("linear", "linear_graph"),
}
# Modules whose models read the graph stage's edges.
GRAPH_MODULES = ("tgcn", "linear")
# Modules whose models read the raw closes (linear_graph's relational features: neighbours' returns).
PRICE_MODULES = ("linear",)


def zoo_module(module: str) -> ModuleType:
    """``alphagraph.models.{module}``, imported on demand (torch is heavy)."""
    if module not in KINDS:
        raise ValueError(f"unknown zoo module {module!r}; known: {', '.join(KINDS)}")
    return importlib.import_module(f"alphagraph.models.{module}")
