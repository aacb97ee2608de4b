"""Newey-West (HAC) inference for the mean of a daily series, and pairwise RankIC tests.

Daily RankIC is autocorrelated (signal strength comes and goes), and at an
h-day horizon consecutive labels share h-1 days of return, so the naive iid
standard error ``std / sqrt(T)`` is too small. The Newey-West estimator sums
the autocovariances up to ``L`` lags with Bartlett weights ``1 - j / (L + 1)``,
which keeps the variance non-negative:

    var(mean) = (gamma_0 + 2 * sum_{j=1..L} (1 - j / (L + 1)) * gamma_j) / T,
    gamma_j = sum_t (x_t - m)(x_{t-j} - m) / T.

Default lags (:func:`lags_for`): ``floor(4 * (T / 100) ** (2 / 9))`` (Newey and
West 1994), and at least ``h - 1`` for an h-day horizon because the overlap of
h-day labels alone makes the series MA(h-1). NaN days are dropped (pairwise for
a difference) and the remaining days are treated as consecutive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl


def lags_for(horizon: int, n: int) -> int:
    """Bartlett lags for ``n`` days at an ``horizon``-day label: max(NW94 rule, h - 1), at most n - 1."""
    if n <= 1:
        return 0
    rule = int(np.floor(4 * (n / 100) ** (2 / 9)))
    return int(min(max(rule, horizon - 1), n - 1))


def newey_west(
    x: np.ndarray, lags: int | Sequence[int] | np.ndarray | None = None, horizon: int = 1
) -> dict[str, np.ndarray]:
    """Row-wise Newey-West inference for the mean of each row of ``x`` (1-D or ``(k, T)``).

    Returns arrays ``mean, se, t, n, lags`` (one entry per row). NaN entries are
    dropped per row; ``lags`` is one int for every row, one per row, or None for
    :func:`lags_for` on each row's own ``n``. A row with fewer than 2 values, or a
    zero standard error, gives NaN ``se``/``t``.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    k, width = x.shape
    valid = np.isfinite(x)
    n = valid.sum(axis=1)

    # Compact each row's valid values to the front, zeros after: the zeros add
    # nothing to any autocovariance, so every row is its own dropped-NaN series.
    order = np.argsort(~valid, axis=1, kind="stable")
    values = np.take_along_axis(np.where(valid, x, 0.0), order, axis=1)
    filled = np.take_along_axis(valid, order, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = values.sum(axis=1) / n
    e = np.where(filled, values - np.nan_to_num(mean)[:, None], 0.0)

    if lags is None:
        lag = np.array([lags_for(horizon, int(c)) for c in n], dtype=np.int64)
    else:
        lag = np.broadcast_to(np.asarray(lags, dtype=np.int64), (k,)).copy()
        if (lag < 0).any():
            raise ValueError(f"lags must be >= 0, got {lags}")
        lag = np.minimum(lag, np.maximum(n - 1, 0))
    max_lag = int(lag.max()) if k else 0

    # All autocovariances at once: |FFT|^2 of the zero-padded rows (no wrap-around at 2T).
    size = 1 << int(np.ceil(np.log2(max(2 * width, 2))))
    spec = np.fft.rfft(e, n=size, axis=1)
    acov = np.fft.irfft(spec * spec.conj(), n=size, axis=1)[:, : max_lag + 1]
    j = np.arange(max_lag + 1)
    weights = np.where(j[None, :] <= lag[:, None], 1.0 - j[None, :] / (lag[:, None] + 1.0), 0.0)
    weights[:, 1:] *= 2.0  # gamma_j and gamma_-j
    long_run = (acov * weights).sum(axis=1)  # T * long-run variance, before the 1/T of gamma

    with np.errstate(invalid="ignore", divide="ignore"):
        var_mean = long_run / n.astype(np.float64) ** 2
        se = np.sqrt(np.clip(var_mean, 0.0, None))
        se = np.where((n >= 2) & (se > 0), se, np.nan)
        t = mean / se
    return {"mean": mean, "se": se, "t": t, "n": n, "lags": lag}


def newey_west_t(
    x: np.ndarray | Sequence[float], lags: int | None = None, *, horizon: int = 1
) -> tuple[float, float, float, int, int]:
    """``(mean, se, t, n, lags)`` of a 1-D series, NaN dropped; default lags :func:`lags_for` (horizon, n)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D series, got shape {x.shape}")
    out = newey_west(x, lags, horizon)
    return (float(out["mean"][0]), float(out["se"][0]), float(out["t"][0]), int(out["n"][0]), int(out["lags"][0]))


def aligned(series: Mapping[str, pl.DataFrame], column: str) -> tuple[list[str], np.ndarray]:
    """``(names, matrix)``: ``column`` of every frame on the union of their dates (NaN where absent)."""
    names = list(series)
    if not names:
        return names, np.empty((0, 0))
    for name, frame in series.items():
        if column not in frame.columns or "date" not in frame.columns:
            raise ValueError(f"{name}: daily series needs columns date and {column}, has {frame.columns}")
    wide = None
    for name, frame in series.items():
        part = frame.select("date", pl.col(column).cast(pl.Float64).alias(name))
        wide = part if wide is None else wide.join(part, on="date", how="full", coalesce=True)
    wide = wide.sort("date")
    return names, wide.select(names).to_numpy().astype(np.float64).T  # nulls become NaN


def pairwise_rank_ic_tests(
    series: Mapping[str, pl.DataFrame], horizon: int, lags: int | None = None
) -> pl.DataFrame:
    """Every ordered pair ``(a, b)``, a != b: mean daily RankIC of a minus b on the days both have.

    ``series`` maps a model to a frame with ``date`` and ``rank_ic_{horizon}d``
    (``plots/<model>/rank_ic.csv``). Columns ``a, b, diff, se, t, n, lags``: the
    Newey-West standard error and t-statistic of the mean difference, ``n`` common
    days. Rows in ``series`` order (a, then b).
    """
    names, matrix = aligned(series, f"rank_ic_{horizon}d")
    ia, ib = (idx.ravel() for idx in np.meshgrid(np.arange(len(names)), np.arange(len(names)), indexing="ij"))
    keep = ia != ib
    ia, ib = ia[keep], ib[keep]
    # NaN - x is NaN, so a day either model lacks drops out of that pair only.
    stats = newey_west(matrix[ia] - matrix[ib], lags, horizon) if ia.size else {
        k: np.empty(0) for k in ("mean", "se", "t", "n", "lags")
    }
    return pl.DataFrame(
        {
            "a": [names[i] for i in ia],
            "b": [names[i] for i in ib],
            "diff": stats["mean"],
            "se": stats["se"],
            "t": stats["t"],
            "n": stats["n"],
            "lags": stats["lags"],
        },
        schema={"a": pl.String, "b": pl.String, "diff": pl.Float64, "se": pl.Float64, "t": pl.Float64,
                "n": pl.Int64, "lags": pl.Int64},
    ).with_columns(pl.col(c).fill_nan(None) for c in ("diff", "se", "t"))
