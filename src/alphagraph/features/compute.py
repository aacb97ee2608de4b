"""compute_features: the whole feature panel from prices and the universe.

Flow: row-wise families (kbar, price) straight on the panel's columns; the
market's daily return per date (for beta); then the per-stock families chunk by
chunk (a few dozen stocks at a time, each stock's rows packed along time, so the
working arrays stay in cache), on a small thread pool (numpy releases the GIL);
finally the cross-sectional part of the relative family.

Each chunk writes its results into a preallocated column per feature in
chunk-major order (a contiguous slice per chunk); one gather per column then puts
the rows in the panel's order (or the order the caller asks for) into another
buffer of a :class:`BufferPool`, which takes the staging one back, and polars wraps
the numpy buffers without copying. Everything is computed in float64; outputs are Float32 by
default (the panel's memory halves: 800 stocks x 3,000 days x 191 features is
1.7 GB). Memory-wise that is the floor: the output columns plus one chunk's
temporaries per thread. The features stage calls it on one block of stocks at a time
(:mod:`alphagraph.features.stream`), with the cross-sectional inputs of the whole
panel passed in (:class:`CrossSection`), so only one block's columns are in memory.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from alphagraph.runtime.config import FeaturesConfig
from alphagraph.features.alpha158 import kbar_price, rolling_family, volume_family
from alphagraph.features.buffers import prefaulted as _prefaulted, threads as _threads
from alphagraph.features.context import ChunkData
from alphagraph.features.extra import relative_chunk, relative_post, technical_family, cross_section_means
from alphagraph.features.families import (
    ATR_WINDOW,
    MACD_SIGNAL,
    MACD_SLOW,
    RSI_WINDOW,
    VOL_REGIME,
    feature_families,
    relative_horizons,
)
from alphagraph.features.layout import Chunk, Layout
from alphagraph.features.rolling import block_size

log = logging.getLogger(__name__)
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")


class _Timer:
    """Phase timings, logged at DEBUG level (``alphagraph.features.compute``)."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.phases: dict[str, float] = {}

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases[phase] = now - self.t
        self.t = now

    def report(self) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("compute_features phases: %s", {k: round(v, 3) for k, v in self.phases.items()})
CELLS_PER_CHUNK = 1 << 15  # 256 kB per float64 array: a chunk's working set stays in a core's L2 cache (1 << 17 was ~10% slower)


