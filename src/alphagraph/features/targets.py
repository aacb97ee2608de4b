"""Forward-looking labels (used only as targets, never as inputs).

For each horizon h and label delay d (trading days):

* ``ret_{h}d`` = close(t+d+h) / close(t+d) - 1, with t+k the stock's k-th next own
  row (suspended days are skipped, like the features); null where that row is not
  in the data (end of sample, delisting). ``d = 0`` is close(t) -> close(t+h);
  ``d = 1`` is Qlib's convention (signal at the close of t, traded at t+1).
* ``dir_{h}d`` (Int8) = 1 if ret > 0 else 0; null where ret is null.
* ``sig_{h}d`` (Int8) = 1 if |z| > signal_threshold else 0, z the per-date
  cross-sectional z-score of ``ret_{h}d`` (mean and sample std, ddof=1, over the
  stocks with a return that date); null where ret is null or z is undefined
  (fewer than 2 returns on the date, or zero dispersion).
"""

from __future__ import annotations

import numpy as np
import polars as pl


def compute_targets(
    prices: pl.DataFrame, horizons: list[int], label_delay: int, signal_threshold: float
) -> pl.DataFrame:
    """``date, code`` + ``ret_{h}d, dir_{h}d, sig_{h}d`` per horizon, same rows and order as prices."""
    d = _check(horizons, label_delay)
    lf = prices.lazy().select("date", "code", pl.col("close").cast(pl.Float64)).with_row_index("_row")
    lf = lf.sort("code", "date")
    code = pl.col("code")

    def own(k: int) -> pl.Expr:
        """close k own rows later; null past the stock's last row (a shift, not one per group)."""
        return pl.when(code.shift(-k).eq_missing(code)).then(pl.col("close").shift(-k)) if k else pl.col("close")

    rets = [(own(d + int(h)) / own(d) - 1.0).alias(f"ret_{int(h)}d") for h in horizons]
    frame = lf.with_columns(rets).sort("_row").drop("_row", "close").collect()
    return _with_labels(frame, horizons, signal_threshold)


def targets_by_stock(
    prices: pl.DataFrame, horizons: list[int], label_delay: int, signal_threshold: float,
    by_stock: np.ndarray, pos: np.ndarray, run: np.ndarray,
) -> pl.DataFrame:
    """:func:`compute_targets` from a known ordering of the rows: ``by_stock`` lists them by
    stock then date, ``pos`` / ``run`` give each listed row's position in its stock and its
    stock's row count (the features stage has them: no sort of the codes).

    Same values, bit for bit: the returns are the same divisions, and the labels are computed
    on the rows in prices' order by the same expressions.
    """
    d = _check(horizons, label_delay)
    n = prices.height
    close = prices.get_column("close").cast(pl.Float64).to_numpy()[by_stock]
    left = run - pos - 1  # own rows after each listed row
    cols = []
    for h in horizons:
        k = d + int(h)
        r = np.empty(n)
        with np.errstate(invalid="ignore", divide="ignore"):  # (across two stocks: masked below)
            np.divide(close[k:], close[d : n - k + d], out=r[: n - k])
        r[: n - k] -= 1.0
        ok = left >= k
        out = np.empty(n)
        out[by_stock] = r
        missing = np.empty(n, dtype=bool)
        missing[by_stock] = ~ok
        cols.append(pl.Series(f"ret_{int(h)}d", out).scatter(np.flatnonzero(missing), None))
    frame = prices.select("date", "code").with_columns(cols)
    return _with_labels(frame, horizons, signal_threshold)


def _check(horizons: list[int], label_delay: int) -> int:
    if label_delay < 0:
        raise ValueError(f"label_delay must be >= 0, got {label_delay}")
    if not horizons or any(int(h) < 1 for h in horizons):
        raise ValueError(f"horizons must be positive, got {horizons}")
    return int(label_delay)


def _with_labels(frame: pl.DataFrame, horizons: list[int], signal_threshold: float) -> pl.DataFrame:
    """``date, code, ret_{h}d`` (rows in prices' order) -> the same plus ``dir_{h}d, sig_{h}d``, in column order."""
    labels = []
    for h in horizons:
        r = pl.col(f"ret_{int(h)}d")
        z = (r - r.mean().over("date")) / r.std(ddof=1).over("date")
        labels.append(pl.when(r.is_null()).then(None).otherwise((r > 0).cast(pl.Int8)).alias(f"dir_{int(h)}d"))
        labels.append(
            pl.when(r.is_null() | ~z.is_finite())
            .then(None)
            .otherwise((z.abs() > signal_threshold).cast(pl.Int8))
            .alias(f"sig_{int(h)}d")
        )
    cols = ["date", "code"]
    for h in horizons:
        cols += [f"ret_{int(h)}d", f"dir_{int(h)}d", f"sig_{int(h)}d"]
    return frame.lazy().with_columns(labels).select(cols).collect()
