"""Cross-sectional normalization of the features panel and per-date training labels.

Every statistic is computed within one date, so a row dated t depends only on
that date's cross-section: normalization cannot leak the future.

Two entry points compute the same thing:

* :func:`normalize_panel` - an in-memory DataFrame in, an in-memory DataFrame out;
* :func:`normalize_file` - Parquet file to Parquet file (the ``normalize`` stage), in
  bounded memory: the panel is read in blocks of whole dates (only the columns it
  needs are decoded, and only the rows of one block at a time), each block is
  normalized and appended to the output as it is done, through a temporary file that
  is renamed into place at the end (nothing half-written is left after an error).
  Peak memory grows with one block, not with the panel; the block size comes from a
  memory target (:func:`alphagraph.runtime.io.memory_target`, ``$ALPHAGRAPH_MEMORY_MB``).

Since every statistic is per date, a date's output does not depend on which other
dates share its block: both entry points give bit-identical results.

Speed: per block, each feature is laid out as a dense ``[dates, stocks]`` float32
array, sorted along the stocks (NaN last) and the median and the MAD are read off the
sorted rows at each date's count of values - numpy's vectorized sort, instead of a
per-date median per column; the z-scores are then computed on the column itself. The
rare (date, column) cells whose MAD is 0 fall back to the standard deviation. Rank-gauss
labels rank each date's returns in the same dense layout (polars when a return is NaN or
infinite). Columns are shared out to a few threads; the next block is read and the
previous one written on threads of their own.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtri

from alphagraph.runtime.config import NormalizeConfig
from alphagraph.runtime.errors import UserError
from alphagraph.runtime.io import ParquetSink, memory_target
from alphagraph.features.buffers import prefaulted, threads

log = logging.getLogger(__name__)

MAD_TO_STD = 1.4826
MISSING_SHARE = "missing_share"
DROP_WARN_SHARE = 0.2
"""Share of dates or rows dropped (too-small cross-sections) above which the stage warns. A few
per cent is routine (thin first days of a listing history, a half-filled session); beyond a fifth,
the modelled span is materially shorter or thinner than the data supplied, and a figure computed
on it no longer describes that data."""
BYTES_PER_CELL = 32
"""Working bytes per input feature cell of a block (the block read ahead, the block being
normalized and its sorted copies, its output, the previous output being written)."""


def feature_columns(panel: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The model-input columns of a panel (``f_*``), in panel order."""
    names = panel.collect_schema().names() if isinstance(panel, pl.LazyFrame) else panel.columns
    return [c for c in names if c.startswith("f_")]


