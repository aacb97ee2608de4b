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

import polars as pl


def compute_targets(
    prices: pl.DataFrame, horizons: list[int], label_delay: int, signal_threshold: float
) -> pl.DataFrame:
    """``date, code`` + ``ret_{h}d, dir_{h}d, sig_{h}d`` per horizon, same rows and order as prices."""
    if label_delay < 0:
        raise ValueError(f"label_delay must be >= 0, got {label_delay}")
    if not horizons or any(int(h) < 1 for h in horizons):
        raise ValueError(f"horizons must be positive, got {horizons}")
    d = int(label_delay)
    lf = prices.lazy().select("date", "code", pl.col("close").cast(pl.Float64)).with_row_index("_row")
    lf = lf.sort("code", "date")
    rets = []
    for h in horizons:
        h = int(h)
        future = pl.col("close").shift(-(d + h)).over("code")
        base = pl.col("close").shift(-d).over("code") if d else pl.col("close")
        rets.append((future / base - 1.0).alias(f"ret_{h}d"))
    lf = lf.with_columns(rets).sort("_row")
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
    lf = lf.with_columns(labels)
    cols = ["date", "code"]
    for h in horizons:
        cols += [f"ret_{int(h)}d", f"dir_{int(h)}d", f"sig_{int(h)}d"]
    return lf.select(cols).collect()
