"""The features stage file to file, in bounded memory: :func:`build_panel_file`.

Same output as :func:`alphagraph.features.panel.build_panel` followed by a Parquet
write (same columns, rows sorted by (date, code), bit-identical values), but the
feature columns of the whole panel are never in memory at once:

1. a cheap first pass over the whole panel computes what needs every stock of a
   date: the market's daily return (for beta), the per-date and per-(date, sector)
   means of the k-row returns (relative family), each stock's sector on each row, and
   the targets (a few columns; their signal labels are per-date z-scores);
2. the per-stock features are computed for one block of stocks at a time (the same
   kernels, fed the first pass's cross-sections); each block's columns go to a
   temporary binary file beside the output, rows in the panel's final order, laid out
   by output row block (written on a background thread while the next block is
   computed; the last block, and so a panel that fits in one block, stays in memory,
   and the column buffers of a written block are reused by the next);
3. the output is assembled by blocks of rows of the final order (a block's rows
   from every stock block's file), and appended to a Parquet file that is renamed
   into place when complete (nothing half-written is left after an error; the
   temporary files are removed either way).

Peak memory: the price columns and the first pass's per-row arrays (tens of bytes a
row), plus one block of stocks' features, plus one output block. The block sizes
come from a memory target (``$ALPHAGRAPH_MEMORY_MB``, default 1 GiB).
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from alphagraph.runtime.config import FeaturesConfig
from alphagraph.features.compute import (
    PRICE_COLUMNS, BufferPool, CrossSection, _check_columns, _compute, _prefaulted, _sector_ids,
)
from alphagraph.features.extra import cross_section_means
from alphagraph.features.families import feature_families, feature_names, relative_horizons
from alphagraph.features.panel import panel_metrics
from alphagraph.features.targets import targets_by_stock
from alphagraph.runtime.io import ParquetSink, memory_target, remove_stale_temporaries

BYTES_PER_FEATURE_CELL = 10
"""Peak working bytes per feature cell while a block of stocks is computed (measured)."""
ROW_GROUP = 1 << 18


def build_panel_file(
    prices: pl.DataFrame,
    universe: pl.DataFrame,
    cfg: FeaturesConfig,
    out: str | Path,
    *,
    block_rows: int | None = None,
    n_threads: int | None = None,
) -> dict[str, Any]:
    """Write the features panel of ``prices`` to ``out`` (Parquet); return its metrics.

    ``block_rows``: about how many price rows one block of stocks (and one output
    block) holds; default from the memory target.
    """
    out = Path(out)
    _check_columns(prices)
    names = feature_names(cfg)
    n = prices.height
    if block_rows is None:
        block_rows = max(1, memory_target() // (BYTES_PER_FEATURE_CELL * max(len(names), 1)))
    prices = prices.select("date", "code", *[pl.col(c).cast(pl.Float64) for c in PRICE_COLUMNS])

    # ---- keys and the final (date, code) order
    codes = prices.get_column("code").cast(pl.Utf8).unique(maintain_order=True)
    stock = prices.get_column("code").cast(pl.Utf8).cast(pl.Enum(codes)).to_physical().to_numpy().astype(np.int64)
    perm = prices.select(pl.arg_sort_by(["date", "code"])).to_series().to_numpy().astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[perm] = np.arange(n, dtype=np.int64)

    # ---- first pass: cross-sections of the whole panel, and the targets (polars, off the GIL,
    # on a thread meanwhile: the cross-sections are mostly single-threaded numpy)
    own = _own_rows(prices, stock)
    with ThreadPoolExecutor(max_workers=1) as side:
        later = side.submit(
            targets_by_stock, prices.select("date", "code", "close"), cfg.horizons, cfg.label_delay,
            cfg.signal_threshold, *own,
        )
        xs = _cross_sections(prices, universe, cfg, codes, stock, own)
        targets = later.result().drop("date", "code")[perm]
    del own

    # ---- blocks of stocks (consecutive ids: stocks in order of first appearance)
    lens = np.bincount(stock, minlength=codes.len())
    bounds = [0]
    acc = 0
    for s, ln in enumerate(lens):
        if acc and acc + ln > block_rows:
            bounds.append(s)
            acc = 0
        acc += int(ln)
    bounds.append(codes.len())

    single = len(bounds) == 2  # the whole panel is one block: no temporary files
    remove_stale_temporaries(out.parent / f"{out.name}.blocks")  # left by a killed run
    work = None if single else Path(tempfile.mkdtemp(prefix=f".{out.name}.blocks.", dir=_ensure_dir(out.parent)))
    # the output's row blocks (the spill files are laid out by them, so that one read fetches
    # a row block's part of every column): half a block of stocks, whole Parquet row groups
    # where that is at least one, so that the two output grids and the last block of stocks
    # (kept in memory) together hold about what two blocks of stocks did
    step = max(1, block_rows // 2)
    step = step // ROW_GROUP * ROW_GROUP or step
    cuts = list(range(0, max(n, 1), step)) + [n]
    last = len(bounds) - 2  # the last block of stocks stays in memory: no spill, no read
    # column buffers go back to the pool once a block is spilled, and the next block reuses them
    pool = BufferPool(capacity=int(max((lens[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:])), default=0)))
    try:
        blocks: list[_Block] = []
        with ThreadPoolExecutor(max_workers=1) as spiller:  # a block is written out while the next computes
            pending = None
            for j, (s0, s1) in enumerate(zip(bounds[:-1], bounds[1:])):
                rows = np.flatnonzero((stock >= s0) & (stock < s1))
                if rows.size == 0:
                    continue
                sub = prices[rows]
                bxs = CrossSection(
                    xs["date_idx"][rows], xs["n_dates"], xs["mkt_ret"][rows] if xs["mkt_ret"] is not None else None,
                    xs["means"], xs["row_sector"][rows], xs["n_sectors"],
                )
                order = np.argsort(rank[rows], kind="stable")  # the block's rows in the final order
                _, arrays = _compute(sub, universe, cfg, pl.Float32, n_threads, bxs, order=order, pool=pool)
                del sub, bxs
                block = _Block(rank[rows][order], None if single or j == last else work / f"block{j}.f32")
                if pending is not None:
                    pending.result()
                pending = spiller.submit(block.store, arrays, cuts, pool)
                blocks.append(block)
                del arrays, order
            if pending is not None:
                pending.result()
        del xs, stock, pool

        metrics = _assemble(prices, perm, targets, names, blocks, out, cuts, cfg)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return metrics


class _Block:
    """One block of stocks' feature columns, rows in the final (date, code) order.

    ``rank``: the final position of each of its rows (ascending). The columns live in a
    temporary file (float32; for each of the output's row blocks, that block's part of
    every column, column after column, so that one read fetches it) or, for a panel that
    is a single block, in memory.
    """

    def __init__(self, rank: np.ndarray, path: Path | None):
        self.rank, self.path, self.size = rank, path, rank.size
        self.arrays: list[np.ndarray] | None = None
        self.spans: list[tuple[int, int]] = []
        self.n_cols = 0
        self.fh = None

    def store(self, arrays: list[np.ndarray], cuts: list[int], pool: BufferPool) -> None:
        """Keep the columns (a single block) or write them out and give their buffers back to ``pool``."""
        lo, hi = np.searchsorted(self.rank, cuts[:-1]), np.searchsorted(self.rank, cuts[1:])
        self.spans = [(int(a), int(b)) for a, b in zip(lo, hi)]
        self.n_cols = len(arrays)
        if self.path is None:
            self.arrays = arrays
            return
        with open(self.path, "wb") as f:
            for s, e in self.spans:
                for arr in arrays:
                    f.write(arr[s:e].astype(np.float32, copy=False))
        for arr in arrays:
            pool.put(arr)

    def read(self, k: int, buf: np.ndarray) -> list[np.ndarray] | np.ndarray:
        """Row block ``k``'s part of every column: views of the columns in memory, or a
        ``(columns, rows)`` array read from the file into ``buf`` (reused from call to call)."""
        s, e = self.spans[k]
        if self.arrays is not None:
            return [arr[s:e] for arr in self.arrays]
        if self.fh is None:
            self.fh = open(self.path, "rb")
        self.fh.seek(sum(e0 - s0 for s0, e0 in self.spans[:k]) * self.n_cols * 4)
        seg = buf[: self.n_cols * (e - s)]
        self.fh.readinto(memoryview(seg).cast("B"))
        return seg.reshape(self.n_cols, e - s)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        self.arrays = None


def _ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _own_rows(prices: pl.DataFrame, stock: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows listed by stock then date (``by_stock``), each listed row's position in its stock
    and its stock's row count."""
    n = prices.height
    day = prices.get_column("date").cast(pl.Int32).to_numpy()
    by_stock = np.lexsort((day, stock))  # each stock's rows in date order
    s_sorted = stock[by_stock]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]]) if n else np.zeros(0, dtype=np.int64)
    runs = np.diff(np.r_[starts, n])
    pos = np.arange(n) - np.repeat(starts, runs)
    return by_stock, pos, np.repeat(runs, runs)


