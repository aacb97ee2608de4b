"""Where each model wins: test RankIC by sector and by market regime, and per-stock head-to-heads.

All three read the TEST rows (``split == "test"``) of predictions frames
(``date, code, fold, split, pred_{h}d``) joined to a labels frame
(``date, code, ret_{h}d``) on ``(date, code)``; rows with a null or NaN
prediction or label are left out. Walk-forward test windows do not overlap, so
a (date, code) is a test row of one fold at most; a frame where it is not
raises ValueError rather than counting a day twice.

* :func:`sector_rank_ic`: Spearman correlation per date within one sector's
  cross-section, averaged over dates (date-sector groups under ``min_stocks``
  stocks are skipped).
* :func:`regime_rank_ic`: the usual whole-market daily RankIC, averaged over the
  days of each regime (:func:`volatility_regimes` is one such labelling).
* :func:`stock_win_share`: per stock, how well a model ranks that stock over
  time; the share of stocks on which model a beats model b.

``t`` columns are Newey-West t-statistics of the mean daily RankIC
(:mod:`alphagraph.evaluation.significance`, lags at least ``horizon - 1``).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations

import numpy as np
import polars as pl

from alphagraph.evaluation.significance import newey_west

# A within-sector Spearman on fewer stocks is mostly noise (5 stocks: 120 orderings).
MIN_SECTOR_STOCKS = 5
# Whole-market days need 3 stocks for a correlation, as evaluate.daily_ic.
MIN_MARKET_STOCKS = 3
# A per-stock correlation over fewer test days says little.
MIN_STOCK_DAYS = 20
REGIMES = ("calm", "turbulent")


def _test_rows(predictions: Mapping[str, pl.DataFrame], labels: pl.DataFrame, horizon: int) -> pl.DataFrame:
    """``model, date, code, pred, ret`` of every model's labelled test rows."""
    pred, ret = f"pred_{horizon}d", f"ret_{horizon}d"
    if ret not in labels.columns:
        raise ValueError(f"labels: no column {ret}")
    y = labels.select("date", "code", pl.col(ret).cast(pl.Float64).alias("ret"))
    parts = []
    for name, frame in predictions.items():
        missing = [c for c in ("date", "code", "split", pred) if c not in frame.columns]
        if missing:
            raise ValueError(f"predictions {name!r}: missing columns {missing}")
        test = frame.filter(pl.col("split") == "test").select("date", "code", pl.col(pred).cast(pl.Float64).alias("pred"))
        dup = test.select("date", "code").is_duplicated().sum()
        if dup:
            raise ValueError(f"predictions {name!r}: {dup} test rows share a (date, code); test windows overlap")
        parts.append(test.join(y, on=["date", "code"], how="inner").with_columns(model=pl.lit(name)))
    if not parts:
        raise ValueError("wins: no predictions")
    rows = pl.concat(parts).select("model", "date", "code", "pred", "ret").sort("model", "date", "code")
    return rows.filter(pl.col("pred").is_finite() & pl.col("ret").is_finite())


def _daily_rank_ic(rows: pl.DataFrame, by: list[str], min_stocks: int) -> pl.DataFrame:
    """``*by, date, rank_ic, n``: Spearman of pred with ret per group and date, groups of ``min_stocks``+ only."""
    out = rows.group_by(*by, "date").agg(rank_ic=pl.corr("pred", "ret", method="spearman"), n=pl.len()).sort(*by, "date")
    # A constant prediction or label has no correlation (NaN): the day is skipped, not zero.
    return out.filter((pl.col("n") >= min_stocks) & pl.col("rank_ic").is_not_nan() & pl.col("rank_ic").is_not_null())


def _summarize(daily: pl.DataFrame, by: list[str], horizon: int) -> pl.DataFrame:
    """``*by, rank_ic, t, n_days, mean_stocks`` from daily RankIC rows (mean over days, Newey-West t)."""
    schema = {**{c: daily.schema[c] for c in by}, "rank_ic": pl.Float64, "t": pl.Float64, "n_days": pl.Int64,
              "mean_stocks": pl.Float64}
    rows = []
    # One short loop per group: Newey-West needs each group's series in date order.
    for key, part in daily.sort(*by, "date").group_by(by, maintain_order=True):
        x = part["rank_ic"].to_numpy().astype(np.float64)
        nw = newey_west(x, horizon=horizon)
        rows.append((*key, float(nw["mean"][0]), float(nw["t"][0]), len(x), float(part["n"].mean())))
    out = pl.DataFrame(rows, schema=schema, orient="row")
    return out.with_columns(pl.col("t").fill_nan(None)).sort(by)


