"""Evaluation rigor: horizon-adjusted Sharpe of h-day trades, the overlapping-trade correction, IC per turnover, PSI alerts."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from alphagraph.runtime.config import ConfigError, EvalConfig, params_from_dict
from alphagraph.evaluation.evaluate import evaluate, horizon_sharpe, trade_returns
from tests.test_evaluate import synthetic_eval_frame


def test_horizon_sharpe_by_hand():
    # h = 2, periods two days apart move together (rho = +1): corrected by 1 / sqrt(1 + 2)
    x = np.array([1.0, 1, 2, 2, 3, 3, 4, 4])
    s = horizon_sharpe(x, 2)
    sharpe = 2.5 / math.sqrt(10 / 7) * math.sqrt(252 / 2)  # mean 2.5, sample variance 10 / 7
    assert s["sharpe_horizon"] == pytest.approx(sharpe)
    assert s["horizon_autocorr"] == pytest.approx(1.0)
    assert s["sharpe_horizon_adj"] == pytest.approx(sharpe / math.sqrt(3))
    # h = 1, alternating (rho = -1): a negative rho is not credited, the Sharpe stays
    y = np.array([1.0, 3, 1, 3, 1, 3])
    s = horizon_sharpe(y, 1)
    assert s["sharpe_horizon"] == pytest.approx(2 / math.sqrt(1.2) * math.sqrt(252))
    assert s["horizon_autocorr"] == pytest.approx(-1.0)
    assert s["sharpe_horizon_adj"] == pytest.approx(s["sharpe_horizon"])
    # too short for a lag-h correlation: undefined, not a guess
    assert math.isnan(horizon_sharpe(np.array([1.0, 2, 3]), 2)["sharpe_horizon_adj"])


def test_trade_returns_by_hand():
    d1, d2, d3 = dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(2020, 1, 3)
    frame = pl.DataFrame({
        "date": [d1] * 4 + [d2] * 4 + [d3] * 4,
        "code": list("ABCD") * 3,
        "pred_5d": [4.0, 3, 2, 1, 1, 2, 3, 4, 1, 2, 3, 4],
        # d2: the long leg (D) has no return (suspended): it contributes 0; d3: no returns known (end of data)
        "ret_5d": [0.10, 0.0, 0.0, -0.05, 0.02, 0.0, 0.0, None, None, None, None, None],
    })
    r = trade_returns(frame, "pred_5d", "ret_5d", quantile=0.25)  # one stock a side
    assert r == pytest.approx([0.10 - (-0.05), 0.0 - 0.02])


def test_evaluate_adds_new_keys_and_keeps_the_old_ones():
    rows, rng = synthetic_eval_frame(n_dates=80, n_stocks=30, seed=4)
    realized = rows.select("date", "code", "ret_1d", "r_next")
    preds = rows.select("date", "code", "fold", "split").with_columns(
        pred_1d=pl.Series(rows["ret_1d"].to_numpy() + rng.normal(0, 0.03, rows.height))
    )
    t = evaluate(preds, realized, [1], EvalConfig(execution_lag=0))[0]["test"]
    new = {"sharpe_horizon_1d", "horizon_autocorr_1d", "sharpe_horizon_adj_1d", "ic_per_turnover_1d"}
    assert new <= set(t)
    # h = 1 without a label delay: the trade is the book, ret_1d is r_next: the same Sharpe
    assert t["sharpe_horizon_1d"] == pytest.approx(t["sharpe_1d"], abs=2e-6)
    # ... and a day later both trade the next day's return (the book's first day is flat: 0 P&L)
    lagged = evaluate(preds, realized, [1], EvalConfig())[0]["test"]
    assert lagged["sharpe_horizon_1d"] == pytest.approx(lagged["sharpe_1d"], abs=0.1)
    assert abs(lagged["sharpe_1d"]) < t["sharpe_1d"] / 3
    assert t["ic_per_turnover_1d"] == pytest.approx(t["rank_ic_1d"] / t["turnover_1d"], rel=1e-5)
    rho = t["horizon_autocorr_1d"]
    assert t["sharpe_horizon_adj_1d"] == pytest.approx(t["sharpe_horizon_1d"] / math.sqrt(1 + 2 * max(rho, 0)), rel=1e-6)


def test_psi_alert_flags_and_warns(caplog):
    rows, rng = synthetic_eval_frame(n_dates=60, n_stocks=30, seed=5)
    realized = rows.select("date", "code", "ret_1d", "r_next")
    val = pl.col("date") < pl.date(2020, 1, 31)
    base = rows.select("date", "code", "fold").with_columns(split=pl.when(val).then(pl.lit("val")).otherwise(pl.lit("test")))
    noise = rng.normal(0, 1, rows.height)
    shifted = base.with_columns(pred_1d=pl.Series(noise) + pl.when(val).then(0.0).otherwise(1.5))
    with caplog.at_level("WARNING", logger="alphagraph"):
        m = evaluate(shifted, realized, [1], EvalConfig(), name="gat")[0]
    assert m["psi"]["pred_1d"] > 0.25 and m["psi"]["psi_alert_1d"] == 1
    assert any("gat" in r.getMessage() and "pred_1d" in r.getMessage() and "eval.psi_alert" in r.getMessage() for r in caplog.records)
    # the threshold is the switch: the same shift under a higher one is no alert
    assert evaluate(shifted, realized, [1], EvalConfig(psi_alert=m["psi"]["pred_1d"] + 1))[0]["psi"]["psi_alert_1d"] == 0
    steady = base.with_columns(pred_1d=pl.Series(noise))
    assert evaluate(steady, realized, [1], EvalConfig())[0]["psi"]["psi_alert_1d"] == 0
    with pytest.raises(ConfigError, match="eval.psi_alert"):
        params_from_dict({"eval": {"psi_alert": 0.0}})
