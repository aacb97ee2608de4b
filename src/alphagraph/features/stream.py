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
   temporary binary file beside the output, rows in the panel's final order (written
   on a background thread while the next block is computed; a panel that fits in one
   block stays in memory);
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

from alphagraph.runtime.config import FeaturesConfig
from alphagraph.features.compute import PRICE_COLUMNS, CrossSection, _check_columns, _compute, _sector_ids
from alphagraph.features.extra import cross_section_means, relative_means
from alphagraph.features.families import feature_families, feature_names, relative_horizons
from alphagraph.features.panel import panel_metrics
from alphagraph.features.targets import compute_targets
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

    # ---- first pass: cross-sections of the whole panel, and the targets
    xs = _cross_sections(prices, universe, cfg, codes, stock)
    targets = compute_targets(
        prices.select("date", "code", "close"), cfg.horizons, cfg.label_delay, cfg.signal_threshold
    )
    targets = targets.drop("date", "code")[perm]

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
                _, arrays = _compute(sub, universe, cfg, pl.Float32, n_threads, bxs)
                del sub, bxs
                order = np.argsort(rank[rows], kind="stable")
                block = _Block(rank[rows][order], None if single else work / f"block{j}.f32")
                if pending is not None:
                    pending.result()
                pending = spiller.submit(block.store, arrays, order)
                blocks.append(block)
                del arrays, order
            if pending is not None:
                pending.result()
        del xs, stock

        metrics = _assemble(prices, perm, targets, names, blocks, out, block_rows, cfg)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return metrics


class _Block:
    """One block of stocks' feature columns, rows in the final (date, code) order.

    ``rank``: the final position of each of its rows (ascending). The columns live in a
    temporary file (column after column, float32) or, for a panel that is a single
    block, in memory.
    """

    def __init__(self, rank: np.ndarray, path: Path | None):
        self.rank, self.path, self.size = rank, path, rank.size
        self.arrays: list[np.ndarray] | None = None
        self.fh = None

    def store(self, arrays: list[np.ndarray], order: np.ndarray) -> None:
        if self.path is None:
            self.arrays = [np.take(arr, order) for arr in arrays]
            return
        with open(self.path, "wb") as f:
            for arr in arrays:
                np.take(arr, order).astype(np.float32, copy=False).tofile(f)

    def read(self, ci: int, s: int, e: int) -> np.ndarray:
        if self.arrays is not None:
            return self.arrays[ci][s:e]
        if self.fh is None:
            self.fh = open(self.path, "rb")
        self.fh.seek((ci * self.size + s) * 4)
        return np.fromfile(self.fh, dtype=np.float32, count=e - s)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        self.arrays = None


def _ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _cross_sections(prices: pl.DataFrame, universe, cfg: FeaturesConfig, codes: pl.Series, stock: np.ndarray) -> dict:
    """The whole-panel inputs of the relative family (market return, mean k-row returns, sectors).

    Same arithmetic, in the same row order, as the in-memory path
    (:func:`alphagraph.features.compute._compute`): bit-identical means.
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
    by_stock = np.lexsort((date_idx, stock))  # each stock's rows in date order
    s_sorted = stock[by_stock]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    pos = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    c_sorted = close[by_stock]

    def kret(k: int) -> np.ndarray:
        """close / close k own rows earlier - 1 (NaN for a stock's first k rows), panel order."""
        r = np.full(n, np.nan)
        ok = pos >= k
        idx = np.flatnonzero(ok)
        r[idx] = c_sorted[idx] / c_sorted[idx - k] - 1.0
        res = np.empty(n)
        res[by_stock] = r
        return res

    r1 = kret(1)
    out["mkt_ret"] = cross_section_means(r1, date_idx, n_dates)[date_idx]
    del r1
    row_sector = _sector_ids(codes, universe, stock, prices.get_column("date"))
    n_sectors = int(row_sector.max()) + 1 if n else 0
    out["row_sector"], out["n_sectors"] = row_sector, n_sectors
    out["means"] = {
        k: relative_means(kret(k), date_idx, n_dates, row_sector, n_sectors) for k in relative_horizons(cfg)
    }
    return out


def _assemble(prices, perm, targets, names, blocks, out: Path, block_rows: int, cfg: FeaturesConfig) -> dict[str, Any]:
    """Rows of the final order, block by block, from the stock blocks' files -> Parquet at ``out``."""
    n = prices.height
    null_counts = np.zeros(len(names), dtype=np.int64)
    target_nulls = {h: 0 for h in cfg.horizons}
    try:
        with ParquetSink(out, row_group_size=ROW_GROUP) as sink:
            for a in range(0, max(n, 1), block_rows):
                b = min(n, a + block_rows)
                keys = prices.select("date", "code")[perm[a:b]]
                spans = [(np.searchsorted(blk.rank, a), np.searchsorted(blk.rank, b)) for blk in blocks]
                cols = []
                for ci, name in enumerate(names):
                    col = np.empty(b - a, dtype=np.float32)
                    for blk, (s, e) in zip(blocks, spans):
                        if e > s:
                            col[blk.rank[s:e] - a] = blk.read(ci, s, e)
                    null_counts[ci] += int(np.count_nonzero(np.isnan(col)))
                    cols.append(pl.Series(name, col, dtype=pl.Float32, nan_to_null=True))
                tgt = targets.slice(a, b - a)
                for h in cfg.horizons:
                    target_nulls[h] += tgt.get_column(f"ret_{h}d").null_count()
                frame = pl.concat([keys, pl.DataFrame(cols), tgt], how="horizontal")
                sink.write(frame)
                del frame, cols, keys
                if n == 0:
                    break
    finally:
        for blk in blocks:
            blk.close()
    null_share = {name: (int(c) / n if n else float("nan")) for name, c in zip(names, null_counts)}
    ret_null = {h: (target_nulls[h] / n if n else float("nan")) for h in cfg.horizons}
    return panel_metrics(n, names, null_share, ret_null, cfg)
