"""One evaluator for every model (DESIGN.md, "Evaluation protocol").

Inputs are a predictions frame (``date, code, fold, split, pred_{h}d`` and
optionally ``p_up_{h}d``, ``p_signal_{h}d``) and a realized-returns frame
(``date, code, ret_{h}d, r_next`` and optionally ``dir_{h}d``, ``sig_{h}d``)
where ``r_next`` is the stock's simple return from the close of t to the close
of the next market day (null if it did not trade then). Metrics are per
horizon, per fold and pooled over every test window, with stable flat key
names (``test.rank_ic_5d``).

Classification heads are scored on the rows they are trained on:

- signal head (``p_signal_{h}d`` against ``sig_{h}d``, all rows):
  ``sig_precision_{h}d`` and ``sig_recall_{h}d`` (a signal is predicted when
  ``p_signal >= 0.5``), ``sig_auc_{h}d`` (ROC-AUC), ``sig_base_rate_{h}d``
  (share of rows with ``sig_{h}d == 1``);
- direction head (``p_up_{h}d`` against ``dir_{h}d``): ``direction_*_{h}d``
  (:func:`classification_stats`). A model with a signal head is hierarchical,
  its direction head learns ``P(up | signal)`` on ``sig_{h}d == 1`` rows only,
  so it is scored on those rows only; a model without one (or a realized
  frame without ``sig_{h}d``) on all rows. The names stay the same either
  way, so ``direction_on_signal_{h}d`` says which (1: signal rows only, 0: all
  rows; a number, as ``dvc metrics`` / ``dvc exp show`` compare numbers); the
  confusion counts sum to the rows scored.

Rigor figures (detail reports only; the headline metrics are unchanged):

- ``sharpe_horizon_{h}d``: Sharpe of the h-day TRADES: the gross return of
  formation t held over its label window, R_t = sum_i w_t,i * ret_{h}d_i,t
  (a null return contributes 0; dates with no return known are left out),
  mean / std x sqrt(252 / h). (``sharpe_{h}d`` is the daily P&L of the
  overlapping-tranche book, x sqrt(252): already daily, so not horizon-adjusted.)
- ``horizon_autocorr_{h}d``: rho, the lag-1 autocorrelation of the h-day
  period returns: corr(R_t, R_t+h) over the daily-sampled trades (lag h days,
  so the h - 1 days that consecutive overlapping trades share do not count).
- ``sharpe_horizon_adj_{h}d``: the overlapping-trade correction
  ``sharpe_horizon / sqrt(1 + 2 max(rho, 0))`` (Lo 2002 with one lag): serially
  correlated periods add variance over a year; a negative rho is not credited.
- ``ic_per_turnover_{h}d``: mean RankIC / mean daily turnover of the h-day book.
- ``psi.psi_alert_{h}d``: 1 when the val-vs-test PSI of ``pred_{h}d`` exceeds
  ``eval.psi_alert`` (also a warning in the log), else 0; null when PSI is.

Top-k dropout backtest (:mod:`alphagraph.evaluation.backtest`, Qlib's strategy and
defaults, ``eval.backtest``) when a :class:`~alphagraph.evaluation.backtest.Market` is
given: one account over the pooled test windows per horizon, trading on
``pred_{h}d``. ``topk_excess_return_{h}d`` (annualized excess over the
benchmark after costs), ``topk_information_ratio_{h}d``,
``topk_max_drawdown_{h}d`` (Qlib's sign, <= 0), ``topk_turnover_{h}d``; the
detail adds the gross excess, the portfolio's return, the annualized cost and
the mean number held; per fold, the same figures over that fold's trading days.

Execution (``eval.execution_lag``, default 1): every book trades at the close
``lag`` market days after its prediction's date, the next session by default,
since a score made from the close of day p cannot fill at that close. The
long-short book, the h-day trades and the top-k backtest all use it; the
pooled test group adds the idealized same-close figures
(``{sharpe,sharpe_net,ann_return}_same_close_{h}d``,
``topk_{excess_return,information_ratio,excess_return_gross}_same_close_{h}d``)
for contrast, never as headline figures.

A metric that is undefined (one class absent, no predicted signal) is null.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from alphagraph.evaluation.backtest import Market, topk_dropout, topk_stats
from alphagraph.runtime.config import EvalConfig
from alphagraph.runtime.log import get_logger

TRADING_DAYS = 252
# Figures also reported with the idealized same-close fill (execution lag 0), for contrast.
SAME_CLOSE = ("sharpe", "sharpe_net", "ann_return")
TOPK_SAME_CLOSE = ("excess_return", "information_ratio", "excess_return_gross")
log = get_logger("evaluate")


def next_day_returns(prices: pl.DataFrame) -> pl.DataFrame:
    """``date, code, r_next``: close(t) -> close(next market day), null if not traded then."""
    cal = prices.select(pl.col("date").unique().sort()).with_row_index("t")
    px = prices.select("date", "code", "close").join(cal, on="date")
    nxt = px.select("code", (pl.col("t") - 1).alias("t"), pl.col("close").alias("close_next"))
    out = px.join(nxt, on=["code", "t"], how="left")
    return out.select("date", "code", (pl.col("close_next") / pl.col("close") - 1).alias("r_next"))


def daily_ic(frame: pl.DataFrame, pred: str, target: str) -> pl.DataFrame:
    """Per-date Pearson and Spearman correlation of ``pred`` with ``target``."""
    valid = frame.filter(pl.col(pred).is_not_null() & pl.col(target).is_not_null())
    valid = valid.filter(pl.col(pred).is_not_nan() & pl.col(target).is_not_nan())
    out = valid.group_by("date").agg(
        ic=pl.corr(pred, target, method="pearson"),
        rank_ic=pl.corr(pred, target, method="spearman"),
        n=pl.len(),
    )
    # A date with fewer than 3 stocks, or a constant prediction, has no correlation.
    return out.filter((pl.col("n") >= 3) & pl.col("ic").is_not_nan() & pl.col("rank_ic").is_not_nan()).sort("date")


def _mean_ir(x: np.ndarray) -> tuple[float, float]:
    if len(x) == 0:
        return float("nan"), float("nan")
    mean = float(np.mean(x))
    std = float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")
    return mean, (mean / std if std and std > 0 else float("nan"))


def _matrices(frame: pl.DataFrame, cols: list[str]) -> tuple[pl.Series, list[np.ndarray]]:
    """Sorted unique dates and a [date, code] float matrix (NaN where absent or null) per column of ``frame``."""
    dates = frame.select(pl.col("date").unique().sort())["date"]
    codes = frame.select(pl.col("code").unique().sort())["code"]
    t_idx = frame["date"].replace_strict({d: i for i, d in enumerate(dates.to_list())}, return_dtype=pl.Int64).to_numpy()
    c_idx = frame["code"].replace_strict({c: i for i, c in enumerate(codes.to_list())}, return_dtype=pl.Int64).to_numpy()
    out = []
    for col in cols:
        m = np.full((len(dates), len(codes)), np.nan)
        m[t_idx, c_idx] = frame[col].cast(pl.Float64).fill_null(np.nan).to_numpy()
        out.append(m)
    return dates, out


def trade_returns(frame: pl.DataFrame, pred: str, target: str, quantile: float, lag: int = 0) -> np.ndarray:
    """Gross return of each date's long-short formation over its label window: sum_i w_t,i * target_i,t+lag.

    ``lag``: market days between the formation and its trade (the trade earns the label of its own day).
    A null return contributes 0; dates where no stock has ``target`` (the end of the data) are left out.
    """
    _, (P, R) = _matrices(frame, [pred, target])
    w = _formations(P, quantile)
    if lag:
        R = np.vstack([R[lag:], np.full((min(lag, len(R)), R.shape[1]), np.nan)])
    known = np.isfinite(R).any(axis=1)
    return (w * np.nan_to_num(R, nan=0.0)).sum(axis=1)[known]


def horizon_sharpe(trades: np.ndarray, horizon: int) -> dict[str, float]:
    """Sharpe of h-day trade returns x sqrt(252 / h), their lag-h autocorrelation, the corrected Sharpe (module docstring)."""
    nan = float("nan")
    sd = float(np.std(trades, ddof=1)) if len(trades) > 1 else 0.0
    sharpe = float(np.mean(trades) / sd * math.sqrt(TRADING_DAYS / horizon)) if sd > 0 else nan
    rho = nan
    if len(trades) > horizon + 2:
        a, b = trades[:-horizon], trades[horizon:]
        if np.std(a) > 0 and np.std(b) > 0:
            rho = float(np.corrcoef(a, b)[0, 1])
    adj = sharpe / math.sqrt(1 + 2 * max(rho, 0.0)) if math.isfinite(rho) else nan
    return {"sharpe_horizon": sharpe, "horizon_autocorr": rho, "sharpe_horizon_adj": adj}


def long_short_pnl(
    frame: pl.DataFrame, pred: str, horizon: int, quantile: float, lag: int, cost_bps: float
) -> pl.DataFrame:
    """Daily P&L of the overlapping-tranche long-short book (gross exposure 2).

    Formation w_t: +1/n on the top ``quantile`` of predictions, -1/n on the
    bottom. Book W_t = mean of the last ``horizon`` formations, each first
    held ``lag`` market days after it was made (bought at that day's close). P&L t -> t+1 is
    sum_i W_t,i * r_next_i,t (a missing return contributes 0).
    """
    dates = frame.select(pl.col("date").unique().sort())["date"]
    codes = frame.select(pl.col("code").unique().sort())["code"]
    di = {d: i for i, d in enumerate(dates.to_list())}
    ci = {c: i for i, c in enumerate(codes.to_list())}
    t_idx = frame["date"].replace_strict(di, return_dtype=pl.Int64).to_numpy()
    c_idx = frame["code"].replace_strict(ci, return_dtype=pl.Int64).to_numpy()
    shape = (len(dates), len(codes))
    P = np.full(shape, np.nan)
    R = np.zeros(shape)
    P[t_idx, c_idx] = frame[pred].cast(pl.Float64).fill_null(np.nan).to_numpy()
    R[t_idx, c_idx] = frame["r_next"].cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()

    w = _formations(P, quantile)
    # Rolling mean of the last h formations via a cumulative sum over dates.
    cs = np.cumsum(np.vstack([np.zeros((1, shape[1])), w]), axis=0)
    lagged = np.arange(1, shape[0] + 1)
    book = (cs[lagged] - cs[np.maximum(lagged - horizon, 0)]) / horizon
    if lag:
        book = np.vstack([np.zeros((lag, shape[1])), book[:-lag]])[: shape[0]]
    pnl = (book * R).sum(axis=1)
    turnover = np.abs(np.diff(np.vstack([np.zeros((1, shape[1])), book]), axis=0)).sum(axis=1)
    net = pnl - cost_bps * 1e-4 * turnover
    return pl.DataFrame({"date": dates, "pnl": pnl, "net": net, "turnover": turnover})


def _formations(P: np.ndarray, quantile: float) -> np.ndarray:
    """Equal-weight top/bottom-quantile formation weights per row (date)."""
    n_valid = np.isfinite(P).sum(axis=1)
    n_side = np.floor(quantile * n_valid).astype(int)
    # argsort of argsort = rank; NaNs sort last so valid ranks are 0..n_valid-1.
    order = np.argsort(np.where(np.isfinite(P), P, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(P.shape[1])[None, :].repeat(P.shape[0], 0), axis=1)
    valid = np.isfinite(P)
    long = valid & (rank >= (n_valid - n_side)[:, None])
    short = valid & (rank < n_side[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        side = np.where(n_side > 0, 1.0 / n_side, 0.0)[:, None]
    return long * side - short * side


def portfolio_stats(pnl: pl.DataFrame) -> dict[str, float]:
    """Annualized Sharpe / return, max drawdown of the cumulative sum, turnover, net Sharpe."""
    gross = pnl["pnl"].to_numpy()
    net = pnl["net"].to_numpy()

    def sharpe(x: np.ndarray) -> float:
        sd = np.std(x, ddof=1) if len(x) > 1 else 0.0
        return float(np.mean(x) / sd * math.sqrt(TRADING_DAYS)) if sd > 0 else float("nan")

    cum = np.cumsum(gross)
    drawdown = float(np.max(np.maximum.accumulate(np.concatenate([[0.0], cum]))[1:] - cum)) if len(cum) else float("nan")
    return {
        "sharpe": sharpe(gross),
        "ann_return": float(np.mean(gross) * TRADING_DAYS) if len(gross) else float("nan"),
        "max_drawdown": drawdown,
        "turnover": float(np.mean(pnl["turnover"].to_numpy())) if len(gross) else float("nan"),
        "sharpe_net": sharpe(net),
        "hit_rate": float(np.mean(gross > 0)) if len(gross) else float("nan"),
    }


def psi(expected: np.ndarray, actual: np.ndarray, bins: int) -> float:
    """Population stability index of ``actual`` against ``expected`` (quantile bins of expected)."""
    expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
    if len(expected) == 0 or len(actual) == 0:
        return float("nan")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1))[1:-1])
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    e, a = np.clip(e, 1e-6, None), np.clip(a, 1e-6, None)
    return float(np.sum((a - e) * np.log(a / e)))


def classification_stats(y_true: np.ndarray, p_up: np.ndarray) -> dict[str, Any]:
    """Direction accuracy, F1, ROC-AUC and the confusion matrix (rows = truth down/up); up when ``p_up >= 0.5``.

    Rows with a NaN label or probability are left out (NaN labels mask rows
    the head is not scored on).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    ok = np.isfinite(p_up) & np.isfinite(y_true)
    y, p = y_true[ok].astype(int), p_up[ok]
    if len(y) == 0:
        return {}
    pred = (p >= 0.5).astype(int)
    auc = roc_auc_score(y, p) if len(np.unique(y)) == 2 else float("nan")
    cm = confusion_matrix(y, pred, labels=[0, 1])
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(auc),
        "confusion_tn": int(cm[0, 0]),
        "confusion_fp": int(cm[0, 1]),
        "confusion_fn": int(cm[1, 0]),
        "confusion_tp": int(cm[1, 1]),
    }