def _cross_sections(
    prices: pl.DataFrame, universe, cfg: FeaturesConfig, codes: pl.Series, stock: np.ndarray, own: tuple
) -> dict:
    """The whole-panel inputs of the relative family (market return, mean k-row returns, sectors).

    Same arithmetic, in the same row order, as the in-memory path
    (:func:`alphagraph.features.compute._compute`): bit-identical means. ``own``: :func:`_own_rows`.
    """
    n = prices.height
    day = prices.get_column("date").cast(pl.Int32).to_numpy().astype(np.int64)
    date_idx = day - day.min() if n else day
    n_dates = int(date_idx.max()) + 1 if n else 0
    out = {"date_idx": date_idx, "n_dates": n_dates, "mkt_ret": None, "means": None,
           "row_sector": np.full(n, -1, dtype=np.int64), "n_sectors": 0}
    if "relative" not in feature_families(cfg) or n == 0:
        return out
    close = prices.get_column("close").to_numpy()
    by_stock, pos, _ = own
    c_sorted = close[by_stock]

    def kret(k: int) -> np.ndarray:
        """close / close k own rows earlier - 1 (NaN for a stock's first k rows), panel order."""
        r = np.empty(n)
        with np.errstate(invalid="ignore", divide="ignore"):  # (across two stocks: masked next)
            np.divide(c_sorted[k:], c_sorted[:-k], out=r[k:])
        r[k:] -= 1.0
        r[pos < k] = np.nan
        res = np.empty(n)
        res[by_stock] = r
        return res

    r1 = kret(1)
    out["mkt_ret"] = cross_section_means(r1, date_idx, n_dates)[date_idx]
    del r1
    row_sector = _sector_ids(codes, universe, stock, prices.get_column("date"))
    n_sectors = int(row_sector.max()) + 1 if n else 0
    out["row_sector"], out["n_sectors"] = row_sector, n_sectors
    # relative_means per horizon, with the (date, sector) cells worked out once
    has_sector = row_sector >= 0
    cell = date_idx * n_sectors + np.maximum(row_sector, 0)
    means = {}
    for k in relative_horizons(cfg):
        r = kret(k)
        sec = cross_section_means(np.where(has_sector, r, np.nan), cell, n_dates * n_sectors) if n_sectors else None
        means[k] = (cross_section_means(r, date_idx, n_dates), sec)
    out["means"] = means
    return out


