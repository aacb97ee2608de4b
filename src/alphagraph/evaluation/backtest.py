"""Top-k dropout backtest with Qlib's semantics, so the figures sit beside Qlib's published table.

Qlib's ``TopkDropoutStrategy`` (method_sell "bottom", method_buy "top",
hold_thresh 1), its ``Exchange`` (deal price close, costs with a minimum per
trade, optional price limit) and ``risk_analysis`` (sum mode), daily:

- The signal of market day p trades at the close of day p + ``delay``
  (``eval.execution_lag``, default 1: the next session, as Qlib trades day t
  on the score of day t - 1; 0 is the idealized same-close fill, which no
  trader gets: the score needs the close it would trade at).
- ``last``: the held stocks by score, best first (a held stock without a score
  that day is last). ``today``: the ``n_drop + topk - len(last)`` best scored
  stocks not held. ``comb``: both, by score. ``sell``: the held stocks among
  the ``n_drop`` worst of ``comb``. ``buy``: the first ``len(sell) + topk -
  len(last)`` of ``today``. Ties: by code. With ``replace_only`` (the default;
  Qlib's is false) at most as many held stocks are sold as ``today`` has
  candidates left once the empty slots are filled, so a universe of ``topk``
  stocks or fewer is held, not churned.
- Sells first, at the close: cash += value - max(value x close_cost, min_cost).
  Then each buy gets cash x risk_degree / len(buy), less max(value x open_cost,
  min_cost) (clipped to the cash left as Qlib's exchange does). Holdings are
  not rebalanced. Shares are fractional (no trade unit).
- A stock without a close that day (suspended), or whose close moved by at
  least ``limit_threshold`` (Qlib's default forbids both directions at a
  limit), is not traded: a sell waits, a buy's slot stays cash. A held stock
  that never trades again (delisted): ``delisting: sell`` sells it at its last
  close the day after; ``hold`` keeps it, as Qlib does, as a dead position
  valued at its last close that takes one of the ``topk`` slots (unscored, so
  always among the sells, which never fill) for the rest of the backtest.
- Day t: return = (V_t - V_t-1 + cost_t) / V_t-1 (holdings valued at their last
  close), cost = cost_t / V_t-1, turnover = traded value / V_t-1, excess =
  return - benchmark - cost. Annualized excess = mean x A, information ratio
  = mean / std x sqrt(A), max drawdown = min(cumsum - running max of cumsum)
  (Qlib's sign: <= 0), with A = ``annualization`` (252 sessions a year on US
  exchanges; Qlib 0.9.7's ``risk_analysis`` uses 238 for daily data). The
  first day trades from cash, as in Qlib.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from alphagraph.runtime.config import BacktestConfig
from alphagraph.runtime.errors import UserError

TRADING_DAYS = 252


@dataclass(frozen=True)
class Market:
    """Closes on the market calendar and the benchmark's daily return."""

    dates: list[date]
    codes: list[str]
    close: np.ndarray  # [day, stock], NaN where the stock did not trade
    benchmark: np.ndarray  # [day], return from the previous market day's close; NaN where unknown
    benchmark_name: str = "equal-weight universe"

    @classmethod
    def from_frames(cls, prices: pl.DataFrame, benchmark: pl.DataFrame, name: str = "equal-weight universe") -> Market:
        """``prices``: date, code, close; ``benchmark``: date, return (its own calendar)."""
        dates = prices.select(pl.col("date").unique().sort())["date"]
        codes = prices.select(pl.col("code").unique().sort())["code"]
        t = prices["date"].replace_strict(dates, pl.int_range(dates.len(), eager=True), return_dtype=pl.Int64)
        c = prices["code"].replace_strict(codes, pl.int_range(codes.len(), eager=True), return_dtype=pl.Int64)
        close = np.full((dates.len(), codes.len()), np.nan)
        close[t.to_numpy(), c.to_numpy()] = prices["close"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        return cls(dates.to_list(), codes.to_list(), close, benchmark_on(dates, benchmark), name)


def benchmark_on(calendar: pl.Series, benchmark: pl.DataFrame) -> np.ndarray:
    """The benchmark's return between consecutive days of ``calendar``: its compounded level, as of each day.

    NaN before the benchmark's first day and after its last.
    """
    bench = benchmark.sort("date")
    first_return = bench["return"][0] if bench.height else None
    bench = bench.select("date", level=(1 + pl.col("return").fill_null(0.0)).cum_prod())
    first, last = bench["date"].min(), bench["date"].max()
    if first is None:
        return np.full(calendar.len(), np.nan)
    cal = pl.DataFrame({"date": calendar})
    levels = cal.join_asof(bench, on="date", strategy="backward")["level"].to_numpy().astype(float)
    out = np.full(len(levels), np.nan)
    out[1:] = levels[1:] / levels[:-1] - 1
    days = calendar.to_numpy()
    out[(days <= np.datetime64(first)) | (days > np.datetime64(last))] = np.nan
    if first_return is not None and np.datetime64(first) in days:
        # A returns file knows its first day's return although not the level before it.
        out[int(np.searchsorted(days, np.datetime64(first)))] = float(first_return)
    return out


def _fee(value: float, rate: float, min_cost: float) -> float:
    return max(value * rate, min_cost) if value > 1e-5 else 0.0


def _buy_value(value: float, cash: float, rate: float, min_cost: float) -> float:
    """The traded value Qlib's exchange allows for a buy of ``value`` with ``cash`` left."""
    if cash >= value + _fee(value, rate, min_cost):
        return value
    if cash < min_cost:
        return 0.0
    critical = min_cost / rate + min_cost if rate > 0 else math.inf
    return min(value, cash / (1 + rate) if cash >= critical else cash - min_cost)


def topk_dropout(
    scores: pl.DataFrame, market: Market, cfg: BacktestConfig, delay: int = 0, source: str = "predictions"
) -> pl.DataFrame:
    """Backtest ``scores`` (date, code, score; a null or NaN score is no score) on ``market`` (module docstring).

    One row per market day from the first trade to the last: ``date, signal_date, value, return, cost,
    turnover, benchmark, excess, n_held, held`` (the codes held after the day's trades).
    """
    day_of = {d: i for i, d in enumerate(market.dates)}
    code_of = {c: i for i, c in enumerate(market.codes)}
    scores = scores.filter(pl.col("score").is_not_null() & pl.col("score").is_not_nan())
    if missing := sorted(set(scores["date"].unique().to_list()) - set(day_of)):
        raise UserError(f"{source}: {len(missing)} prediction date(s) not in the price calendar, first {missing[0]}")
    if unknown := sorted(set(scores["code"].unique().to_list()) - set(code_of)):
        raise UserError(f"{source}: {len(unknown)} code(s) without prices, first {unknown[0]!r}")
    T, N = market.close.shape
    t = scores["date"].replace_strict(day_of, return_dtype=pl.Int64).to_numpy() + delay
    c = scores["code"].replace_strict(code_of, return_dtype=pl.Int64).to_numpy()
    keep = t < T
    if not keep.any():
        raise UserError(f"{source}: no prediction can be traded: every date + label delay {delay} is past the prices")
    days = np.unique(t[keep])
    grid = np.full((len(days), N), np.nan)
    grid[np.searchsorted(days, t[keep]), c[keep]] = scores["score"].cast(pl.Float64).to_numpy()[keep]
    signal = dict(zip(days.tolist(), grid))
    t0, t1 = min(signal), max(signal)
    # The first day starts from cash, so an unknown benchmark return there (the data's first day) counts as 0.
    bench = market.benchmark[t0 : t1 + 1].copy()
    bench[0] = bench[0] if np.isfinite(bench[0]) else 0.0
    if not np.isfinite(bench).all():
        gap = market.dates[t0 + int(np.argmin(np.isfinite(bench)))]
        raise UserError(
            f"benchmark ({market.benchmark_name}): no return on {gap}, inside the backtest"
            f" {market.dates[t0]}..{market.dates[t1]}: the index of data.benchmark_path must cover the test window"
        )

    close = market.close
    traded = np.isfinite(close)
    # Last known close (suspended days keep it) and each stock's last trading day (after it: delisted).
    idx = np.where(traded, np.arange(T)[:, None], -1)
    last_idx = np.maximum.accumulate(idx, axis=0)
    px = np.where(last_idx >= 0, close[np.maximum(last_idx, 0), np.arange(N)[None, :]], np.nan)
    final_day = np.where(traded.any(axis=0), T - 1 - np.argmax(traded[::-1], axis=0), -1)
    tradable = traded.copy()
    if cfg.limit_threshold is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            change = np.vstack([np.full((1, N), np.nan), close[1:] / close[:-1] - 1])
        tradable &= ~(np.abs(change) >= cfg.limit_threshold)  # NaN change (a gap): no limit, as in Qlib

    cash, shares = cfg.account, {}  # stock index -> shares, in buying order
    prev_value = cfg.account
    rows: dict[str, list[Any]] = {k: [] for k in ("date", "signal_date", "value", "return", "cost", "turnover", "n_held", "held")}
    signal_day: int | None = None
    for t in range(t0, t1 + 1):
        cost = traded_value = 0.0
        for i in [i for i in shares if final_day[i] < t and cfg.delisting == "sell"]:  # delisted: sold at the last close
            value = shares.pop(i) * px[t, i]
            fee = _fee(value, cfg.close_cost, cfg.min_cost)
            cash, cost, traded_value = cash + value - fee, cost + fee, traded_value + value
        if t in signal:
            signal_day = t - delay
            sell, buy = _decide(signal[t], list(shares), cfg)
            for i in sell:
                if not tradable[t, i]:
                    continue
                value = shares.pop(i) * close[t, i]
                fee = _fee(value, cfg.close_cost, cfg.min_cost)
                cash, cost, traded_value = cash + value - fee, cost + fee, traded_value + value
            per_buy = cash * cfg.risk_degree / len(buy) if buy else 0.0
            for i in buy:
                if not tradable[t, i]:
                    continue
                value = _buy_value(per_buy, cash, cfg.open_cost, cfg.min_cost)
                if value <= 0:
                    continue
                fee = _fee(value, cfg.open_cost, cfg.min_cost)
                shares[i] = value / close[t, i]
                cash, cost, traded_value = cash - value - fee, cost + fee, traded_value + value
        value = cash + sum(n * px[t, i] for i, n in shares.items())
        rows["date"].append(market.dates[t])
        rows["signal_date"].append(market.dates[signal_day] if signal_day is not None else None)
        rows["value"].append(value)
        rows["return"].append((value - prev_value + cost) / prev_value)
        rows["cost"].append(cost / prev_value)
        rows["turnover"].append(traded_value / prev_value)
        rows["n_held"].append(len(shares))
        rows["held"].append(sorted(market.codes[i] for i in shares))
        prev_value = value
    daily = pl.DataFrame(rows, schema_overrides={"signal_date": pl.Date, "held": pl.List(pl.Utf8)})
    daily = daily.with_columns(benchmark=pl.Series(bench))
    daily = daily.with_columns(excess=pl.col("return") - pl.col("benchmark") - pl.col("cost"))
    return daily.select("date", "signal_date", "value", "return", "cost", "turnover", "benchmark", "excess", "n_held", "held")


def _ranked(score: np.ndarray, stocks: np.ndarray) -> np.ndarray:
    """``stocks`` by score, best first; no score last; ties by code (stock indices follow sorted codes)."""
    key = np.where(np.isfinite(score[stocks]), -score[stocks], np.inf)
    return stocks[np.lexsort((stocks, key))]


def _decide(score: np.ndarray, held: list[int], cfg: BacktestConfig) -> tuple[list[int], list[int]]:
    """Qlib's TopkDropoutStrategy: the held stocks to sell and the stocks to buy, in order."""
    held_arr = np.asarray(held, dtype=np.int64)
    last = _ranked(score, held_arr)
    is_held = np.zeros(len(score), dtype=bool)
    is_held[held_arr] = True
    candidates = np.flatnonzero(np.isfinite(score) & ~is_held)
    today = _ranked(score, candidates)[: max(cfg.n_drop + cfg.topk - len(last), 0)]
    comb = _ranked(score, np.concatenate([last, today]))
    worst = set(comb[len(comb) - cfg.n_drop :].tolist()) if cfg.n_drop else set()
    sell = [int(i) for i in last if int(i) in worst]
    if cfg.replace_only:  # no sell whose slot no candidate fills (buys = sells + topk - len(last))
        sell = sell[: max(len(today) + len(last) - cfg.topk, 0)]
    buy = [int(i) for i in today[: max(len(sell) + cfg.topk - len(last), 0)]]
    return sell, buy


def risk_analysis(returns: np.ndarray, annualization: float = TRADING_DAYS) -> dict[str, float]:
    """Qlib's ``risk_analysis`` (sum mode) of daily returns: annualized return, information ratio, max drawdown."""
    r = returns[np.isfinite(returns)]
    if len(r) == 0:
        return {"annualized_return": math.nan, "information_ratio": math.nan, "max_drawdown": math.nan}
    std = float(np.std(r, ddof=1)) if len(r) > 1 else math.nan
    cum = np.cumsum(r)
    return {
        "annualized_return": float(np.mean(r) * annualization),
        "information_ratio": float(np.mean(r) / std * math.sqrt(annualization)) if std and std > 0 else math.nan,
        "max_drawdown": float(np.min(cum - np.maximum.accumulate(cum))),
    }


def topk_stats(daily: pl.DataFrame, annualization: float = TRADING_DAYS) -> dict[str, float]:
    """Headline and detail figures of a backtest (keys without the ``topk_`` prefix and horizon suffix)."""
    excess = risk_analysis(daily["excess"].to_numpy(), annualization)
    gross = risk_analysis((daily["return"] - daily["benchmark"]).to_numpy(), annualization)
    return {
        "excess_return": excess["annualized_return"],
        "information_ratio": excess["information_ratio"],
        "max_drawdown": excess["max_drawdown"],
        "turnover": float(daily["turnover"].mean()) if daily.height else math.nan,
        "excess_return_gross": gross["annualized_return"],
        "information_ratio_gross": gross["information_ratio"],
        "return": float((daily["return"] - daily["cost"]).mean() * annualization) if daily.height else math.nan,
        "cost": float(daily["cost"].mean() * annualization) if daily.height else math.nan,
        "mean_held": float(daily["n_held"].mean()) if daily.height else math.nan,
    }
