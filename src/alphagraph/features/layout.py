"""Index bookkeeping: rows of the (date, code) panel <-> per-stock packed chunks.

The panel arrives in date-major order. Rolling work happens on chunks of
stocks where each stock's own rows are packed along a time axis (position 0 =
its first trading day); the results are scattered back to the panel's row
order. Chunks group stocks of similar history length to limit padding; which
stocks share a chunk never changes a value (every kernel works per stock).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphagraph.features.rolling import padded_length


@dataclass
class Chunk:
    stocks: np.ndarray  # stock ids in this chunk (consecutive)
    lens: np.ndarray  # rows per stock
    tp: int  # padded time length (multiple of the block size)
    src: np.ndarray  # (n * tp,) panel row that fills each grid cell (last row repeated as padding)
    out_rows: np.ndarray  # panel rows of this chunk, ascending
    out_cells: np.ndarray  # grid cell (flat index) of each of out_rows
    out_pos: np.ndarray  # position within its stock of each of out_rows
    offset: int = 0  # start of this chunk's rows in chunk-major order

    def __post_init__(self) -> None:
        self._before: dict[int, np.ndarray] = {}

    def rows_before(self, lead: int) -> np.ndarray:
        """Indices (into out_rows) of the rows whose position within their stock is < lead."""
        idx = self._before.get(lead)
        if idx is None:
            idx = self._before[lead] = np.flatnonzero(self.out_pos < lead)
        return idx


def _nondecreasing(a: np.ndarray) -> bool:
    return bool(len(a) < 2 or (a[1:] >= a[:-1]).all())


def _small_int(a: np.ndarray, bound: int) -> np.ndarray:
    """``a`` as int16 when it fits (numpy's stable argsort is then a radix sort)."""
    return a.astype(np.int16 if bound < 2**15 else np.int32)


class Layout:
    """Stock ids, positions within stock and chunking of a long panel."""

    def __init__(self, date_key: np.ndarray, stock: np.ndarray, n_stocks: int, block: int, cells_per_chunk: int):
        n = self.n_rows = len(stock)
        self.n_stocks = n_stocks
        self.block = block
        if _nondecreasing(date_key):  # the usual (date, code) order: a stable sort by stock suffices
            order = np.argsort(_small_int(stock, n_stocks), kind="stable")
        else:
            order = np.lexsort((date_key, stock))
        s_sorted = stock[order]
        d_sorted = date_key[order]
        dup = (s_sorted[1:] == s_sorted[:-1]) & (d_sorted[1:] == d_sorted[:-1])
        if dup.any():
            raise ValueError("prices: (date, code) is not unique")
        lens = np.bincount(stock, minlength=n_stocks).astype(np.int64)
        starts = np.zeros(n_stocks, dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        pos = np.empty(n, dtype=np.int64)
        pos[order] = np.arange(n, dtype=np.int64) - np.repeat(starts, lens)
        self.order, self.lens, self.starts = order, lens, starts
        # previous own row of every panel row (-1 for a stock's first row)
        prev_sorted = np.arange(-1, n - 1, dtype=np.int64)
        prev_sorted[starts[lens > 0]] = -1
        prev = np.where(prev_sorted >= 0, order[np.maximum(prev_sorted, 0)], -1)
        self.prev = np.empty(n, dtype=np.int64)
        self.prev[order] = prev

        # chunks of consecutive stock ids: a chunk's rows of one date are then neighbours in
        # the panel, and chunk-major order (chunk by chunk, rows ascending) is one stable sort
        tp_all = padded_length(int(lens.max()) if n else 1, block)
        per_chunk = max(1, cells_per_chunk // tp_all)
        chunk_of_stock = np.arange(n_stocks) // per_chunk
        n_chunks = int(chunk_of_stock[-1]) + 1 if n_stocks else 0
        by_chunk = np.argsort(_small_int(chunk_of_stock[stock], n_chunks), kind="stable")
        self.gather_index = np.empty(n, dtype=np.int64)  # panel row -> chunk-major position
        self.gather_index[by_chunk] = np.arange(n, dtype=np.int64)
        self.chunks = []
        off = 0
        for c in range(n_chunks):
            stocks = np.arange(c * per_chunk, min((c + 1) * per_chunk, n_stocks))
            clens = lens[stocks]
            tp = padded_length(int(clens.max()), block)
            t = np.arange(tp, dtype=np.int64)
            src = order[(starts[stocks][:, None] + np.minimum(t[None, :], clens[:, None] - 1)).ravel()]
            rows = by_chunk[off : off + int(clens.sum())]
            rpos = pos[rows]
            cells = (stock[rows] - stocks[0]) * tp + rpos
            self.chunks.append(Chunk(stocks, clens, tp, src, rows, cells, rpos, off))
            off += len(rows)
