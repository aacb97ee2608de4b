"""Run Qlib's own backtest on this project's scores, to check the top-k figures against it.

Qlib (pyqlib 0.9.7) is not a dependency: it runs in a Python of its own
(``ALPHAGRAPH_QLIB_PYTHON``, or the virtual environment that ``bench/qlib.py``
creates under ``~/.cache/alphagraph-bench/qlib-0.9.7``), reading the prices in
its binary layout (:func:`write_qlib_data`). Its ``backtest`` runs
``TopkDropoutStrategy`` with a ``SimulatorExecutor`` and an exchange that deals
at the close, without a trading unit (this project's shares are fractional).
Under ``eval.backtest.preset: qlib`` the two agree day by day
(:func:`compare`); ``tests/test_qlib_parity.py`` and ``bench/qlib_backtest.py``
check it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from alphagraph.evaluation.backtest import Market, risk_analysis
from alphagraph.runtime.config import BacktestConfig
from alphagraph.runtime.errors import UserError

QLIB_VERSION = "0.9.7"
DEFAULT_QLIB_PYTHON = Path.home() / ".cache" / "alphagraph-bench" / f"qlib-{QLIB_VERSION}" / "bin" / "python"

# Runs inside Qlib's Python: argv[1] is a folder with qlib/ (the data), scores.csv, bench.csv, config.json.
QLIB_BACKTEST = textwrap.dedent(
    """
    import json, sys
    import pandas as pd
    import qlib
    from qlib.constant import REG_US

    work = sys.argv[1]
    cfg = json.load(open(work + "/config.json"))
    qlib.init(provider_uri=work + "/qlib", region=REG_US, kernels=1, expression_cache=None, dataset_cache=None)
    from qlib.backtest import backtest
    from qlib.backtest.executor import SimulatorExecutor
    from qlib.contrib.evaluate import risk_analysis
    from qlib.contrib.strategy import TopkDropoutStrategy

    scores = pd.read_csv(work + "/scores.csv", parse_dates=["date"])
    signal = scores.rename(columns={"date": "datetime", "code": "instrument"}).set_index(["datetime", "instrument"])["score"]
    bench = pd.read_csv(work + "/bench.csv", parse_dates=["date"]).set_index("date")["return"]
    strategy = TopkDropoutStrategy(signal=signal, topk=cfg["topk"], n_drop=cfg["n_drop"], risk_degree=cfg["risk_degree"])
    executor = SimulatorExecutor(time_per_step="day", generate_portfolio_metrics=True, verbose=False)
    exchange = {"freq": "day", "deal_price": "close", "open_cost": cfg["open_cost"], "close_cost": cfg["close_cost"],
                "min_cost": cfg["min_cost"], "limit_threshold": cfg["limit_threshold"], "trade_unit": None}
    metrics, _ = backtest(start_time=cfg["start"], end_time=cfg["end"], strategy=strategy, executor=executor,
                          benchmark=bench, account=cfg["account"], exchange_kwargs=exchange)
    report, positions = metrics["1day"]
    report.index.name = "date"
    report.reset_index().to_csv(work + "/report.csv", index=False)
    held = {str(d.date()): sorted(p.get_stock_list()) for d, p in positions.items()}
    json.dump(held, open(work + "/positions.json", "w"))
    excess = report["return"] - report["bench"] - report["cost"]
    risk = risk_analysis(excess, freq="day")["risk"].to_dict()
    json.dump({k: float(v) for k, v in risk.items()}, open(work + "/risk.json", "w"))
    """
)


def qlib_python() -> str | None:
    """A Python with pyqlib: ``ALPHAGRAPH_QLIB_PYTHON``, else the bench's environment when it exists."""
    given = os.environ.get("ALPHAGRAPH_QLIB_PYTHON")
    if given:
        return given
    return str(DEFAULT_QLIB_PYTHON) if DEFAULT_QLIB_PYTHON.exists() else None


def write_qlib_data(prices: pl.DataFrame, root: Path) -> None:
    """``date, code, open, high, low, close, volume`` in Qlib's binary layout (what its ``dump_bin.py`` writes).

    Per instrument and field a little-endian float32 file: the first value is the index of the
    instrument's first day in ``calendars/day.txt``, then one value per calendar day to its last
    (NaN where it did not trade). Adds ``vwap`` ((high + low + close) / 3), ``change`` (close over
    the previous calendar day's close, as Qlib's exchange reads it for price limits) and ``factor`` 1.
    """
    calendar = prices.get_column("date").unique().sort()
    (root / "calendars").mkdir(parents=True)
    (root / "instruments").mkdir()
    (root / "calendars" / "day.txt").write_text("\n".join(str(d) for d in calendar.to_list()) + "\n")
    cal_index = {d: i for i, d in enumerate(calendar.to_list())}
    df = prices.with_columns(vwap=(pl.col("high") + pl.col("low") + pl.col("close")) / 3, factor=pl.lit(1.0))
    lines = []
    for (code,), g in df.sort("code", "date").group_by("code", maintain_order=True):
        dates = g.get_column("date").to_list()
        i0, i1 = cal_index[dates[0]], cal_index[dates[-1]]
        lines.append(f"{code}\t{dates[0]}\t{dates[-1]}")
        idx = np.array([cal_index[d] for d in dates]) - i0
        folder = root / "features" / code.lower()
        folder.mkdir(parents=True)
        series = {}
        for field in ("open", "high", "low", "close", "volume", "vwap", "factor"):
            values = np.full(i1 - i0 + 1, np.nan, dtype="<f4")
            values[idx] = g.get_column(field).to_numpy()
            series[field] = values
        close = series["close"].astype(np.float64)
        series["change"] = np.concatenate([[np.nan], close[1:] / close[:-1] - 1]).astype("<f4")
        for field, values in series.items():
            np.hstack([np.array([i0], dtype="<f4"), values]).astype("<f4").tofile(folder / f"{field}.day.bin")
    (root / "instruments" / "all.txt").write_text("\n".join(lines) + "\n")