def signal_stats(y_sig: np.ndarray, p_signal: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Signal-head precision and recall (signal predicted when ``p_signal >= threshold``), ROC-AUC, base rate.

    Rows with a NaN label or probability are left out. Precision is NaN when
    no signal is predicted, recall and AUC when a class is absent.
    """
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(y_sig) & np.isfinite(p_signal)
    y, p = y_sig[ok] == 1, p_signal[ok]
    if len(y) == 0:
        return {}
    pred = p >= threshold
    tp = float(np.sum(pred & y))
    both = bool(y.any()) and not bool(y.all())
    return {
        "precision": tp / float(pred.sum()) if pred.any() else float("nan"),
        "recall": tp / float(y.sum()) if y.any() else float("nan"),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "base_rate": float(y.mean()),
    }


def _values(frame: pl.DataFrame, col: str) -> np.ndarray:
    """Float64 numpy values of ``col``, null as NaN."""
    return frame[col].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _window_metrics(
    frame: pl.DataFrame, horizons: list[int], cfg: EvalConfig, same_close: bool = False
) -> tuple[dict[str, Any], dict[int, pl.DataFrame], dict[int, pl.DataFrame]]:
    out: dict[str, Any] = {}
    ic_series, pnl_series = {}, {}
    for h in horizons:
        pred, target = f"pred_{h}d", f"ret_{h}d"
        ics = daily_ic(frame, pred, target)
        ic_mean, icir = _mean_ir(ics["ic"].to_numpy())
        ric_mean, ricir = _mean_ir(ics["rank_ic"].to_numpy())
        out |= {f"ic_{h}d": ic_mean, f"icir_{h}d": icir, f"rank_ic_{h}d": ric_mean, f"rank_icir_{h}d": ricir}
        pnl = long_short_pnl(frame, pred, h, cfg.quantile, cfg.execution_lag, cfg.cost_bps)
        stats = portfolio_stats(pnl)
        out |= {f"{k}_{h}d": v for k, v in stats.items()}
        trades = trade_returns(frame, pred, target, cfg.quantile, cfg.execution_lag)
        out |= {f"{k}_{h}d": v for k, v in horizon_sharpe(trades, h).items()}
        if same_close and cfg.execution_lag:  # the idealized fill, beside the tradable one
            ideal = portfolio_stats(long_short_pnl(frame, pred, h, cfg.quantile, 0, cfg.cost_bps))
            out |= {f"{k}_same_close_{h}d": ideal[k] for k in SAME_CLOSE}
        turnover = stats["turnover"]
        out[f"ic_per_turnover_{h}d"] = ric_mean / turnover if turnover > 0 else float("nan")
        # A signal head makes the model hierarchical: direction is learned where sig == 1 only.
        hierarchical = f"p_signal_{h}d" in frame.columns and f"sig_{h}d" in frame.columns
        sig = _values(frame, f"sig_{h}d") if hierarchical else None
        if sig is not None:
            out |= {f"sig_{k}_{h}d": v for k, v in signal_stats(sig, _values(frame, f"p_signal_{h}d")).items()}
        if f"p_up_{h}d" in frame.columns and f"dir_{h}d" in frame.columns:
            y_dir = _values(frame, f"dir_{h}d")
            if sig is not None:  # score P(up | signal) on the rows it is trained on
                y_dir = np.where(sig == 1, y_dir, np.nan)
            cls = classification_stats(y_dir, _values(frame, f"p_up_{h}d"))
            out |= {f"direction_{k}_{h}d": v for k, v in cls.items()}
            out[f"direction_on_signal_{h}d"] = int(hierarchical)
        ic_series[h], pnl_series[h] = ics, pnl
    return out, ic_series, pnl_series


def evaluate(
    predictions: pl.DataFrame,
    realized: pl.DataFrame,
    horizons: list[int],
    cfg: EvalConfig,
    oracle_rank_ic_1d: float | None = None,
    name: str = "predictions",
    market: Market | None = None,
) -> tuple[dict[str, Any], dict[str, pl.DataFrame]]:
    """Metrics dict (``test``, ``fold{k}``, ``psi`` groups) and plot series.

    ``name`` (the model) names the PSI alerts in the log. ``market``: run the
    top-k backtest (module docstring).

    Plot series over the pooled test windows, one column per horizon:
    ``rank_ic`` (date, rank_ic_{h}d), ``cum_return`` (date, cum_return_{h}d,
    the cumulative sum of the daily long-short P&L) and, with ``market``,
    ``topk`` (date, benchmark, excess_{h}d, cum_excess_{h}d, turnover_{h}d).
    """
    frame = predictions.join(realized, on=["date", "code"], how="left")
    test = frame.filter(pl.col("split") == "test")
    if test.is_empty():
        raise ValueError("predictions: no rows with split == 'test' to evaluate")
    metrics: dict[str, Any] = {}
    pooled, ic_series, pnl_series = _window_metrics(test, horizons, cfg, same_close=True)
    pooled["n_dates"] = test["date"].n_unique()
    pooled["n_rows"] = test.height
    if oracle_rank_ic_1d is not None and 1 in horizons and oracle_rank_ic_1d > 0:
        pooled["rank_ic_1d_vs_oracle"] = pooled["rank_ic_1d"] / oracle_rank_ic_1d
    metrics["test"] = pooled
    for (fold,), part in test.group_by("fold", maintain_order=True):
        metrics[f"fold{fold}"] = _window_metrics(part, horizons, cfg)[0]
    val = frame.filter(pl.col("split") == "val")
    if not val.is_empty():
        metrics["psi"] = {
            f"pred_{h}d": psi(
                val[f"pred_{h}d"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                test[f"pred_{h}d"].cast(pl.Float64).fill_null(np.nan).to_numpy(),
                cfg.psi_bins,
            )
            for h in horizons
        }
        metrics["psi"] |= psi_alerts(metrics["psi"], horizons, cfg.psi_alert, name)
    topk_series = None
    if market is not None:
        by_fold, topk_series = topk_backtests(test, horizons, cfg, market, name)
        for group, figures in by_fold.items():
            metrics.setdefault(group, {}).update(figures)
    series = {
        "rank_ic": _wide({h: s.select("date", pl.col("rank_ic").alias(f"rank_ic_{h}d")) for h, s in ic_series.items()}),
        "cum_return": _wide(
            {h: s.select("date", pl.col("pnl").cum_sum().alias(f"cum_return_{h}d")) for h, s in pnl_series.items()}
        ),
    }
    if topk_series is not None:
        series["topk"] = topk_series
    return _clean(metrics), series


def topk_backtests(
    test: pl.DataFrame, horizons: list[int], cfg: EvalConfig, market: Market, name: str
) -> tuple[dict[str, dict[str, float]], pl.DataFrame]:
    """Top-k dropout figures (``test`` and ``fold{k}`` groups) and the daily series, per horizon.

    Trades ``cfg.execution_lag`` market days after each prediction; with a lag, the pooled test group
    also has the idealized same-close figures (``topk_{excess_return,...}_same_close_{h}d``).
    """
    bt = cfg.backtest
    width = test.group_by("date").len()["len"].median() or 0
    if width < bt.topk + bt.n_drop:
        log.warning(
            "%s: the test cross-section has a median of %d stocks for a top-%d book (n_drop %d): it holds most of"
            " the universe, so its excess return says little (eval.backtest.topk)", name, width, bt.topk, bt.n_drop,
        )
    folds = test.select(pl.col("date").alias("signal_date"), "fold").unique("signal_date").sort("signal_date")
    out: dict[str, dict[str, float]] = {"test": {}}
    parts = []
    for h in horizons:
        scores = test.select("date", "code", pl.col(f"pred_{h}d").cast(pl.Float64).alias("score"))
        daily = topk_dropout(scores, market, bt, cfg.execution_lag, source=name)
        out["test"] |= {f"topk_{k}_{h}d": v for k, v in topk_stats(daily, bt.annualization).items()}
        if cfg.execution_lag:
            ideal = topk_stats(topk_dropout(scores, market, bt, 0, source=name), bt.annualization)
            out["test"] |= {f"topk_{k}_same_close_{h}d": ideal[k] for k in TOPK_SAME_CLOSE}
        daily = daily.join(folds, on="signal_date", how="left").with_columns(pl.col("fold").forward_fill())
        for (fold,), part in daily.group_by("fold", maintain_order=True):
            if fold is not None:
                figures = topk_stats(part, bt.annualization)
                out.setdefault(f"fold{fold}", {}).update({f"topk_{k}_{h}d": v for k, v in figures.items()})
        parts.append(daily)
    out["test"]["topk_benchmark_return"] = float(parts[0]["benchmark"].mean() * bt.annualization)
    series = parts[0].select("date", "benchmark")
    for h, daily in zip(horizons, parts):
        series = series.join(
            daily.select(
                "date",
                pl.col("excess").alias(f"excess_{h}d"),
                pl.col("excess").cum_sum().alias(f"cum_excess_{h}d"),
                pl.col("turnover").alias(f"turnover_{h}d"),
            ),
            on="date",
            how="left",
        )
    return out, series


def psi_alerts(values: dict[str, float], horizons: list[int], threshold: float, name: str) -> dict[str, int | None]:
    """``psi_alert_{h}d``: 1 when the PSI of ``pred_{h}d`` exceeds ``threshold`` (logged as a warning), 0 below, None if undefined."""
    out: dict[str, int | None] = {}
    for h in horizons:
        v = values[f"pred_{h}d"]
        out[f"psi_alert_{h}d"] = None if not math.isfinite(v) else int(v > threshold)
        if out[f"psi_alert_{h}d"]:
            log.warning(
                "%s: PSI of pred_%dd between validation and test is %.3f > eval.psi_alert %.3g: the prediction"
                " distribution shifted (a regime change, or a model that drifts)", name, h, v, threshold,
            )
    return out


def _wide(parts: dict[int, pl.DataFrame]) -> pl.DataFrame:
    """Outer-join per-horizon (date, value) frames into one frame sorted by date."""
    frames = list(parts.values())
    out = frames[0]
    for f in frames[1:]:
        out = out.join(f, on="date", how="full", coalesce=True)
    return out.sort("date")


def _clean(obj: Any) -> Any:
    """Round floats for stable JSON and turn NaN into None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else round(obj, 6)
    return obj
