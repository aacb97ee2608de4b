"""Per-day graphs for models: the day's panel rows as nodes, the snapshot's edges.

:class:`GraphIndex` indexes the edges frame once per snapshot (integer code ids,
weights, relation ids, sorted by snapshot then relation) and the panel once per
date (row ranges). A day's graph is then a slice of the panel rows plus the
snapshot's edges mapped to that day's row positions with a vectorized
``searchsorted``; many days are mapped in one pass.

Memory: nothing is built for all days at once. A batch maps only its own
days' edges, and node inputs are gathered from the panel's columns for the
batch's rows only (:meth:`GraphIndex.gather`), so a batch costs memory in
proportion to its rows and edges, not to the panel. ``mapped_days`` counts the
day graphs built so far (a test checks that a batch builds only its own).
:meth:`GraphIndex.features` still materializes a whole column set, for
callers that want it.

Days before the first snapshot that has edges get graphs with no edges (the
edges frame cannot record an empty snapshot, and early days have no history).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch_geometric.data import Batch, Data, HeteroData

from alphagraph.graph.build import RELATIONS

NODE = "stock"
DateLike = dt.date | np.datetime64 | str


@dataclass(frozen=True)
class _DayEdges:
    """Mapped edges of several days, concatenated day after day."""

    edge: np.ndarray  # index into the snapshot-sorted edge arrays
    src: np.ndarray  # node position within its day
    dst: np.ndarray
    per_day: np.ndarray  # number of edges of each day


GATHER_COLUMNS = 32  # columns per block of GraphIndex.gather


class GraphIndex:
    """Fast batched access to per-day graphs built from ``edges`` and a panel."""

    def __init__(self, edges: pl.DataFrame, panel: pl.DataFrame, relations: list[str] | None = None) -> None:
        self.relations: list[str] = _relation_order(edges, relations)
        # Unique per column first: concatenating the full columns would copy every code string.
        codes = pl.concat([panel["code"].unique(), edges["src"].unique(), edges["dst"].unique()]).unique().sort()
        self._n_codes = codes.len()
        self._index_panel(panel, codes)
        self._index_edges(edges, codes)
        self._features: dict[tuple[str, ...], torch.Tensor] = {}
        self._views: dict[str, np.ndarray | None] = {}
        self._code_str_cache: pl.Series | None = None
        self.mapped_days = 0  # day graphs built so far (edges mapped), over all batches

    # ------------------------------------------------------------- indexing

    def _index_panel(self, panel: pl.DataFrame, codes: pl.Series) -> None:
        """Row ranges per date; rows keep the panel's order within a date."""
        self._panel = panel
        day = panel["date"].to_numpy().astype("datetime64[D]")
        self._order = np.argsort(day, kind="stable")  # identity for a (date, code)-sorted panel
        day = day[self._order]
        self.dates: np.ndarray = np.unique(day)
        self._day_start = np.r_[np.searchsorted(day, self.dates), day.size]
        code_id = panel["code"].cast(pl.Enum(codes)).to_physical().to_numpy().astype(np.int64)
        self._code_id = code_id[self._order]
        self._identity_order = bool((self._order == np.arange(self._order.size)).all())

    @property
    def _code_str(self) -> pl.Series:
        """Codes in date-grouped row order (built on first use: only graphs with ``code`` need it)."""
        if self._code_str_cache is None:
            self._code_str_cache = self._panel["code"] if self._identity_order else self._panel["code"].gather(self._order)
        return self._code_str_cache

    def _index_edges(self, edges: pl.DataFrame, codes: pl.Series) -> None:
        """Edge arrays sorted by (snapshot, relation id, src, dst) with per-snapshot offsets."""
        rel_ids = pl.DataFrame(
            {"relation": self.relations, "rel": list(range(len(self.relations)))},
            schema={"relation": pl.Utf8, "rel": pl.Int64},
        )
        e = (
            edges.join(rel_ids, on="relation", how="inner")
            .sort("snapshot", "rel", "src", "dst")
            .select(
                pl.col("snapshot"),
                pl.col("rel"),
                pl.col("src").cast(pl.Enum(codes)).to_physical().cast(pl.Int64),
                pl.col("dst").cast(pl.Enum(codes)).to_physical().cast(pl.Int64),
                pl.col("weight").cast(pl.Float32),
                pl.col("sign").cast(pl.Float32),
            )
        )
        snap = e["snapshot"].to_numpy().astype("datetime64[D]")
        self.snapshots: np.ndarray = np.unique(snap)
        self._snap_start = np.r_[np.searchsorted(snap, self.snapshots), snap.size]
        self._src = e["src"].to_numpy()
        self._dst = e["dst"].to_numpy()
        self._rel = e["rel"].to_numpy()
        self._weight = torch.from_numpy(e["weight"].to_numpy().copy())
        self._sign = torch.from_numpy(e["sign"].to_numpy().copy())
        # Snapshot used by each panel date: the latest s <= date, -1 when none yet.
        self._day_snap = np.searchsorted(self.snapshots, self.dates, side="right") - 1

    # --------------------------------------------------------------- lookups

    def snapshot_for(self, date: DateLike) -> dt.date:
        """The latest snapshot dated <= ``date`` (KeyError when there is none)."""
        day = _as_day(date)
        i = int(np.searchsorted(self.snapshots, day, side="right")) - 1
        if i < 0:
            first = self.snapshots[0] if self.snapshots.size else "none: the edges frame is empty"
            raise KeyError(f"no graph snapshot on or before {day} (first snapshot: {first})")
        return self.snapshots[i].item()

    def features(self, cols: Sequence[str]) -> torch.Tensor:
        """Float32 [rows, F] of ``cols`` in date-grouped row order (cached per column set).

        This holds a copy of those columns for every row of the panel; batches
        do not use it (they :meth:`gather` their own rows). Filled one column
        at a time, so building it needs no more than the result plus a column.
        """
        key = tuple(cols)
        if key not in self._features:
            values = np.empty((self._order.size, len(key)), dtype=np.float32)
            for j, c in enumerate(key):
                col = self._panel.get_column(c).cast(pl.Float32).to_numpy()
                values[:, j] = col if self._identity_order else col[self._order]
            self._features[key] = torch.from_numpy(values)
        return self._features[key]

    def gather(self, positions: np.ndarray, cols: Sequence[str]) -> torch.Tensor:
        """Float32 [len(positions), F] of ``cols`` at :meth:`features` ``positions`` (nulls as NaN), read from the panel.

        The same values as ``features(cols)[positions]``, without holding the
        whole matrix: only the requested rows are copied.
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        key = tuple(cols)
        if key in self._features:  # already materialized by a caller: index it
            return self._features[key][torch.from_numpy(positions)]
        out = np.empty((positions.size, len(key)), dtype=np.float32)
        if positions.size and key:
            rows = positions if self._identity_order else self._order[positions]
            views = [self._column_view(c) for c in key]
            slow = [c for c, v in zip(key, views) if v is None]
            part = self._panel.select(pl.col(c).gather(pl.Series(rows)) for c in slow) if slow else None
            # GATHER_COLUMNS columns at a time into a [columns, rows] block (contiguous writes), then into
            # the output in one transposing copy: writing each column straight into the row-major output
            # strides across the cache (3x slower); the block keeps the extra memory small.
            block = np.empty((min(GATHER_COLUMNS, len(key)), positions.size), dtype=np.float32)
            for lo in range(0, len(key), GATHER_COLUMNS):
                names, chunk = key[lo:lo + GATHER_COLUMNS], views[lo:lo + GATHER_COLUMNS]
                for j, (c, view) in enumerate(zip(names, chunk)):
                    if view is not None:
                        np.take(view, rows, out=block[j], mode="clip")  # rows are in range: clip skips a buffer
                    else:
                        block[j] = part.get_column(c).cast(pl.Float32).to_numpy()
                out[:, lo:lo + len(names)] = block[: len(names)].T
        return torch.from_numpy(out)

    def _column_view(self, col: str) -> np.ndarray | None:
        """A zero-copy float32 numpy view of a panel column (None when the column is in several chunks,
        has nulls or another dtype: then :meth:`gather` reads it through polars). Reading a batch's rows
        from views is a numpy take per column, several times faster than a polars gather, at no memory cost;
        the model stage reads the panel in one chunk (``rechunk``) for it."""
        if col not in self._views:
            series = self._panel.get_column(col)
            ok = series.dtype == pl.Float32 and series.n_chunks() == 1 and series.null_count() == 0
            self._views[col] = series.to_numpy(allow_copy=False) if ok else None
        return self._views[col]

    def _day_index(self, dates: Sequence[DateLike] | DateLike) -> np.ndarray:
        """Positions of ``dates`` in the panel's date list (KeyError for unknown dates)."""
        days = _as_days(dates)
        pos = np.searchsorted(self.dates, days)
        found = pos < self.dates.size
        found[found] = self.dates[pos[found]] == days[found]
        if not found.all():
            raise KeyError(f"date {days[~found][0]} is not in the panel")
        return pos

    # ------------------------------------------------- per-stock histories

    @property
    def n_codes(self) -> int:
        """Number of distinct codes (ids 0 .. n_codes-1 over panel and edges, sorted by code)."""
        return self._n_codes

    def positions(self, rows: np.ndarray | torch.Tensor) -> np.ndarray:
        """Positions in :meth:`features` order of panel ``rows`` (the inverse of ``batch.row``)."""
        if not hasattr(self, "_position_of_row"):
            inv = np.empty_like(self._order)
            inv[self._order] = np.arange(self._order.size)
            self._position_of_row = inv
        return self._position_of_row[np.asarray(rows)]

    def position_grid(self) -> np.ndarray:
        """Int64 [n_dates, n_codes]: the :meth:`features` position of (date, code), -1 where absent."""
        grid = np.full((self.dates.size, self._n_codes), -1, dtype=np.int64)
        day = np.repeat(np.arange(self.dates.size), np.diff(self._day_start))
        grid[day, self._code_id] = np.arange(self._code_id.size)
        return grid

    def day_and_code(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(date position, code id) of :meth:`features` positions."""
        day = np.searchsorted(self._day_start, positions, side="right") - 1
        return day, self._code_id[positions]

    def snapshot_of(self, day_positions: np.ndarray) -> np.ndarray:
        """Snapshot position used by each date position (-1 before the first snapshot)."""
        return self._day_snap[day_positions]

    def snapshot_graph(self, snapshot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One snapshot's edges in code-id space: (src, dst, relation id)."""
        part = slice(self._snap_start[snapshot], self._snap_start[snapshot + 1])
        return self._src[part], self._dst[part], self._rel[part]

    # ---------------------------------------------------------------- graphs

    def hetero(self, date: DateLike, feature_cols: Sequence[str], label_cols: Sequence[str] = ()) -> HeteroData:
        """One day as a HeteroData: node type "stock", one edge type per relation (never omitted)."""
        days = self._day_index(date)
        d, mapped = int(days[0]), self._map_edges(days)
        lo, hi = self._day_start[d], self._day_start[d + 1]
        data = HeteroData()
        self._fill_nodes(data[NODE], lo, hi, feature_cols, label_cols)
        data.date = self.dates[d].item()
        # Edges of one day share a snapshot, so they are sorted by relation id.
        bounds = np.searchsorted(self._rel[mapped.edge], np.arange(len(self.relations) + 1))
        for r, name in enumerate(self.relations):
            part = slice(bounds[r], bounds[r + 1])
            store = data[NODE, name, NODE]
            store.edge_index = torch.from_numpy(np.stack([mapped.src[part], mapped.dst[part]]))
            edge = mapped.edge[part]
            store.edge_attr = torch.stack([self._weight[edge], self._sign[edge]], dim=1)
        return data

    def homogeneous(self, date: DateLike, feature_cols: Sequence[str], label_cols: Sequence[str] = ()) -> Data:
        """One day, all relations merged; edge_attr = (weight, sign, one-hot relation)."""
        return self._homogeneous_days(self._day_index(date), feature_cols, label_cols)[0]

    def batch(
        self, dates: Sequence[DateLike], feature_cols: Sequence[str], label_cols: Sequence[str] = (), codes: bool = True
    ) -> Batch:
        """Many days as one PyG Batch of homogeneous graphs (edges mapped in one pass).

        ``codes=False`` leaves out ``code`` (python strings per node: slow to build and collate).
        """
        days = self._day_index(dates)
        if days.size == 0:
            raise ValueError("batch() needs at least one date")
        return Batch.from_data_list(self._homogeneous_days(days, feature_cols, label_cols, codes))

    def _homogeneous_days(
        self, days: np.ndarray, feature_cols: Sequence[str], label_cols: Sequence[str], codes: bool = True
    ) -> list[Data]:
        mapped = self._map_edges(days)
        edge = torch.from_numpy(mapped.edge)
        edge_type = torch.from_numpy(self._rel[mapped.edge])
        one_hot = torch.nn.functional.one_hot(edge_type, len(self.relations)).to(torch.float32)
        edge_attr = torch.cat([self._weight[edge, None], self._sign[edge, None], one_hot], dim=1)
        edge_index = torch.from_numpy(np.stack([mapped.src, mapped.dst]))
        bounds = np.r_[0, np.cumsum(mapped.per_day)]
        # Node inputs of every day of the batch in one read of the panel (only these rows).
        positions, _, _ = _ranges(self._day_start[days], self._day_start[days + 1])
        x = self.gather(positions, feature_cols)
        y = self.gather(positions, label_cols) if label_cols else None
        node_bounds = np.r_[0, np.cumsum(self._day_start[days + 1] - self._day_start[days])]
        graphs = []
        for b, d in enumerate(days):  # slices of the precomputed tensors only
            lo, hi = self._day_start[d], self._day_start[d + 1]
            part = slice(bounds[b], bounds[b + 1])
            nodes = slice(node_bounds[b], node_bounds[b + 1])
            data = Data(edge_index=edge_index[:, part], edge_attr=edge_attr[part], edge_type=edge_type[part])
            data.x = x[nodes]
            if y is not None:
                data.y = y[nodes]
            self._fill_ids(data, lo, hi, codes)
            data.date = self.dates[d].item()
            graphs.append(data)
        return graphs

    def _fill_nodes(self, store, lo: int, hi: int, feature_cols: Sequence[str], label_cols: Sequence[str]) -> None:
        """x, optional y, codes and panel row numbers of one day's nodes."""
        positions = np.arange(lo, hi)
        store.x = self.gather(positions, feature_cols)
        if label_cols:
            store.y = self.gather(positions, label_cols)
        self._fill_ids(store, lo, hi, True)

    def _fill_ids(self, store, lo: int, hi: int, codes: bool) -> None:
        """Codes (optional) and panel row numbers of one day's nodes."""
        if codes:
            store.code = self._code_str[lo:hi].to_list()
        store.row = torch.from_numpy(self._order[lo:hi])  # panel row of each node, to write predictions back
        store.num_nodes = int(hi - lo)

    # ---------------------------------------------------------- edge mapping

    def _map_edges(self, days: np.ndarray) -> _DayEdges:
        """Snapshot edges of each day mapped to the day's node positions, all days at once.

        Edges whose endpoints do not trade that day are dropped.
        """
        self.mapped_days += int(days.size)
        snap = self._day_snap[days]
        has = snap >= 0
        first = np.where(has, self._snap_start[np.maximum(snap, 0)], 0)
        last = np.where(has, self._snap_start[np.maximum(snap, 0) + 1], 0)
        edge, day_of_edge, _ = _ranges(first, last)
        rows, day_of_node, local = _ranges(self._day_start[days], self._day_start[days + 1])
        # A node's key is (batch day, code id): one sorted array serves every day.
        node_key = day_of_node * self._n_codes + self._code_id[rows]
        order = np.argsort(node_key, kind="stable")
        sorted_key = node_key[order]
        src, src_ok = _lookup(sorted_key, day_of_edge * self._n_codes + self._src[edge])
        dst, dst_ok = _lookup(sorted_key, day_of_edge * self._n_codes + self._dst[edge])
        keep = src_ok & dst_ok
        return _DayEdges(
            edge=edge[keep],
            src=local[order[src[keep]]],
            dst=local[order[dst[keep]]],
            per_day=np.bincount(day_of_edge[keep], minlength=days.size),
        )


def model_index(edges: pl.DataFrame, panel: pl.DataFrame, selected: list[str] | None, built: list[str], key: str) -> GraphIndex:
    """The GraphIndex of a model that uses ``selected`` relations (None: every ``built`` one).

    ``key`` names the params key in the error for a relation the graph stage did not build.
    """
    rels = list(built if selected is None else selected)
    unknown = sorted(set(rels) - set(built))
    if unknown:
        raise ValueError(f"{key}: {unknown} not built by the graph stage (graph.relations: {built})")
    return GraphIndex(edges, panel, relations=rels)


def _ranges(first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated ``arange(first[i], last[i])``, with each element's range i and offset."""
    count = (last - first).astype(np.int64)
    group = np.repeat(np.arange(count.size), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return first[group] + offset, group, offset


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in ``sorted_keys`` and whether each is present."""
    pos = np.searchsorted(sorted_keys, keys)
    pos = np.minimum(pos, max(sorted_keys.size - 1, 0))
    found = sorted_keys[pos] == keys if sorted_keys.size else np.zeros(keys.size, dtype=bool)
    return pos, found


def _relation_order(edges: pl.DataFrame, relations: list[str] | None) -> list[str]:
    """Given order, or the relations present in canonical order (then others sorted)."""
    if relations is not None:
        return list(dict.fromkeys(relations))
    present = set(edges["relation"].unique().to_list())
    return [r for r in RELATIONS if r in present] + sorted(present - set(RELATIONS))


def _as_day(date: DateLike) -> np.datetime64:
    if isinstance(date, dt.datetime):
        date = date.date()
    return np.datetime64(date, "D")


def _as_days(dates: Sequence[DateLike] | DateLike) -> np.ndarray:
    if isinstance(dates, (str, dt.date, np.datetime64)):
        dates = [dates]
    return np.array([_as_day(d) for d in dates], dtype="datetime64[D]")