def _assemble(prices, perm, targets, names, blocks, out: Path, cuts: list[int], cfg: FeaturesConfig) -> dict[str, Any]:
    """Rows of the final order, row block by row block, from the stock blocks -> Parquet at ``out``.

    A row block's part of each spilled stock block is read in one go and scattered into a
    ``(columns, rows)`` grid; Arrow arrays wrap the grid's rows without copying, NaN -> null
    through a validity bitmap.
    """
    n = prices.height
    null_counts = np.zeros(len(names), dtype=np.int64)
    target_nulls = {h: 0 for h in cfg.horizons}
    keys = prices.select("date", "code")
    in_memory = len(blocks) == 1 and blocks[0].arrays is not None
    spilled = [blk for blk in blocks if blk.arrays is None]
    readbuf = np.empty(max((blk.n_cols * (e - s) for blk in spilled for s, e in blk.spans), default=0), np.float32)
    width = max(b - a for a, b in zip(cuts[:-1], cuts[1:]))
    # two (columns, rows) grids take turns: one fills while the Parquet writer encodes the other
    # (a row block's write has ended when the next one is handed over)
    grids: list[np.ndarray | None] = [None, None]
    try:
        with ParquetSink(out, row_group_size=ROW_GROUP) as sink:
            for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
                if in_memory:  # one block, its rows already in the final order
                    cols = blocks[0].read(k, readbuf)
                else:
                    if grids[k % 2] is None:
                        grids[k % 2] = _prefaulted(len(names) * width, np.float32).reshape(len(names), width)
                    cols = list(grids[k % 2][:, : b - a])
                    for blk in blocks:
                        s, e = blk.spans[k]
                        if e > s:
                            dst = blk.rank[s:e] - a
                            for col, part in zip(cols, blk.read(k, readbuf)):
                                col[dst] = part
                arrays = []
                for ci, col in enumerate(cols):
                    present = col == col  # not NaN: one pass, and no inverted copy to pack
                    n_null = len(col) - int(np.count_nonzero(present))
                    null_counts[ci] += n_null
                    valid = pa.py_buffer(np.packbits(present, bitorder="little")) if n_null else None
                    arrays.append(pa.Array.from_buffers(pa.float32(), len(col), [valid, pa.py_buffer(col)], null_count=n_null))
                tgt = targets.slice(a, b - a)
                for h in cfg.horizons:
                    target_nulls[h] += tgt.get_column(f"ret_{h}d").null_count()
                head, tail = keys[perm[a:b]].to_arrow(), tgt.to_arrow()
                sink.write(pa.Table.from_arrays(
                    [*head.columns, *arrays, *tail.columns], names=[*head.column_names, *names, *tail.column_names]
                ))
                del arrays, cols, head, tail
    finally:
        for blk in blocks:
            blk.close()
    null_share = {name: (int(c) / n if n else float("nan")) for name, c in zip(names, null_counts)}
    ret_null = {h: (target_nulls[h] / n if n else float("nan")) for h in cfg.horizons}
    return panel_metrics(n, names, null_share, ret_null, cfg)
