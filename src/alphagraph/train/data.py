"""Day-batched training data for graph models: split codes per panel row, batches of days.

The training loop (:mod:`alphagraph.train.loop`) sees the data only through the
:class:`DayData` protocol: it asks for the dates of a split and for a batch of
days, and reads a few attributes of the batch. :class:`GraphDayData` is the
implementation for models on homogeneous daily graphs (the GAT baseline); a
model with other inputs (the core model's per-stock history windows) writes its
own ``DayData`` and reuses the loop unchanged.

Every stock that trades on a day is a node of that day's graph, whatever its
split: message passing always sees the full cross-section. Which nodes count
is decided per node from ``batch.split``, the fold's split code of the node's
panel row (:func:`split_codes`): the loss uses ``TRAIN`` nodes only (purged
rows are absent from :func:`alphagraph.evaluation.split.assign_split`, so they get
``NONE`` and never contribute), validation uses ``VAL`` nodes, and predictions
are written for ``VAL`` and ``TEST`` nodes.

Batches are built on demand, one call per batch of days: node inputs are
read from the panel for the batch's rows only and only the batch's days get
their edges mapped, so the memory of a batch grows with its days, not with
the panel (see :mod:`alphagraph.graph.loader`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from alphagraph.train.outputs import SPLIT_CODE



class DayData(Protocol):
    """What the training loop needs from a data source.

    ``batch(dates)`` returns an object with ``.to(device)`` whose attributes are
    (N nodes = stock-days of the batch, H horizons):

    - ``y`` float [N, H]: regression labels, NaN where the label is null;
    - ``y_dir`` float [N, H] or None: direction labels (1 up / 0 down), NaN where null;
    - ``split`` int8 [N]: the node's split code (NONE / TRAIN / VAL / TEST);
    - ``row`` int64 [N]: the node's panel row (predictions are written back by row);
    - ``batch`` int64 [N]: the node's day within the batch (0 .. num_graphs-1).

    Anything else on the batch (x, edge_index, ...) is for the model only.
    ``class_balance(split)`` counts the direction labels of the rows the
    direction head is trained on (its BCE's ``pos_weight``).
    """

    horizons: list[int]

    def dates(self, *splits: str) -> np.ndarray: ...

    def batch(self, dates: Sequence[Any]) -> Any: ...

    def class_balance(self, split: str = "train") -> ClassBalance | None: ...


def rows_per_date(data: Any) -> float | None:
    """Mean stock-days per date of ``data``'s panel (None when it has no panel or an empty one)."""
    panel = getattr(data, "panel", None)
    if panel is None or panel.height == 0:
        return None
    return panel.height / max(panel["date"].n_unique(), 1)


def dates_with(panel_dates: np.ndarray, codes: np.ndarray, *splits: str) -> np.ndarray:
    """Sorted unique days (datetime64[D]) that have at least one row of ``splits``."""
    wanted = np.isin(codes, [SPLIT_CODE[s] for s in splits])
    return np.unique(panel_dates[wanted])


@dataclass
class ClassBalance:
    positives: np.ndarray  # per horizon
    negatives: np.ndarray

    def pos_weight(self) -> np.ndarray:
        """negatives / positives per horizon (1 where a class is absent)."""
        ok = (self.positives > 0) & (self.negatives > 0)
        return np.where(ok, self.negatives / np.maximum(self.positives, 1), 1.0).astype(np.float32)


def label_balance(frame: pl.DataFrame, cols: Sequence[str], given: Sequence[str] | None = None) -> ClassBalance:
    """Counts of 1 / 0 labels per column of ``cols`` over ``frame``'s rows; nulls do not count.

    With ``given`` (one column per label column), only rows where ``given[j] == 1``
    count for ``cols[j]``: the rows a hierarchical direction head is trained on
    (``given`` = the signal labels; a null signal label does not count either).
    """
    if given is not None and len(given) != len(cols):
        raise ValueError(f"given has {len(given)} columns, cols {len(cols)}")
    if not cols:
        return ClassBalance(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    cond = [pl.lit(True) if given is None else pl.col(g) == 1 for g in (given or cols)]
    counts = frame.select(
        *[((pl.col(c) == 1) & w).sum().alias(f"pos{j}") for j, (c, w) in enumerate(zip(cols, cond))],
        *[((pl.col(c) == 0) & w).sum().alias(f"neg{j}") for j, (c, w) in enumerate(zip(cols, cond))],
    ).row(0)
    n = len(cols)
    return ClassBalance(np.array(counts[:n], dtype=np.int64), np.array(counts[n:], dtype=np.int64))


class GraphDayData:
    """Batches of daily homogeneous graphs for one fold (implements :class:`DayData`).

    ``index`` is a :class:`alphagraph.graph.loader.GraphIndex` built on ``panel``;
    ``codes`` the fold's :func:`split_codes` for the same panel. Edge attributes
    are (weight, sign, one-hot relation) as the index builds them; with
    ``use_edges=False`` every graph is returned without edges (the no-graph
    ablation: the model then sees only each node's own features).
    """

    def __init__(
        self,
        index: Any,
        panel: pl.DataFrame,
        codes: np.ndarray,
        feature_cols: Sequence[str],
        horizons: Sequence[int],
        use_edges: bool = True,
    ) -> None:
        if codes.shape[0] != panel.height:
            raise ValueError(f"split codes have {codes.shape[0]} rows, the panel {panel.height}")
        self.index = index
        self.panel = panel
        self.horizons = list(horizons)
        self.feature_cols = list(feature_cols)
        self.reg_cols = [f"y_{h}d" for h in self.horizons]
        missing = [c for c in self.reg_cols if c not in panel.columns]
        if missing:
            raise KeyError(f"panel: missing label columns {missing}")
        dirs = [f"dir_{h}d" for h in self.horizons]
        self.dir_cols = dirs if all(c in panel.columns for c in dirs) else []
        self.use_edges = use_edges
        self.codes = codes
        self._codes_t = torch.from_numpy(codes)
        self._panel_dates = panel["date"].to_numpy().astype("datetime64[D]")

    @property
    def in_dim(self) -> int:
        return len(self.feature_cols)

    @property
    def edge_dim(self) -> int:
        return 2 + len(self.index.relations)

    def dates(self, *splits: str) -> np.ndarray:
        return dates_with(self._panel_dates, self.codes, *splits)

    def class_balance(self, split: str = "train") -> ClassBalance | None:
        """Up / down label counts of ``split`` rows per horizon (None without dir_* columns).

        Every row counts: a model here has no signal head, so its direction
        head is trained on all rows.
        """
        if not self.dir_cols:
            return None
        return self._balance(self.dir_cols, split)

    def _balance(self, cols: Sequence[str], split: str, given: Sequence[str] | None = None) -> ClassBalance:
        # Only the label columns are filtered: filtering the whole panel would copy every feature of the split's rows.
        needed = list(dict.fromkeys([*cols, *(given or [])]))
        rows = self.panel.select(needed).filter(pl.Series(self.codes == SPLIT_CODE[split]))
        return label_balance(rows, cols, given)

    def batch(self, dates: Sequence[Any]) -> Any:
        # No ``code`` strings: slow to build, collate and move; ``row`` identifies the node.
        b = self.index.batch(list(dates), self.feature_cols, self.reg_cols + self.dir_cols, codes=False)
        h = len(self.horizons)
        labels = b.y
        b.y = labels[:, :h]
        b.y_dir = labels[:, h:] if self.dir_cols else None
        b.split = self._codes_t[b.row]
        if not self.use_edges:
            b.edge_index = b.edge_index[:, :0]
            b.edge_attr = b.edge_attr[:0]
            b.edge_type = b.edge_type[:0]
        return b
