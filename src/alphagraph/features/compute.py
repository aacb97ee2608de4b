"""compute_features: the whole feature panel from prices and the universe.

Flow: row-wise families (kbar, price) straight on the panel's columns; the
market's daily return per date (for beta); then the per-stock families chunk by
chunk (a few dozen stocks at a time, so the working arrays stay in cache), on a
small thread pool (numpy releases the GIL); finally the cross-sectional part of
the relative family. Everything is computed in float64 and written once into
the output columns (Float32 by default, which halves the panel's memory).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import polars as pl

from alphagraph.config import FeaturesConfig
from alphagraph.features.alpha158 import kbar_price, rolling_family, volume_family
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

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
CELLS_PER_CHUNK = 1 << 17  # ~1 MB per float64 array: the working set stays in cache


def _threads(n_threads: int | None) -> int:
    if n_threads:
        return max(1, int(n_threads))
    env = os.environ.get("ALPHAGRAPH_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, min(8, os.cpu_count() or 1))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_DEFAULT = 128 * 1024


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


@contextmanager
def malloc_tuned() -> Iterator[callable]:
    """Keep freed ~1 MB temporaries in the heap while features are computed (glibc only).

    By default glibc serves every allocation above 128 KiB with a fresh mmap and
    unmaps it on free, so each numpy temporary of a chunk pays its page faults
    again; on small VMs that made the chunk kernels 10-20x slower. Inside this
    context allocations below 32 MiB come from the heap and freed memory is kept
    for reuse; the yielded ``trim()`` (and the exit) hand free pages back to the OS.
    Elsewhere (macOS, musl) it does nothing.
    """
    libc = _libc()
    if libc is None:
        yield lambda: None
        return
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    try:
        yield lambda: libc.malloc_trim(0)
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT)
        libc.malloc_trim(0)


def _check_inputs(prices: pl.DataFrame) -> None:
    missing = [c for c in ("date", "code", *PRICE_COLUMNS) if c not in prices.columns]
    if missing:
        raise KeyError(f"prices: missing columns {missing}")
    if prices.schema["date"] != pl.Date:
        raise TypeError(f"prices.date must be pl.Date, got {prices.schema['date']}")
    bad = prices.select(
        *[(~pl.col(c).cast(pl.Float64).is_finite() | pl.col(c).is_null()).sum().alias(c) for c in PRICE_COLUMNS],
        ((pl.col("open") <= 0) | (pl.col("high") <= 0) | (pl.col("low") <= 0) | (pl.col("close") <= 0))
        .sum()
        .alias("nonpositive_price"),
        (pl.col("volume") < 0).sum().alias("negative_volume"),
    ).row(0, named=True)
    problems = {k: v for k, v in bad.items() if v}
    if problems:
        raise ValueError(f"prices: invalid values (count per check): {problems}")


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
    with malloc_tuned() as trim:
        return _compute(prices, universe, cfg, dtype, n_threads, trim)


def _compute(prices, universe, cfg, dtype, n_threads, trim) -> pl.DataFrame:
    fams = feature_families(cfg)
    names = [c for cols in fams.values() for c in cols]
    _check_inputs(prices)
    n = prices.height
    np_dtype = np.float64 if dtype == pl.Float64 else np.float32
    windows = sorted(set(int(w) for w in cfg.windows))
    horizons = relative_horizons(cfg)

    codes = prices.get_column("code").unique().sort()
    dates = prices.get_column("date").unique().sort()
    stock = codes.search_sorted(prices.get_column("code")).to_numpy().astype(np.int64)
    date_idx = dates.search_sorted(prices.get_column("date")).to_numpy().astype(np.int64)
    n_stocks, n_dates = codes.len(), dates.len()
    cols = {c: prices.get_column(c).cast(pl.Float64).to_numpy() for c in PRICE_COLUMNS}

    finished: dict[str, np.ndarray] = {}  # name -> full column (row order)

    def write(name: str, values: np.ndarray) -> None:
        out = np.asarray(values, dtype=np_dtype)
        out[~np.isfinite(out)] = np.nan
        finished[name] = out

    for name, values in kbar_price(cols["open"], cols["high"], cols["low"], cols["close"], list(fams)).items():
        write(name, values)

    per_stock = [f for f in ("rolling", "volume", "relative", "technical") if f in fams]
    blocks: list[dict[str, np.ndarray]] = []
    layout = None
    if per_stock and n:
        max_window = max(windows + [RSI_WINDOW, ATR_WINDOW, MACD_SLOW + MACD_SIGNAL, *VOL_REGIME])
        layout = Layout(date_idx, stock, n_stocks, block_size(max_window), CELLS_PER_CHUNK)
        inputs = dict(cols)
        if "relative" in fams:
            close = cols["close"]
            prev = layout.prev
            with np.errstate(invalid="ignore"):
                r1 = np.where(prev >= 0, close / close[np.maximum(prev, 0)] - 1.0, np.nan)
            inputs["mkt_ret"] = cross_section_means(r1, date_idx, n_dates)[date_idx]
            del r1

        def run(chunk: Chunk) -> dict[str, np.ndarray]:
            """All per-stock features of one chunk, each as a block in panel row order."""
            arrays = {k: v[chunk.src].reshape(len(chunk.stocks), chunk.tp) for k, v in inputs.items()}
            ch = ChunkData(arrays, layout.block, max_window)
            out_pos = chunk.out_cells % chunk.tp
            res: dict[str, np.ndarray] = {}

            def emit_as(dt):
                def emit(name: str, values: np.ndarray, lead: int) -> None:
                    vals = values.ravel()[chunk.out_cells]
                    vals[(out_pos < lead) | ~np.isfinite(vals)] = np.nan
                    res[name] = vals.astype(dt, copy=False)

                return emit

            emit = emit_as(np_dtype)
            if "rolling" in fams:
                rolling_family(ch, windows, emit)
            if "volume" in fams:
                volume_family(ch, windows, emit)
            if "technical" in fams:
                technical_family(ch, windows, emit)
            if "relative" in fams:
                relative_chunk(ch, windows, horizons, emit, emit_as(np.float64))
            return res

        workers = _threads(n_threads)
        if workers == 1 or len(layout.chunks) == 1:
            blocks = [run(chunk) for chunk in layout.chunks]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                blocks = list(pool.map(run, layout.chunks))
        del inputs

    def assemble(name: str, dt) -> np.ndarray:
        """Scatter the chunks' blocks of one column into panel row order (freeing them)."""
        out = np.empty(n, dtype=dt)
        for chunk, res in zip(layout.chunks, blocks):
            out[chunk.out_rows] = res.pop(name)
        return out

    if "relative" in fams and layout is not None:
        tmp = {f"ret_{k}": assemble(f"ret_{k}", np.float64) for k in horizons}
        sector_of_stock = _sector_ids(codes, universe)
        relative_post(tmp, horizons, date_idx, n_dates, sector_of_stock[stock], write)

    series = [prices.get_column("date"), prices.get_column("code")]
    for i, name in enumerate(names):
        arr = finished.pop(name) if name in finished else assemble(name, np_dtype)
        series.append(pl.Series(name, arr, dtype=dtype, nan_to_null=True))
        del arr
        if i % 16 == 15:
            trim()
    return pl.DataFrame(series)


def _sector_ids(codes: pl.Series, universe: pl.DataFrame | None) -> np.ndarray:
    """Sector id per stock id (stock id = index in the sorted unique codes), -1 where unknown."""
    n_stocks = codes.len()
    if universe is None or "sector" not in universe.columns or universe.height == 0:
        return np.full(n_stocks, -1, dtype=np.int64)
    uni = universe.select("code", "sector").unique(subset="code", keep="first", maintain_order=True)
    joined = codes.to_frame("code").join(uni, on="code", how="left", maintain_order="left")
    sec = joined.select(pl.col("sector").rank("dense").cast(pl.Int64).sub(1).fill_null(-1))["sector"]
    return sec.to_numpy()