def block_rows_for(n_columns: int, target: int | None = None) -> int:
    """Rows per block so that one block's working set stays near ``target`` bytes."""
    target = memory_target() if target is None else target
    return max(1, int(target // (BYTES_PER_CELL * max(n_columns, 1))))


# ------------------------------------------------------------------ validation, plan


def _check_targets(columns: list[str], horizons: list[int]) -> None:
    missing_rets = [f"ret_{h}d" for h in horizons if f"ret_{h}d" not in columns]
    if missing_rets:
        raise KeyError(f"features panel: missing target columns {missing_rets}")


def _small_dates(counts: pl.DataFrame, cfg: NormalizeConfig) -> pl.DataFrame:
    """Dates with fewer than ``cfg.min_stocks`` rows (``date, len``); error if that is all of them."""
    small = counts.filter(pl.col("len") < cfg.min_stocks)
    if small.height == counts.height:
        most = int(counts["len"].max() or 0)
        raise UserError(
            f"normalize: no date has normalize.min_stocks = {cfg.min_stocks} stocks (the most on any date"
            f" is {most}): a cross-section that small cannot be normalized or ranked; add stocks or lower"
            " normalize.min_stocks"
        )
    return small


def _date_blocks(counts: pl.DataFrame, block_rows: int) -> list[tuple[int, int]]:
    """Consecutive runs of dates (indices into the sorted ``counts``) holding <= block_rows rows each."""
    lens = counts["len"].to_numpy()
    blocks, start, acc = [], 0, 0
    for i, n in enumerate(lens):
        if acc and acc + n > block_rows:
            blocks.append((start, i))
            start, acc = i, 0
        acc += int(n)
    if len(lens):
        blocks.append((start, len(lens)))
    return blocks


class _Stats:
    """Running stats over the blocks (exact: the missing share is k / n_features, counted per k)."""

    def __init__(self, n_feats: int):
        self.rows = 0
        self.dates = 0
        self.n_feats = n_feats
        self.k_counts = np.zeros(n_feats + 1, dtype=np.int64)
        self.first: Any = None  # the kept dates' span, for the warning (blocks come in date order)
        self.last: Any = None

    def add(self, block: pl.DataFrame, n_missing: np.ndarray) -> None:
        self.rows += block.height
        self.dates += block["date"].n_unique()
        self.k_counts += np.bincount(n_missing, minlength=self.n_feats + 1)
        if block.height:
            self.first = block["date"][0] if self.first is None else self.first
            self.last = block["date"][-1]

    def warn_dropped(self, small: pl.DataFrame, min_stocks: int) -> str | None:
        """Log (and return) one WARNING line when dates with too few stocks are over DROP_WARN_SHARE of the data."""
        n_dates, n_rows = small.height, int(small["len"].sum())
        all_dates, all_rows = self.dates + n_dates, self.rows + n_rows
        if not n_dates or max(n_dates / all_dates, n_rows / max(all_rows, 1)) <= DROP_WARN_SHARE:
            return None
        message = (
            f"dropped {n_dates:,} of {all_dates:,} dates ({n_dates / all_dates:.0%}; {n_rows:,} of"
            f" {all_rows:,} rows, {n_rows / max(all_rows, 1):.0%}) with fewer than normalize.min_stocks ="
            f" {min_stocks} stocks: the panel kept spans {self.first} to {self.last}; lower normalize.min_stocks"
            " or add stocks to keep them"
        )
        log.warning(message)
        return message

    def result(self, small: pl.DataFrame) -> dict[str, Any]:
        shares = [float(np.float32(k / max(self.n_feats, 1))) for k in range(self.n_feats + 1)]
        total = math.fsum(int(c) * s for c, s in zip(self.k_counts, shares))
        return {
            "rows": self.rows,
            "dates": self.dates,
            "dates_dropped_min_stocks": small.height,
            "rows_dropped_min_stocks": int(small["len"].sum()),
            "features": self.n_feats,
            "missing_share_mean": total / self.rows if self.rows else 0.0,
        }


# ------------------------------------------------------------------ entry points


def normalize_panel(
    panel: pl.DataFrame, cfg: NormalizeConfig, horizons: list[int], *, block_rows: int | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Robust per-date z-scores of ``f_*`` plus labels ``y_{h}d``; returns (panel, stats).

    Features: (x - median) / (1.4826 * MAD) per date, falling back to the
    standard deviation where MAD is 0 (a feature that is mostly one value) and
    to 0 where both are; clipped to +-``cfg.clip``; inf -> null -> 0 with the
    row's share of missing features kept in ``missing_share``. Dates with
    fewer than ``cfg.min_stocks`` stocks are dropped and counted (a WARNING when
    over :data:`DROP_WARN_SHARE` of the dates or rows). Output sorted
    by (date, code); columns: the input's, then ``missing_share``, then ``y_{h}d``.
    """
    feats = feature_columns(panel)
    _check_targets(panel.columns, horizons)
    counts = panel.group_by("date").len().sort("date")
    small = _small_dates(counts, cfg)
    kept = panel.join(small.select("date"), on="date", how="anti").sort(["date", "code"])
    counts = counts.join(small.select("date"), on="date", how="anti")
    rows = block_rows or block_rows_for(len(feats))
    stats = _Stats(len(feats))
    parts, offset = [], 0
    lens = counts["len"].to_numpy()
    for a, b in _date_blocks(counts, rows):
        n = int(lens[a:b].sum())
        out, n_missing = _normalize_block(kept.slice(offset, n), feats, cfg, horizons)
        stats.add(out, n_missing)
        parts.append(out)
        offset += n
    out = pl.concat(parts, how="vertical", rechunk=False) if parts else kept.clear()
    stats.warn_dropped(small, cfg.min_stocks)
    return out, stats.result(small)


def normalize_file(
    src: str | Path,
    dst: str | Path,
    cfg: NormalizeConfig,
    horizons: list[int],
    *,
    block_rows: int | None = None,
) -> dict[str, Any]:
    """The ``normalize`` stage: features Parquet ``src`` -> normalized Parquet ``dst``; returns stats.

    Same output as :func:`normalize_panel` on the whole file, computed date block by
    date block (``block_rows`` rows at most per block unless a single date is larger;
    default from the memory target) and written incrementally, atomically.
    """
    lf = pl.scan_parquet(src)
    columns = lf.collect_schema().names()
    feats = feature_columns(lf)
    _check_targets(columns, horizons)
    dates = lf.select("date").collect().get_column("date")
    counts = dates.value_counts(name="len").sort("date")
    small = _small_dates(counts, cfg)
    rows = block_rows or block_rows_for(len(feats))
    date_sorted = dates.is_sorted()
    # row ranges of the dates in the file (contiguous when the file is sorted by date)
    ends = np.cumsum(counts["len"].to_numpy())
    del dates
    small_dates = small.get_column("date")

    def read(block: tuple[int, int]) -> pl.DataFrame:
        a, b = block
        if date_sorted:
            start = int(ends[a - 1]) if a else 0
            frame = lf.slice(start, int(ends[b - 1]) - start).collect()
        else:  # pragma: no cover - the features stage always writes sorted panels
            lo, hi = counts["date"][a], counts["date"][b - 1]
            frame = lf.filter(pl.col("date").is_between(lo, hi)).collect()
        if small_dates.len():
            frame = frame.filter(~pl.col("date").is_in(small_dates.implode()))
        # one chunk per column (a block that spans two row groups arrives in two): done here, on
        # the reader's thread, not column by column in the workers
        return frame.rechunk() if _sorted_by_date_code(frame) else frame.sort(["date", "code"])

    stats = _Stats(len(feats))
    blocks = _date_blocks(counts, rows)
    # two result buffers take turns: one is filled while the Parquet writer encodes the other
    # (a block's write has ended when the next block's write is handed over)
    most = max((int(ends[b - 1]) - (int(ends[a - 1]) if a else 0) for a, b in blocks), default=0)
    buffers: list[np.ndarray | None] = [None, None]
    # the next block is read (polars, off the GIL) while this one is normalized
    with ParquetSink(dst, required=[*feats, MISSING_SHARE]) as sink, ThreadPoolExecutor(max_workers=1) as reader:
        ahead = reader.submit(read, blocks[0]) if blocks else None
        for i in range(len(blocks)):
            block = ahead.result()
            ahead = reader.submit(read, blocks[i + 1]) if i + 1 < len(blocks) else None
            if block.height == 0:
                continue
            buffers.reverse()
            if buffers[0] is None:
                buffers[0] = prefaulted(len(feats) * most, np.float32).reshape(len(feats), most)
            out, n_missing = _normalize_block(block, feats, cfg, horizons, buffers[0])
            del block
            stats.add(out, n_missing)
            sink.write(out)
            del out
    stats.warn_dropped(small, cfg.min_stocks)
    return stats.result(small)


def _sorted_by_date_code(frame: pl.DataFrame) -> bool:
    """Whether the rows are in (date, code) order already (as the features stage writes them):
    checking is far cheaper than sorting, which gathers every column."""
    if frame.height < 2:
        return True
    d, c = pl.col("date"), pl.col("code")
    ok = ((d > d.shift()) | ((d == d.shift()) & (c > c.shift()))).fill_null(False)
    return bool(frame.select(ok.slice(1).all()).item())


# ------------------------------------------------------------------ one block of dates


def _normalize_block(
    block: pl.DataFrame, feats: list[str], cfg: NormalizeConfig, horizons: list[int],
    buffer: np.ndarray | None = None,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Normalize a block of whole dates sorted by (date, code); also returns missing counts per row.

    Per column: the values are laid out as a dense ``[dates, stocks]`` array and sorted
    along the stocks (NaN last) for each date's median and MAD (:func:`_date_scales`); the
    z-scores are then computed on the column itself, each row with its date's median and
    scale. The columns are shared out to a few threads (numpy's sorts and ufuncs release the
    GIL); each thread reuses its dense buffer from column to column (fresh pages cost more
    than the arithmetic on a VM), and the results land in one preallocated float32 array that
    the output columns view without copying.
    """
    n = block.height
    date_id = block.get_column("date").rle_id().to_numpy().astype(np.int64)
    n_dates = int(date_id[-1]) + 1 if n else 0
    starts = np.searchsorted(date_id, np.arange(n_dates))
    lens = np.diff(np.append(starts, n))
    pos = np.arange(n, dtype=np.int64) - starts[date_id]
    width = int(pos.max()) + 1 if n else 1
    cells = date_id * width + pos

    if buffer is None:
        out = prefaulted(len(feats) * n, np.float32).reshape(len(feats), n)
    else:  # (features, >= n): the output columns view its rows
        out = buffer[:, :n]
    n_threads = max(1, min(threads(None), len(feats)))

    def run(part: list[int]) -> np.ndarray:
        missing = np.zeros(n, dtype=np.int32)  # per row: missing (null or non-finite) features
        dense_of: dict[type, np.ndarray] = {}
        for i in part:
            col = block.get_column(feats[i])
            # arithmetic in the column's own float type (Float32 from the features stage), like polars
            ft = np.float64 if col.dtype == pl.Float64 else np.float32
            x, valid = _values(col, ft)
            if ft not in dense_of:  # padding cells stay NaN: only real cells are written, and sorts keep NaN last
                dense_of[ft] = np.full((n_dates, width), np.nan, dtype=ft)
            dense = dense_of[ft]
            finite = np.isfinite(x)
            if valid is not None:
                finite &= valid
            flat = dense.reshape(-1)
            flat[cells] = x
            complete = bool(finite.all())
            if not complete:  # null, NaN or inf: missing
                flat[cells[~finite]] = np.nan
                missing += ~finite
            cnt = np.add.reduceat(finite, starts, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
            med, scale = _date_scales(dense, cnt, lambda need, m: _centred_rows(x, finite, m, need, date_id, pos, width))
            z = out[i] if ft is np.float32 else np.empty(n, dtype=ft)
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                np.subtract(x, np.repeat(med, lens), out=z)
                z /= np.repeat(scale, lens)
            np.clip(z, ft(-cfg.clip), ft(cfg.clip), out=z)
            if z is not out[i]:
                out[i] = z  # rounded to float32 like the Float32 cast
            zero = np.isnan(out[i])
            if not complete:
                zero |= ~finite
            np.copyto(out[i], 0.0, where=zero)  # missing (and undefined scale) -> 0
        return missing

    parts = [list(range(k, len(feats), n_threads)) for k in range(n_threads)]

    def label(h: int) -> pl.Series | None:
        return _rank_gauss(block.get_column(f"ret_{h}d"), starts, lens, cells, width)

    ranked = horizons if cfg.label == "rankgauss" else []
    if n_threads > 1:
        # the labels go to the same threads, first: left to the end, they ran while the other core idled
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            pending = [pool.submit(label, h) for h in ranked]
            counts = list(pool.map(run, parts))
            labels = [f.result() for f in pending]
    else:
        counts = [run(parts[0])]
        labels = [label(h) for h in ranked]
    n_missing = np.sum(counts, axis=0, dtype=np.int64) if n else np.zeros(0, dtype=np.int64)
    new_cols = [pl.Series(c, out[i], dtype=pl.Float32) for i, c in enumerate(feats)]
    share = (n_missing.astype(np.float64) / max(len(feats), 1)).astype(np.float32)
    out = block.with_columns(new_cols).with_columns(pl.Series(MISSING_SHARE, share, dtype=pl.Float32))
    if cfg.label == "rankgauss":
        if all(y is not None for y in labels):
            return out.with_columns([y.alias(f"y_{h}d") for h, y in zip(horizons, labels)]), n_missing
    out = out.with_columns([_label(h, cfg.label, cfg.clip) for h in horizons])
    if cfg.label == "rankgauss":
        out = _rank_gauss_labels(out, horizons)
    return out, n_missing


def _rank_gauss(ret: pl.Series, starts, lens, cells, width) -> pl.Series | None:
    """:func:`_rank_gauss_labels` of one return column of a block of whole dates (``starts``/``lens``:
    each date's rows; ``cells``: each row's cell in a ``[dates, width]`` grid), in numpy.

    Per date: the average rank of each value (ties share it) among the date's values,
    ``(rank - 0.5) / count`` and its Gaussian quantile, the same float64 operations as the
    polars expressions; null where the return is. None when a value is NaN or infinite
    (polars' ranking of those is left to polars).
    """
    x, valid = _values(ret, np.float64)
    finite = np.isfinite(x)
    if valid is not None:
        if not finite[valid].all():
            return None
        finite = valid
    elif not finite.all():
        return None
    dense = np.full((len(starts), width), np.inf)  # missing sorts last, after every value
    flat = dense.reshape(-1)
    flat[cells[finite]] = x[finite]
    cnt = np.add.reduceat(finite, starts, dtype=np.int64)
    order = np.argsort(dense, axis=1)
    s = np.take_along_axis(dense, order, axis=1)
    idx = np.broadcast_to(np.arange(width, dtype=np.float64), s.shape)
    tie = s[:, 1:] == s[:, :-1]
    tie &= s[:, 1:] < np.inf  # (the padding ties with itself: no matter)
    if tie.any():  # a tie group's rank is the mean of its positions
        new = np.ones(s.shape, dtype=bool)
        new[:, 1:] = ~tie
        end = np.ones(s.shape, dtype=bool)
        end[:, :-1] = ~tie
        first = np.maximum.accumulate(np.where(new, idx, 0.0), axis=1)
        last = np.minimum.accumulate(np.where(end, idx, width - 1.0)[:, ::-1], axis=1)[:, ::-1]
        ranks = (first + last) / 2.0 + 1.0  # 1-based
    else:
        ranks = idx + 1.0
    rank = np.empty_like(dense)
    np.put_along_axis(rank, order, ranks, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # (a date without returns: all null)
        u = (rank.reshape(-1)[cells] - 0.5) / np.repeat(cnt, lens)
        y = ndtri(u).astype(np.float32)
    return pl.Series(ret.name, y, dtype=pl.Float32).scatter(np.flatnonzero(~finite), None)


def _values(col: pl.Series, ft: type) -> tuple[np.ndarray, np.ndarray | None]:
    """A column's values as ``ft`` (arbitrary where null) and its validity (None: no nulls).

    Read through Arrow's buffers without copying: polars' ``to_numpy`` writes NaN into the null
    slots of a fresh array, which costs more than all of the column's arithmetic.
    """
    arr = col.cast(pl.Float64 if ft is np.float64 else pl.Float32).to_arrow()
    size = len(arr) + arr.offset
    validity, values = arr.buffers()[:2]
    x = np.frombuffer(values, dtype=ft, count=size)[arr.offset :]
    if not arr.null_count:
        return x, None
    valid = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), count=size, bitorder="little")[arr.offset :]
    return x, valid.view(bool)


def _centred_rows(x, finite, med, need, date_id, pos, width) -> np.ndarray:
    """The dates ``need``'s values minus their median as ``[dates, width]`` rows (NaN = missing), in row order."""
    rows = np.full((need.size, width), np.nan, dtype=x.dtype)
    sel = np.flatnonzero(np.isin(date_id, need))
    rows[np.searchsorted(need, date_id[sel]), pos[sel]] = np.where(finite[sel], x[sel], x.dtype.type(np.nan))
    rows -= med[need][:, None]
    return rows


def _sorted_median(S: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Median of each row of ``S`` (sorted, NaN last) over its first ``cnt`` values; NaN if none.

    An even count takes the midpoint of the two middle values, computed like polars
    (in float64, rounded once to the column's type).
    """
    rows = np.arange(S.shape[0])
    hi = np.minimum(cnt // 2, S.shape[1] - 1)
    lo = np.maximum((cnt - 1) // 2, 0)
    a = S[rows, lo].astype(np.float64)
    b = S[rows, hi].astype(np.float64)
    med = (a + (b - a) * 0.5).astype(S.dtype)
    med[cnt == 0] = np.nan
    return med


def _date_scales(dense: np.ndarray, cnt: np.ndarray, centred_rows) -> tuple[np.ndarray, np.ndarray]:
    """Per date (row of ``dense``, NaN = missing, ``cnt`` values): the median and the robust scale.

    The scale is 1.4826 * MAD, or where that is 0 the standard deviation of the values
    (``centred_rows(dates, median)``: those dates' values minus their median, in row order), NaN where
    both are 0 or undefined. Arithmetic in ``dense``'s float type (float32 for the features
    stage's panel), like the polars expressions this replaces: same values, bit for bit.
    ``dense`` is sorted in place and then overwritten (its NaN cells stay NaN).
    """
    ft = dense.dtype.type
    dense.sort(axis=1)  # NaN last
    med = _sorted_median(dense, cnt)
    np.subtract(dense, med[:, None], out=dense)  # |x - median|, from the sorted values: the same set
    np.abs(dense, out=dense)
    dense.sort(axis=1)
    mad = _sorted_median(dense, cnt) * ft(MAD_TO_STD)
    with np.errstate(invalid="ignore"):
        use_mad = mad > ft(1e-12)
    scale = np.where(use_mad, mad, ft(np.nan)).astype(ft)
    need = np.flatnonzero(~use_mad & (cnt > 1))
    if need.size:
        scale[need] = _std_fallback(centred_rows(need, med))
    return med, scale


def _std_fallback(rows: np.ndarray) -> np.ndarray:
    """Sample std (ddof=1) of the non-NaN values of each row, by polars as before; NaN if <= 1e-12.

    A row's values are taken in the panel's row order (the row is the date's stocks in
    code order), as polars summed them.
    """
    ft = rows.dtype.type
    dtype = pl.Float64 if ft is np.float64 else pl.Float32
    d = np.repeat(np.arange(rows.shape[0]), rows.shape[1])
    df = pl.DataFrame({"d": d, "x": pl.Series(rows.reshape(-1), dtype=dtype, nan_to_null=True)})
    std = df.group_by("d", maintain_order=True).agg(pl.col("x").std()).get_column("x")
    out = std.fill_null(np.nan).to_numpy().astype(ft)
    with np.errstate(invalid="ignore"):
        out[~(out > ft(1e-12))] = np.nan
    return out


def _label(h: int, kind: str, clip: float) -> pl.Expr:
    """Per-date z-score of ``ret_{h}d`` (rank-gauss is applied after collect)."""
    r = pl.col(f"ret_{h}d")
    if kind == "rankgauss":
        return r.alias(f"y_{h}d")
    z = (r - r.mean().over("date")) / r.std().over("date")
    return z.clip(-clip, clip).cast(pl.Float32).alias(f"y_{h}d")


def _rank_gauss_labels(panel: pl.DataFrame, horizons: list[int]) -> pl.DataFrame:
    """Replace ``y_{h}d`` with the Gaussian quantile of its per-date rank."""
    exprs = []
    for h in horizons:
        r = pl.col(f"ret_{h}d")
        u = (r.rank("average").over("date") - 0.5) / r.count().over("date")
        exprs.append(u.alias(f"y_{h}d"))
    ranked = panel.with_columns(exprs)
    cols = {}
    for h in horizons:
        u = ranked[f"y_{h}d"].to_numpy(allow_copy=True).astype(np.float64)
        cols[f"y_{h}d"] = pl.Series(f"y_{h}d", ndtri(u), dtype=pl.Float64).cast(pl.Float32)
    return ranked.with_columns(list(cols.values())).with_columns(
        [pl.col(f"y_{h}d").fill_nan(None) for h in horizons]
    )