def _with_sector(rows: pl.DataFrame, sectors: pl.DataFrame) -> pl.DataFrame:
    """Attach each row's sector: on (date, code) when ``sectors`` has a date, on code valid on the date
    when it has ``start``/``end`` (inclusive, null = unbounded, first matching row wins), else on code."""
    if "code" not in sectors.columns or "sector" not in sectors.columns:
        raise ValueError(f"sectors: need columns code and sector, has {sectors.columns}")
    if "date" in sectors.columns:
        table = sectors.select("date", "code", "sector").unique(["date", "code"], keep="first", maintain_order=True)
        return rows.join(table, on=["date", "code"], how="inner")
    if "start" in sectors.columns or "end" in sectors.columns:
        table = sectors.select(
            "code", "sector",
            *((pl.col(c) if c in sectors.columns else pl.lit(None)).cast(pl.Date).alias(c) for c in ("start", "end")),
        ).with_row_index("_row")
        d = pl.col("date")
        valid = (pl.col("start").is_null() | (pl.col("start") <= d)) & (pl.col("end").is_null() | (pl.col("end") >= d))
        keyed = rows.with_row_index("_obs").join(table, on="code", how="inner").filter(valid)
        first = keyed.filter(pl.col("_row") == pl.col("_row").min().over("_obs"))
        return first.drop("_obs", "_row", "start", "end")
    table = sectors.select("code", "sector").unique("code", keep="first", maintain_order=True)
    return rows.join(table, on="code", how="inner")


def sector_rank_ic(
    predictions: Mapping[str, pl.DataFrame],
    labels: pl.DataFrame,
    sectors: pl.DataFrame,
    horizon: int = 1,
    min_stocks: int = MIN_SECTOR_STOCKS,
) -> pl.DataFrame:
    """``model, sector, rank_ic, t, n_days, mean_stocks``: mean daily within-sector test RankIC.

    ``sectors`` has ``code, sector`` and optionally ``date`` (then a stock's
    sector may change by date) or ``start``/``end`` validity dates (the
    universe file); a test row with no (or a null) sector is left out. Per
    model, sector and test date, the Spearman correlation of ``pred_{h}d``
    with ``ret_{h}d`` over that sector's stocks; groups under ``min_stocks``
    stocks or with a constant prediction are skipped. ``n_days`` counts the
    days averaged, ``mean_stocks`` their mean cross-section.
    """
    rows = _with_sector(_test_rows(predictions, labels, horizon), sectors).filter(pl.col("sector").is_not_null())
    return _summarize(_daily_rank_ic(rows, ["model", "sector"], min_stocks), ["model", "sector"], horizon)


def regime_rank_ic(
    predictions: Mapping[str, pl.DataFrame],
    labels: pl.DataFrame,
    regimes: pl.DataFrame,
    horizon: int = 1,
    min_stocks: int = MIN_MARKET_STOCKS,
) -> pl.DataFrame:
    """``model, regime, rank_ic, t, n_days, mean_stocks``: mean whole-market daily test RankIC per regime.

    ``regimes`` has ``date, regime`` (e.g. :func:`volatility_regimes`); test
    days without a regime (its warm-up) are left out.
    """
    if "date" not in regimes.columns or "regime" not in regimes.columns:
        raise ValueError(f"regimes: need columns date and regime, has {regimes.columns}")
    daily = _daily_rank_ic(_test_rows(predictions, labels, horizon), ["model"], min_stocks)
    days = regimes.select("date", "regime").drop_nulls().unique("date", keep="first", maintain_order=True)
    return _summarize(daily.join(days, on="date", how="inner"), ["model", "regime"], horizon)


def market_returns(prices: pl.DataFrame) -> pl.DataFrame:
    """``date, market_ret``: equal-weight mean of the stocks' close-to-close returns from the previous market day.

    A stock that did not trade on the previous market day has no return that
    day (a multi-day gap would pass for one day's move); the first date has none.
    """
    cal = prices.select(pl.col("date").unique().sort()).with_row_index("t")
    px = prices.select("date", "code", pl.col("close").cast(pl.Float64)).join(cal, on="date")
    prev = px.select("code", (pl.col("t") + 1).alias("t"), pl.col("close").alias("close_prev"))
    ret = px.join(prev, on=["code", "t"], how="inner").select(
        "date", (pl.col("close") / pl.col("close_prev") - 1).alias("r")
    )
    ret = ret.filter(pl.col("r").is_finite())
    return cal.select("date").join(ret.group_by("date").agg(market_ret=pl.col("r").mean()), on="date", how="left")