def as_qlib_sees(prices: pl.DataFrame) -> pl.DataFrame:
    """The prices rounded to float32, as Qlib stores and reads them."""
    cols = [c for c in ("open", "high", "low", "close", "volume") if c in prices.columns]
    return prices.with_columns(pl.col(c).cast(pl.Float32).cast(pl.Float64) for c in cols)


def qlib_topk_backtest(
    python: str, prices: pl.DataFrame, scores: pl.DataFrame, market: Market, cfg: BacktestConfig, work: Path,
    hash_seed: int = 0,
) -> tuple[pl.DataFrame, dict[str, list[str]], dict[str, float]]:
    """Qlib's backtest of ``scores`` (``date, code, score``), trading the next session as Qlib does.

    Returns Qlib's daily report (``date, return, cost, bench, turnover, value``), the codes held
    after each day's trades, and its ``risk_analysis`` of the excess return after costs.

    ``hash_seed`` (``PYTHONHASHSEED``): Qlib lists the held stocks from a Python set, so when more
    held stocks lack a score than ``n_drop`` and nothing is to be bought, which of them it sells
    follows string hashing; this project takes them by code. The seed makes Qlib's run repeatable.
    """
    work.mkdir(parents=True, exist_ok=True)
    write_qlib_data(prices, work / "qlib")
    # Qlib closes a step at the next calendar day: one more (empty) day lets it trade the data's last day.
    with open(work / "qlib" / "calendars" / "day.txt", "a") as f:
        f.write(f"{market.dates[-1] + dt.timedelta(days=1)}\n")
    scores.filter(pl.col("score").is_not_null() & pl.col("score").is_not_nan()).write_csv(work / "scores.csv")
    days = market.dates
    signal_days = sorted(set(scores["date"].to_list()))
    first, last = days.index(signal_days[0]) + 1, min(days.index(signal_days[-1]) + 1, len(days) - 1)
    bench = pl.DataFrame({"date": days[first : last + 1], "return": market.benchmark[first : last + 1]})
    bench.with_columns(pl.col("return").fill_nan(0.0)).write_csv(work / "bench.csv")
    config = {
        "topk": cfg.topk, "n_drop": cfg.n_drop, "risk_degree": cfg.risk_degree, "open_cost": cfg.open_cost,
        "close_cost": cfg.close_cost, "min_cost": cfg.min_cost, "limit_threshold": cfg.limit_threshold,
        "account": cfg.account, "start": str(days[first]), "end": str(days[last]),
    }
    (work / "config.json").write_text(json.dumps(config))
    env = os.environ | {"PYTHONHASHSEED": str(hash_seed)}
    proc = subprocess.run([python, "-c", QLIB_BACKTEST, str(work)], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise UserError(f"qlib backtest ({python}) failed:\n{proc.stderr[-3000:]}")
    report = pl.read_csv(work / "report.csv", try_parse_dates=True).with_columns(pl.col("date").cast(pl.Date))
    positions = json.loads((work / "positions.json").read_text())
    return report, positions, json.loads((work / "risk.json").read_text())


def compare(ours: pl.DataFrame, report: pl.DataFrame, positions: dict[str, list[str]], annualization: float) -> dict[str, Any]:
    """Largest daily differences between this project's backtest (``topk_dropout``) and Qlib's report,
    the days whose holdings differ, and both systems' annual figures."""
    joined = ours.join(report.select("date", "return", "cost", "bench", "turnover"), on="date", how="full", suffix="_qlib")
    if joined["date"].null_count() or joined["date_qlib"].null_count():
        raise AssertionError("the two backtests cover different days")
    diff = {k: float((joined[k] - joined[f"{k}_qlib"]).abs().max()) for k in ("return", "cost", "turnover")}
    diff["benchmark"] = float((joined["benchmark"] - joined["bench"]).abs().max())
    held = {str(d): h for d, h in zip(ours["date"].to_list(), ours["held"].to_list())}
    theirs = report.select("date", excess=pl.col("return") - pl.col("bench") - pl.col("cost"))
    return {
        "max_abs_diff": diff,
        "days": ours.height,
        "holdings_differ_on": [d for d in held if held[d] != positions.get(d)],
        "ours": risk_analysis(ours["excess"].to_numpy(), annualization),
        "qlib_from_report": risk_analysis(theirs["excess"].to_numpy(), annualization),
    }

