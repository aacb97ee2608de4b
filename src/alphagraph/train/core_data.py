"""Day batches for the core model: daily graphs plus each stock's feature history and snapshot structure.

On top of :class:`~alphagraph.train.data.GraphDayData`'s daily graphs (nodes =
the day's stocks, edges = the snapshot's relations, ``edge_type`` per edge) a
batch carries

- ``x_seq`` [N, L, F] and ``x_mask`` [N, L]: the stock's normalized features
  on the last L panel dates up to and including the node's date, oldest
  first; days the stock did not trade (suspended, not yet listed) are masked
  and zero, never filled in. Only dates <= the node's date are read.
  With ``windows="compact"`` a batch carries the windows' distinct stock-days
  instead: ``x_rows`` [U, F] (a row of zeros first when some window has a
  masked day) and ``x_where`` [N, L] (each window day's row of ``x_rows``), so
  ``x_seq == x_rows[x_where]``; for models that transform each day on its own
  first (the temporal baselines' input projection), once per stock-day rather
  than once per window it is in.
- ``y_sig`` [N, H]: the signal labels (``sig_{h}d``), NaN where null.
- ``y_loss`` [N, H], only with ``targets`` (``train.target`` other than raw,
  :mod:`alphagraph.features.residual`): what the regression and rank losses train on
  instead of ``y``; ``y`` stays the raw label for every metric.
- ``x_wide`` [N, W], only with ``wide_inputs`` (``train.wide``): extra per-row
  inputs of the core model's linear path (the relational features), nulls as 0.
- ``loss_weight`` [N], only with ``row_weights`` (``train.regime_weighting``,
  :mod:`alphagraph.evaluation.regimes`): each node's loss weight (its date's).
- PEARL inputs, once per distinct snapshot of the batch (the days of a
  snapshot share its graph, so its positional encodings are computed once):
  ``pearl_edge_index`` (the snapshots' undirected graphs over the codes that
  have edges in them, block-diagonal), ``pearl_ptr`` (node offsets per
  snapshot), ``pearl_edge_ptr`` (edge offsets per snapshot) and
  ``pearl_index`` [N] (each node's row in those graphs, -1 when its code has
  no edge in the snapshot).

With ``sampling="neighbor"`` a batch is the ``len(fanouts)``-hop sampled
in-neighbourhood of the day's nodes that count (split code != NONE): each
node aggregates over at most ``fanouts[k]`` sampled edges at hop k. Nodes
pulled in only as neighbours get split code NONE. The sample is drawn with a
generator seeded from ``seed`` and the batch's dates, so a batch is the same
whenever it is asked for (evaluation is deterministic; training sees a fresh
sample whenever its day batches change). The sample is drawn before the
windows are built, so only the sampled nodes' windows are read.

Memory: a batch reads the windows of its own nodes from the panel (each
distinct stock-day once), never a [stocks, seq_len, features] array for all
days; snapshot graphs for PEARL are kept in a small least-recently-used cache
(``snapshot_cache`` entries), so memory grows with a batch, not with the
number of days.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import torch

from alphagraph.train.data import ClassBalance, GraphDayData
from alphagraph.train.outputs import NONE

SAMPLING = ("full", "neighbor")
WINDOWS = ("full", "compact")
NODE_ATTRS = ("x", "x_seq", "x_where", "x_mask", "y", "y_dir", "y_sig", "split", "row", "batch", "pearl_index")


class CoreDayData(GraphDayData):
    """:class:`GraphDayData` plus history windows, signal labels, PEARL inputs and optional neighbor sampling."""

    def __init__(
        self,
        index: Any,
        panel: pl.DataFrame,
        codes: np.ndarray,
        feature_cols: Sequence[str],
        horizons: Sequence[int],
        seq_len: int,
        use_edges: bool = True,
        sampling: str = "full",
        fanouts: Sequence[int] = (10, 10),
        seed: int = 0,
        snapshot_cache: int = 32,
        targets: np.ndarray | None = None,
        row_weights: np.ndarray | None = None,
        wide_inputs: np.ndarray | None = None,
        windows: str = "full",
    ) -> None:
        """``targets`` [panel rows, H], ``row_weights`` [panel rows], ``wide_inputs`` [panel rows, W]: per-row
        loss targets, weights and linear-path inputs (None = off); ``windows``: ``x_seq`` (full) or
        ``x_rows`` + ``x_where`` (compact)."""
        super().__init__(index, panel, codes, feature_cols, horizons, use_edges)
        if seq_len < 1:
            raise ValueError(f"train.seq_len must be >= 1, got {seq_len}")
        if sampling not in SAMPLING:
            raise ValueError(f"train.sampling must be one of {SAMPLING}, got {sampling!r}")
        if windows not in WINDOWS:
            raise ValueError(f"windows must be one of {WINDOWS}, got {windows!r}")
        self.windows = windows
        self.seq_len, self.sampling, self.fanouts, self.seed = seq_len, sampling, list(fanouts), seed
        sig = [f"sig_{h}d" for h in self.horizons]
        self.sig_cols = sig if all(c in panel.columns for c in sig) else []
        self._grid = torch.from_numpy(index.position_grid())
        self._snap_cache: OrderedDict[int, tuple[torch.Tensor, np.ndarray]] = OrderedDict()
        self._snap_cache_size = max(int(snapshot_cache), 1)
        shapes = [("targets", targets, (panel.height, len(self.horizons))), ("row_weights", row_weights, (panel.height,))]
        if wide_inputs is not None:
            shapes.append(("wide_inputs", wide_inputs, (panel.height, wide_inputs.shape[-1])))
        for name, arr, shape in shapes:
            if arr is not None and arr.shape != shape:
                raise ValueError(f"{name}: shape {arr.shape}, expected {shape} (panel rows{', horizons' if len(shape) > 1 else ''})")
        self._targets = None if targets is None else torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32))
        self._row_weights = None if row_weights is None else torch.from_numpy(np.ascontiguousarray(row_weights, dtype=np.float32))
        self._wide = None if wide_inputs is None else torch.from_numpy(np.nan_to_num(np.ascontiguousarray(wide_inputs, dtype=np.float32)))

    @property
    def wide_dim(self) -> int:
        """Columns of ``x_wide`` (0 without wide inputs)."""
        return 0 if self._wide is None else int(self._wide.shape[1])

    def signal_balance(self, split: str = "train") -> ClassBalance | None:
        """Signal / no-signal label counts per horizon over all ``split`` rows (None without sig_* columns).

        The signal head is trained on every node, so every row counts.
        """
        if not self.sig_cols:
            return None
        return self._balance(self.sig_cols, split)

    def class_balance(self, split: str = "train") -> ClassBalance | None:
        """Up / down label counts per horizon over the ``split`` rows the direction head is trained on.

        With signal labels the heads are hierarchical (:class:`~alphagraph.train.losses.MultiHorizonLoss`
        trains direction only where ``sig_{h}d == 1``), so only those rows count;
        the direction BCE's ``pos_weight`` then balances the classes it actually sees.
        Without signal labels, every row (as :class:`GraphDayData`).
        """
        if not self.dir_cols:
            return None
        return self._balance(self.dir_cols, split, self.sig_cols or None)

    def batch(self, dates: Sequence[Any]) -> Any:
        b = super().batch(dates)
        if self.sampling == "neighbor" and b.edge_index.size(1) > 0:
            b = self._sample(b, dates)  # first: windows and PEARL inputs are then built for the sampled nodes only
        pos = self.index.positions(b.row.numpy())
        day, code = self.index.day_and_code(pos)
        # Window of the last L panel dates, oldest first: positions on (day - L + 1 .. day, code).
        lag = torch.arange(self.seq_len - 1, -1, -1)
        wday = torch.from_numpy(day)[:, None] - lag[None, :]
        wpos = torch.where(wday >= 0, self._grid[wday.clamp_min(0), torch.from_numpy(code)[:, None]], -1)
        b.x_mask = wpos >= 0
        # Each distinct stock-day of the windows is read from the panel once (windows of a batch overlap);
        # the days without a row (-1, first in the sorted ids) read a row of zeros, so no pass masks them.
        present, where = torch.unique(wpos, return_inverse=True)
        rows = self.index.gather(present.clamp_min(0).numpy(), self.feature_cols)
        if present.numel() and int(present[0]) < 0:
            rows[0] = 0.0
        if self.windows == "compact":
            b.x_rows, b.x_where = rows, where
        else:
            b.x_seq = rows[where]
        if self.sig_cols:
            b.y_sig = self.index.gather(pos, self.sig_cols)
        if self._targets is not None:  # after sampling: b.row holds the kept nodes
            b.y_loss = self._targets[b.row]
        if self._row_weights is not None:
            b.loss_weight = self._row_weights[b.row]
        if self._wide is not None:
            b.x_wide = self._wide[b.row]
        self._add_pearl(b, day, code)
        return b

    # ------------------------------------------------------------------ PEARL

    def _snapshot(self, snap: int) -> tuple[torch.Tensor, np.ndarray]:
        """(edge_index over local ids, sorted code ids) of a snapshot's graph, in a bounded LRU cache."""
        if snap in self._snap_cache:
            self._snap_cache.move_to_end(snap)
            return self._snap_cache[snap]
        src, dst, _ = self.index.snapshot_graph(snap)
        nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
        ei = torch.from_numpy(inverse.reshape(2, -1).astype(np.int64))
        self._snap_cache[snap] = (ei, nodes)
        while len(self._snap_cache) > self._snap_cache_size:
            self._snap_cache.popitem(last=False)
        return ei, nodes

    def _add_pearl(self, b: Any, day: np.ndarray, code: np.ndarray) -> None:
        snap = self.index.snapshot_of(day)
        snaps = [int(s) for s in np.unique(snap) if s >= 0] if self.use_edges else []
        index = np.full(day.size, -1, dtype=np.int64)
        edges, node_ptr, edge_ptr = [], [0], [0]
        for s in snaps:
            ei, nodes = self._snapshot(s)
            mine = snap == s
            where = np.searchsorted(nodes, code[mine])
            found = (where < nodes.size) & (nodes[np.minimum(where, nodes.size - 1)] == code[mine])
            index[mine] = np.where(found, where + node_ptr[-1], -1)
            edges.append(ei + node_ptr[-1])
            node_ptr.append(node_ptr[-1] + nodes.size)
            edge_ptr.append(edge_ptr[-1] + ei.size(1))
        b.pearl_edge_index = torch.cat(edges, dim=1) if edges else torch.zeros(2, 0, dtype=torch.long)
        b.pearl_ptr = torch.tensor(node_ptr)
        b.pearl_edge_ptr = torch.tensor(edge_ptr)
        b.pearl_index = torch.from_numpy(index)

    # --------------------------------------------------------- neighbor sampling

    def _sample(self, b: Any, dates: Sequence[Any]) -> Any:
        from alphagraph.graph.sampler import neighbor_sampler, sample_subgraph_edges

        key = ",".join(str(np.datetime64(d, "D")) for d in dates)
        seed = zlib.crc32(f"{self.seed}:{key}".encode())
        seeds = torch.nonzero(b.split != NONE).flatten()
        sampler = neighbor_sampler(b.edge_index, b.num_nodes, self.fanouts, seed=seed)
        out = sample_subgraph_edges(sampler, seeds)
        # Keep PyG's day-contiguous node order (the losses group nodes by day).
        nodes, order = torch.sort(out.node)
        local = torch.empty_like(order)
        local[order] = torch.arange(order.numel())
        is_seed = torch.zeros(b.num_nodes, dtype=torch.bool)
        is_seed[seeds] = True
        for name in NODE_ATTRS:
            if getattr(b, name, None) is not None:
                b[name] = b[name][nodes]
        b.num_nodes = nodes.numel()
        b.split = torch.where(is_seed[nodes], b.split, torch.full_like(b.split, NONE))
        edge = out.edge
        b.edge_index = torch.stack([local[out.row], local[out.col]])
        b.edge_attr, b.edge_type = b.edge_attr[edge], b.edge_type[edge]
        return b