def volatility_regimes(prices: pl.DataFrame, window: int = 20, min_history: int | None = None) -> pl.DataFrame:
    """``date, regime, vol, vol_median``: "turbulent" when market volatility is above its expanding median, else "calm".

    ``vol`` at date t is the standard deviation of the equal-weight market
    return (:func:`market_returns`) over the last ``window`` market days up to
    and including t (the close of t is known at t); ``vol_median`` is the
    median of ``vol`` over all dates up to and including t. Both use nothing
    after t, so the label of t never changes when later prices do (a
    full-sample median would leak the future mix of calm and turbulent days).
    Dates before ``window`` returns and ``min_history`` (default ``window``)
    volatility values exist have no stable label and are left out.
    """
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    min_history = window if min_history is None else min_history
    mkt = market_returns(prices).sort("date")
    vol = mkt.with_columns(
        vol=pl.col("market_ret").rolling_std(window_size=window, min_samples=window)
    ).filter(pl.col("vol").is_not_null())
    # An expanding median is a rolling median whose window spans the whole history.
    vol = vol.with_columns(
        vol_median=pl.col("vol").rolling_median(window_size=max(vol.height, 1), min_samples=min_history)
    )
    return vol.filter(pl.col("vol_median").is_not_null()).select(
        "date",
        pl.when(pl.col("vol") > pl.col("vol_median")).then(pl.lit("turbulent")).otherwise(pl.lit("calm")).alias("regime"),
        "vol",
        "vol_median",
    )


def _stock_accuracy(rows: pl.DataFrame, a: str, b: str) -> pl.DataFrame:
    """``code, acc_a, acc_b, n`` on the (date, code) test rows both models have.

    Ranks (``rank / (n + 1)``) are taken within each date's common cross-section,
    so both models are judged against the same realized ranking.
    """
    pa = rows.filter(pl.col("model") == a).select("date", "code", pl.col("pred").alias("pa"), "ret")
    pb = rows.filter(pl.col("model") == b).select("date", "code", pl.col("pred").alias("pb"))
    # Neither a join's nor a group_by's row order is fixed; sorted, every sum adds in one order
    # (byte-identical reruns).
    both = pa.join(pb, on=["date", "code"], how="inner").sort("date", "code")
    n = pl.len().over("date") + 1
    ranked = both.select("code", *(
        (pl.col(c).rank("average").over("date") / n).alias(c) for c in ("pa", "pb", "ret")
    ))
    return ranked.group_by("code").agg(
        acc_a=pl.corr("pa", "ret"), acc_b=pl.corr("pb", "ret"), n=pl.len()
    ).sort("code")


def stock_win_share(
    predictions: Mapping[str, pl.DataFrame],
    labels: pl.DataFrame,
    horizon: int = 1,
    min_days: int = MIN_STOCK_DAYS,
) -> pl.DataFrame:
    """``model_a, model_b, share, n_stocks, accuracy_a, accuracy_b`` for every ordered pair a != b.

    A stock's "rank accuracy" under a model is the Pearson correlation, over
    test dates, of the model's cross-sectional rank of the stock
    (``rank / (n + 1)`` of ``pred_{h}d`` that day) with the stock's realized
    cross-sectional rank (of ``ret_{h}d``): does the model place this stock
    high on the days it does well? (A per-stock mean of daily RankIC
    contributions is not defined, a correlation needs a cross-section.) A pair
    is compared on the test (date, code) rows both models predict, ranks taken
    within those common cross-sections; only stocks with ``min_days`` such
    dates and a defined accuracy under both count (``n_stocks``). ``share`` is
    the fraction of them where a's accuracy is strictly higher (ties are no
    win, so share(a, b) + share(b, a) <= 1; null without stocks);
    ``accuracy_a`` / ``accuracy_b`` are the mean accuracies over those stocks.
    """
    rows = _test_rows(predictions, labels, horizon)
    schema = {"model_a": pl.String, "model_b": pl.String, "share": pl.Float64, "n_stocks": pl.Int64,
              "accuracy_a": pl.Float64, "accuracy_b": pl.Float64}
    out = []
    for a, b in combinations(list(predictions), 2):  # a few models: one join per unordered pair
        acc = _stock_accuracy(rows, a, b).filter(
            (pl.col("n") >= min_days) & pl.col("acc_a").is_finite() & pl.col("acc_b").is_finite()
        )
        for x, y, ax, ay in ((a, b, "acc_a", "acc_b"), (b, a, "acc_b", "acc_a")):
            out.append(acc.select(
                pl.lit(x).alias("model_a"),
                pl.lit(y).alias("model_b"),
                (pl.col(ax) > pl.col(ay)).mean().cast(pl.Float64).alias("share"),
                pl.len().cast(pl.Int64).alias("n_stocks"),
                pl.col(ax).mean().cast(pl.Float64).alias("accuracy_a"),
                pl.col(ay).mean().cast(pl.Float64).alias("accuracy_b"),
            ))
    return pl.concat(out) if out else pl.DataFrame(schema=schema)