class BufferPool:
    """Column buffers handed out and taken back, so that blocks of a stage reuse the same pages.

    ``get(n, dtype)``: an array of ``n`` elements (a view of a pooled, prefaulted buffer of
    at least ``capacity`` elements); ``put(array)`` returns it. Faulting fresh pages in costs
    more than the arithmetic that fills them on small VMs, and a streaming stage needs
    the same few hundred columns block after block. Thread-safe.
    """

    def __init__(self, capacity: int = 0):
        self.capacity = int(capacity)
        self._free: dict[np.dtype, list[np.ndarray]] = {}
        self._lent: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def get(self, n: int, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        with self._lock:
            free = self._free.setdefault(dtype, [])
            while free and free[-1].size < n:  # too small for this block: let it go
                free.pop()
            base = free.pop() if free else None
        if base is None:
            base = _prefaulted(max(int(n), self.capacity), dtype)
        view = base[:n]
        with self._lock:
            self._lent[id(view)] = base
        return view

    def put(self, arr: np.ndarray) -> None:
        with self._lock:
            base = self._lent.pop(id(arr), None)
            if base is not None:
                self._free.setdefault(base.dtype, []).append(base)


def _check_columns(prices: pl.DataFrame) -> None:
    missing = [c for c in ("date", "code", *PRICE_COLUMNS) if c not in prices.columns]
    if missing:
        raise KeyError(f"prices: missing columns {missing}")
    if prices.schema["date"] != pl.Date:
        raise TypeError(f"prices.date must be pl.Date, got {prices.schema['date']}")
    nulls = {c: n for c, n in zip(prices.columns, prices.null_count().row(0)) if n and c in ("date", "code", *PRICE_COLUMNS)}
    if nulls:
        raise ValueError(f"prices: null values {nulls}")


def _check_values(cols: dict[str, np.ndarray]) -> None:
    """Prices finite and > 0, volume finite and >= 0 (the ingest invariants the kernels rely on)."""
    problems = {}
    for c in ("open", "high", "low", "close"):
        bad = int(np.count_nonzero(~(cols[c] > 0) | ~np.isfinite(cols[c])))
        if bad:
            problems[c] = bad
    bad = int(np.count_nonzero(~(cols["volume"] >= 0) | ~np.isfinite(cols["volume"])))
    if bad:
        problems["volume"] = bad
    if problems:
        raise ValueError(f"prices: non-finite or non-positive values (count per column): {problems}")


def compute_features(
    prices: pl.DataFrame,
    universe: pl.DataFrame,
    cfg: FeaturesConfig,
    *,
    dtype: type[pl.DataType] | pl.DataType = pl.Float32,
    n_threads: int | None = None,
) -> pl.DataFrame:
    """Feature panel: ``date, code`` + ``f_*`` columns, same rows and order as ``prices``.

    A row dated t uses only rows dated <= t (its own stock's past for time-series
    features, the cross-section of date t for relative ones). Rolling features are
    null until the stock has a full window of its own rows; see
    :mod:`alphagraph.features.families` for names and definitions. ``dtype`` is
    the output float type (computation is float64 throughout); ``n_threads``
    defaults to ``$ALPHAGRAPH_THREADS`` or the usable cores (at most 8).
    """
    names, arrays = _compute(prices, universe, cfg, dtype, n_threads)
    if names is None:
        return arrays
    series = [prices.get_column("date"), prices.get_column("code")]
    series += [pl.Series(name, arr, dtype=dtype, nan_to_null=True) for name, arr in zip(names, arrays)]
    del arrays
    return pl.DataFrame(series)


class CrossSection:
    """The cross-sectional inputs of a block of stocks, computed on the whole panel first.

    ``date_idx``: every block row's date index in the whole panel; ``mkt_ret``: the
    market's daily return of every block row's date; ``means``: per relative horizon
    k, the per-date mean k-row return and the per-(date, sector) one;
    ``row_sector``: the block rows' sector ids; ``n_dates``/``n_sectors``: sizes.
    See :mod:`alphagraph.features.stream`.
    """

    def __init__(self, date_idx, n_dates, mkt_ret, means, row_sector, n_sectors):
        self.date_idx, self.n_dates, self.mkt_ret = date_idx, n_dates, mkt_ret
        self.means, self.row_sector, self.n_sectors = means, row_sector, n_sectors


def _compute(
    prices, universe, cfg, dtype, n_threads, xs: CrossSection | None = None,
    order: np.ndarray | None = None, pool: BufferPool | None = None,
):
    """(names, float arrays, NaN = missing); (None, frame) for no rows.

    The arrays hold the rows in prices' order, or in ``order`` (row ``p`` of the output is
    prices' row ``order[p]``): one gather per column puts the chunks' results straight
    there. ``pool``: where the column buffers come from (a fresh array each otherwise).
    """
    tick = _Timer()
    fams = feature_families(cfg)
    names = [c for cols in fams.values() for c in cols]
    _check_columns(prices)
    n = prices.height
    if n == 0:
        return None, prices.select("date", "code").with_columns([pl.lit(None, dtype=dtype).alias(c) for c in names])
    np_dtype = np.float64 if dtype == pl.Float64 else np.float32
    windows = sorted(set(int(w) for w in cfg.windows))
    horizons = relative_horizons(cfg)

    # stock ids: codes in order of first appearance; date ids: days since the first date
    codes = prices.get_column("code").cast(pl.Utf8).unique(maintain_order=True)
    stock = prices.get_column("code").cast(pl.Utf8).cast(pl.Enum(codes)).to_physical().to_numpy().astype(np.int64)
    day = prices.get_column("date").cast(pl.Int32).to_numpy().astype(np.int64)
    date_idx = day - day.min()
    n_stocks, n_dates = codes.len(), int(date_idx.max()) + 1
    if xs is not None:
        date_idx, n_dates = xs.date_idx, xs.n_dates
    cols = {c: prices.get_column(c).cast(pl.Float64).to_numpy() for c in PRICE_COLUMNS}
    _check_values(cols)
    tick("keys")

    pool = pool or BufferPool()
    finished: dict[str, np.ndarray] = {}  # name -> full column (output order)

    def write(name: str, values: np.ndarray) -> None:
        out = pool.get(n, np_dtype)
        if order is None:
            out[...] = values
        else:
            with np.errstate(invalid="ignore", over="ignore"):  # (float32 overflow -> inf, as a cast)
                np.take(values, order, out=out, mode="clip")
        finished[name] = out

    for name, values in kbar_price(cols["open"], cols["high"], cols["low"], cols["close"], list(fams)).items():
        write(name, values)
    tick("kbar_price")

    per_stock = [f for f in ("rolling", "volume", "relative", "technical") if f in fams]
    layout = None
    if per_stock:
        max_window = max(windows + [RSI_WINDOW, ATR_WINDOW, MACD_SLOW + MACD_SIGNAL, *VOL_REGIME])
        layout = Layout(date_idx, stock, n_stocks, block_size(max_window), CELLS_PER_CHUNK)
        inputs = dict(cols)
        if "relative" in fams and xs is not None:
            inputs["mkt_ret"] = xs.mkt_ret
        elif "relative" in fams:
            close = cols["close"]
            prev = layout.prev
            with np.errstate(invalid="ignore"):
                r1 = np.where(prev >= 0, close / close[np.maximum(prev, 0)] - 1.0, np.nan)
            inputs["mkt_ret"] = cross_section_means(r1, date_idx, n_dates)[date_idx]
            del r1

        # per-stock results land in chunk-major order (each chunk a contiguous slice,
        # written sequentially) and are put in panel order by one gather per column
        tick("layout")
        staged: dict[str, np.ndarray] = {name: pool.get(n, np_dtype) for name in names if name not in finished}
        if "relative" in fams:
            staged.update({f"ret_{k}": np.empty(n) for k in horizons})

        def run(chunk: Chunk) -> None:
            arrays = {k: v[chunk.src].reshape(len(chunk.stocks), chunk.tp) for k, v in inputs.items()}
            ch = ChunkData(arrays, layout.block, max_window)
            a, b = chunk.offset, chunk.offset + len(chunk.out_rows)

            def emit(name: str, values: np.ndarray, lead: int) -> None:
                dst = staged[name][a:b]
                with np.errstate(invalid="ignore", over="ignore"):
                    np.take(values.reshape(-1), chunk.out_cells, out=dst, mode="clip")
                if lead:
                    dst[chunk.rows_before(lead)] = np.nan

            if "rolling" in fams:
                rolling_family(ch, windows, emit)
            if "volume" in fams:
                volume_family(ch, windows, emit)
            if "technical" in fams:
                technical_family(ch, windows, emit)
            if "relative" in fams:
                relative_chunk(ch, windows, horizons, emit, emit)

        tick("alloc")
        workers = _threads(n_threads)
        if workers == 1 or len(layout.chunks) == 1:
            for chunk in layout.chunks:
                run(chunk)
        else:
            with ThreadPoolExecutor(max_workers=workers) as threads:
                for _ in threads.map(run, layout.chunks):
                    pass
        del inputs
        tick("chunks")

    def assemble(name: str, index: np.ndarray) -> np.ndarray:
        """Chunk-major -> ``index`` order (one gather into a buffer from the pool, which takes the staged one back)."""
        arr = staged.pop(name)
        out = pool.get(n, arr.dtype) if arr.dtype == np_dtype else np.empty(n, dtype=arr.dtype)
        np.take(arr, index, out=out, mode="clip")
        pool.put(arr)
        return out

    workers = _threads(n_threads)
    if layout is not None:  # chunk-major position of every output row
        final_index = layout.gather_index if order is None else layout.gather_index[order]
    if "relative" in fams and layout is not None:
        tmp = {f"ret_{k}": assemble(f"ret_{k}", layout.gather_index) for k in horizons}
        if xs is None:
            row_sector = _sector_ids(codes, universe, stock, prices.get_column("date"))
            relative_post(tmp, horizons, date_idx, n_dates, row_sector, write)
        else:
            relative_post(tmp, horizons, date_idx, n_dates, xs.row_sector, write, xs.means, xs.n_sectors)
        tick("relative_post")

    def final(name: str) -> np.ndarray:
        arr = finished.pop(name) if name in finished else assemble(name, final_index)
        inf = np.isinf(arr)
        if inf.any():
            arr[inf] = np.nan
        return arr

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as threads:
            arrays = list(threads.map(final, names))
    else:
        arrays = [final(name) for name in names]
    tick("assemble")
    tick.report()
    return names, arrays


def _sector_ids(codes: pl.Series, universe: pl.DataFrame | None, stock: np.ndarray, dates: pl.Series) -> np.ndarray:
    """Sector id of every row (stock id ``stock`` = index in ``codes``, date ``dates``), -1 where unknown.

    A row's sector comes from its stock's universe row valid on the row's date
    (``start``/``end``, inclusive, null = unbounded; absent columns = always valid),
    so a sector change dated d never reaches a row dated before d. Where several rows
    are valid the first in table order wins; no valid row means no sector.
    """
    n = stock.size
    if universe is None or "sector" not in universe.columns or universe.height == 0:
        return np.full(n, -1, dtype=np.int64)
    # Validity columns are normalized here, not shared with the graph package: the
    # features stage's DVC deps list only src/alphagraph/features.
    uni = universe.select(
        pl.col("code").cast(pl.Utf8),
        pl.col("sector").cast(pl.Utf8),
        *((pl.col(c) if c in universe.columns else pl.lit(None)).cast(pl.Date).alias(c) for c in ("start", "end")),
    ).with_row_index("_row")
    # Integer stock ids keep the per-row join cheap (no strings on millions of rows).
    uni = codes.to_frame("code").with_row_index("stock").join(uni, on="code", how="inner").with_columns(
        pl.col("stock").cast(pl.Int64), pl.col("sector").rank("dense").cast(pl.Int64).sub(1).fill_null(-1)
    )
    rows = pl.DataFrame({"stock": stock, "date": dates}).with_row_index("_prow")
    valid = (pl.col("start").is_null() | (pl.col("start") <= pl.col("date"))) & (
        pl.col("end").is_null() | (pl.col("end") >= pl.col("date"))
    )
    hit = (
        rows.join(uni, on="stock", how="inner")
        .filter(valid)
        .filter(pl.col("_row") == pl.col("_row").min().over("_prow"))
    )
    out = np.full(n, -1, dtype=np.int64)
    out[hit["_prow"].to_numpy()] = hit["sector"].to_numpy()
    return out
