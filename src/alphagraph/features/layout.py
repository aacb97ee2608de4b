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
    stocks: np.ndarray  # stock ids in this chunk
    lens: np.ndarray  # rows per stock
    tp: int  # padded time length (multiple of the block size)
    src: np.ndarray  # (n * tp,) panel row that fills each grid cell (last row repeated as padding)
    out_rows: np.ndarray  # panel rows of this chunk, ascending
    out_cells: np.ndarray  # grid cell (flat index) of each of out_rows


class Layout:
    """Stock ids, positions within stock and chunking of a long panel."""

    def __init__(self, date_key: np.ndarray, stock: np.ndarray, n_stocks: int, block: int, cells_per_chunk: int):
        self.n_rows = len(stock)
        self.n_stocks = n_stocks
        self.block = block
        order = np.lexsort((date_key, stock))  # stock-major, dates ascending
        s_sorted = stock[order]
        d_sorted = date_key[order]
        dup = (s_sorted[1:] == s_sorted[:-1]) & (d_sorted[1:] == d_sorted[:-1])
        if dup.any():
            raise ValueError("prices: (date, code) is not unique")
        lens = np.bincount(stock, minlength=n_stocks).astype(np.int64)
        starts = np.zeros(n_stocks, dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        pos_sorted = np.arange(self.n_rows, dtype=np.int64) - np.repeat(starts, lens)
        self.pos = np.empty(self.n_rows, dtype=np.int64)
        self.pos[order] = pos_sorted
        self.order, self.lens, self.starts = order, lens, starts
        # previous own row of every panel row (-1 for a stock's first row)
        prev_sorted = np.arange(-1, self.n_rows - 1, dtype=np.int64)
        prev_sorted[starts[lens > 0]] = -1
        prev = np.where(prev_sorted >= 0, order[np.maximum(prev_sorted, 0)], -1)
        self.prev = np.empty(self.n_rows, dtype=np.int64)
        self.prev[order] = prev
        self.chunks = self._make_chunks(cells_per_chunk)

    def _make_chunks(self, cells_per_chunk: int) -> list[Chunk]:
        # Consecutive stock ids, so that a chunk's rows of one date are contiguous in the
        # panel (date-major, code-sorted): writing results back stays cache friendly.
        live = np.nonzero(self.lens > 0)[0]
        tp_all = padded_length(int(self.lens.max()), self.block) if len(live) else self.block
        n = max(1, cells_per_chunk // tp_all)
        chunks = []
        for i in range(0, len(live), n):
            stocks = live[i : i + n]
            tp = padded_length(int(self.lens[stocks].max()), self.block)
            chunks.append(self._chunk(stocks, tp))
        return chunks

    def _chunk(self, stocks: np.ndarray, tp: int) -> Chunk:
        lens = self.lens[stocks]
        starts = self.starts[stocks]
        t = np.arange(tp, dtype=np.int64)
        src_sorted = starts[:, None] + np.minimum(t[None, :], lens[:, None] - 1)
        src = self.order[src_sorted.ravel()]
        local = np.repeat(np.arange(len(stocks), dtype=np.int64), lens)
        pos = np.arange(int(lens.sum()), dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
        rows = self.order[np.repeat(starts, lens) + pos]
        cells = local * tp + pos
        perm = np.argsort(rows, kind="stable")
        return Chunk(stocks, lens, tp, src, rows[perm], cells[perm])
