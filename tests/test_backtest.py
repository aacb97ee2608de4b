"""The top-k dropout backtest (Qlib's TopkDropoutStrategy) against hand-computed books, and its benchmark."""

import dataclasses
import datetime as dt
import math
import re

import numpy as np
import polars as pl
import pytest

from alphagraph.evaluation.backtest import Market, benchmark_on, risk_analysis, topk_dropout, topk_stats
from alphagraph.runtime.config import BacktestConfig, EvalConfig
from alphagraph.data.benchmark import equal_weight_benchmark, read_benchmark
from alphagraph.data.validate import DataError
from alphagraph.runtime.errors import UserError
from alphagraph.evaluation.evaluate import evaluate

NAN = float("nan")
DAYS = [dt.date(2020, 1, d) for d in range(1, 7)]
# D is suspended on day 2; E trades for the last time on day 3 (delisted).
CLOSES = {
    "A": [10, 11, 12, 12, 13, 13],
    "B": [20, 20, 22, 21, 21, 21],
    "C": [5, 5, 5.5, 6, 6, 6],
    "D": [8, 8, NAN, 8, 8, 8],
    "E": [50, 50, 50, 55, NAN, NAN],
}
SCORES = {
    0: {"A": 5, "B": 4, "C": 3, "D": 2, "E": 1},
    1: {"A": 1, "B": 4, "C": 5, "D": 3, "E": 2},
    2: {"D": 9, "E": 8, "C": 1, "B": 0.5, "A": 0.1},
    3: {"E": 9, "D": 8, "C": 3, "A": 2, "B": 1},
    4: {"A": 3, "B": 2, "C": 1, "D": 0.5},
}
BENCH = [None, 0.01, 0.02, 0.0, -0.01, 0.0]
CFG = BacktestConfig(topk=2, n_drop=1, open_cost=0.001, close_cost=0.002, min_cost=1.0, account=1000.0, risk_degree=0.95)


def prices_frame(closes=CLOSES, days=DAYS) -> pl.DataFrame:
    rows = [(d, c, float(v)) for c, vs in closes.items() for d, v in zip(days, vs) if not math.isnan(v)]
    return pl.DataFrame(rows, schema=["date", "code", "close"], orient="row")


def scores_frame(scores=SCORES, days=DAYS) -> pl.DataFrame:
    rows = [(days[t], c, float(v)) for t, day in scores.items() for c, v in day.items()]
    return pl.DataFrame(rows, schema=["date", "code", "score"], orient="row")


def market(closes=CLOSES) -> Market:
    return Market.from_frames(prices_frame(closes), pl.DataFrame({"date": DAYS, "return": BENCH}))


def test_five_stocks_reproduce_the_hand_computed_book():
    daily = topk_dropout(scores_frame(), market(), CFG)
    assert daily["held"].to_list() == [["A", "B"], ["B", "C"], ["C"], ["D", "E"], ["A", "B"]]

    def fee(value, rate):
        return max(value * rate, 1.0)

    # Day 0: from cash, buy the top 2 (A, B) with 95 % of the cash split equally.
    buy = 1000 * 0.95 / 2
    a, b = buy / 10, buy / 20
    cash = 1000 - 2 * buy - 2 * fee(buy, 0.001)
    v0, c0 = cash + a * 10 + b * 20, 2 * fee(buy, 0.001)
    # Day 1: last = [B, A], today = [C]; A is the worst of comb = [C, B, A]: sell A, buy C.
    cash += a * 11 - fee(a * 11, 0.002)
    buy1 = cash * 0.95
    cash -= buy1 + fee(buy1, 0.001)
    c = buy1 / 5
    v1, c1 = cash + b * 20 + c * 5, fee(a * 11, 0.002) + fee(buy1, 0.001)
    # Day 2: sell B (worst of [D, C, B]); D is the buy but is suspended: its slot stays cash.
    cash += b * 22 - fee(b * 22, 0.002)
    v2, c2 = cash + c * 5.5, fee(b * 22, 0.002)
    # Day 3: last = [C], today = [E, D]: sell C, buy E and D with half of 95 % of the cash each.
    cash += c * 6 - fee(c * 6, 0.002)
    buy3 = cash * 0.95 / 2
    cash -= 2 * buy3 + 2 * fee(buy3, 0.001)
    e, d = buy3 / 55, buy3 / 8
    v3, c3 = cash + e * 55 + d * 8, fee(c * 6 * 1.0, 0.002) + 2 * fee(buy3, 0.001)
    # Day 4: E has left the data: sold at its last close. Then last = [D], today = [A, B]: sell D, buy A and B.
    cash += e * 55 - fee(e * 55, 0.002) + d * 8 - fee(d * 8, 0.002)
    buy4 = cash * 0.95 / 2
    cash -= 2 * buy4 + 2 * fee(buy4, 0.001)
    v4 = cash + buy4 / 13 * 13 + buy4 / 21 * 21
    c4 = fee(e * 55, 0.002) + fee(d * 8, 0.002) + 2 * fee(buy4, 0.001)

    values, costs = [v0, v1, v2, v3, v4], [c0, c1, c2, c3, c4]
    previous = [1000.0, *values[:-1]]
    np.testing.assert_allclose(daily["value"].to_numpy(), values, rtol=1e-12)
    np.testing.assert_allclose(daily["cost"].to_numpy(), np.array(costs) / previous, rtol=1e-12)
    returns = [(v - p + k) / p for v, p, k in zip(values, previous, costs)]
    np.testing.assert_allclose(daily["return"].to_numpy(), returns, rtol=1e-12, atol=1e-12)
    # A's gain on day 1 is the whole gross return: trades at the close earn nothing that day.
    assert daily["return"][1] == pytest.approx(a * 1 / v0, rel=1e-12)
    traded = [2 * buy, a * 11 + buy1, b * 22, c * 6 + 2 * buy3, e * 55 + d * 8 + 2 * buy4]
    np.testing.assert_allclose(daily["turnover"].to_numpy(), np.array(traded) / previous, rtol=1e-12)
    bench = np.array([0.0, 0.01, 0.02, 0.0, -0.01])
    np.testing.assert_allclose(daily["benchmark"].to_numpy(), bench, atol=1e-12)
    np.testing.assert_allclose(daily["excess"].to_numpy(), np.array(returns) - bench - np.array(costs) / previous, atol=1e-12)


def test_the_minimum_cost_and_the_cash_limit_apply():
    # 1,000 of cash, 100 % risk degree: the second buy finds 500 - min cost left and is clipped to it.
    cfg = BacktestConfig(topk=2, n_drop=1, open_cost=0.001, close_cost=0.002, min_cost=1.0, account=1000.0, risk_degree=1.0)
    daily = topk_dropout(scores_frame({0: SCORES[0]}), market(), cfg)
    assert daily["cost"][0] == pytest.approx(2 / 1000)  # min cost 1 twice, not 0.5
    assert daily["value"][0] == pytest.approx(500 + 498)  # cash 0 after buying 500 of A and 498 of B


def random_market(rng, n_days: int, n_stocks: int) -> tuple[list, list, pl.DataFrame, Market]:
    """Random-walk closes of ``n_stocks`` over ``n_days`` and their market (equal-weight benchmark)."""
    days = [dt.date(2021, 1, 1) + dt.timedelta(days=i) for i in range(n_days)]
    codes = [f"S{i:02d}" for i in range(n_stocks)]
    closes = {c: list(np.exp(np.cumsum(rng.normal(0, 0.02, len(days)))) * 10) for c in codes}
    prices = prices_frame(closes, days)
    return days, codes, prices, Market.from_frames(prices, equal_weight_benchmark(prices))


def test_dropout_swaps_at_most_n_drop_stocks_a_day_and_holds_topk():
    rng = np.random.default_rng(0)
    days, codes, _, mkt = random_market(rng, 60, 30)
    scores = pl.DataFrame(
        [(d, c, float(rng.normal())) for d in days[1:] for c in codes], schema=["date", "code", "score"], orient="row"
    )
    daily = topk_dropout(scores, mkt, BacktestConfig(topk=5, n_drop=2, account=1e6))
    held = [set(h) for h in daily["held"].to_list()]
    assert all(len(h) == 5 for h in held)
    assert all(len(h - g) <= 2 for g, h in zip(held, held[1:]))
    assert sum(len(h - g) for g, h in zip(held, held[1:])) > 30  # random scores do churn
    # A universe larger than the book always has candidates: replace_only changes nothing.
    assert daily.equals(topk_dropout(scores, mkt, BacktestConfig(topk=5, n_drop=2, account=1e6, replace_only=False)))
    # n_drop 0: what is bought on the first day is held to the end.
    still = topk_dropout(scores, mkt, BacktestConfig(topk=5, n_drop=0, account=1e6))
    assert len({tuple(h) for h in still["held"].to_list()}) == 1


def test_a_stock_at_its_price_limit_is_not_traded():
    closes = {"A": [10, 11.0, 11], "B": [10, 10, 10], "C": [10, 10, 10]}
    days = DAYS[:3]
    prices = prices_frame(closes, days)
    mkt = Market.from_frames(prices, equal_weight_benchmark(prices))
    scores = scores_frame({1: {"A": 3, "B": 2, "C": 1}, 2: {"A": 3, "B": 2, "C": 1}}, days)
    cfg = BacktestConfig(topk=1, n_drop=1, account=1e6, limit_threshold=0.095)
    held = topk_dropout(scores, mkt, cfg)["held"].to_list()
    assert held == [[], ["A"]]  # A is up 10 % on day 1 (limit up): bought on day 2
    assert topk_dropout(scores, mkt, BacktestConfig(topk=1, n_drop=1, account=1e6))["held"].to_list() == [["A"], ["A"]]


def test_label_delay_trades_later_and_future_prices_do_not_move_the_past():
    base = topk_dropout(scores_frame(), market(), CFG, delay=1)
    assert base["date"].to_list() == DAYS[1:6] and base["signal_date"].to_list() == DAYS[:5]
    shocked = {c: v[:4] + [x * 1.7 for x in v[4:]] for c, v in CLOSES.items()}
    moved = topk_dropout(scores_frame(), market(shocked), CFG, delay=1)
    assert moved.head(3).equals(base.head(3))  # days 1..3 of the book only know closes up to day 3
    assert not moved.equals(base)


def test_a_delisted_stock_is_sold_or_held_as_qlibs_dead_position():
    sold = topk_dropout(scores_frame(), market(), CFG)
    held = topk_dropout(scores_frame(), market(), dataclasses.replace(CFG, delisting="hold"))
    assert sold.head(4).equals(held.head(4))  # E's last close is day 3
    # Day 4: E has no score, so it is the held stock to drop, but it never trades again: it keeps its
    # slot (only one buy, A) and its value at the last close, 55.
    assert sold["held"].to_list()[4] == ["A", "B"] and held["held"].to_list()[4] == ["A", "D", "E"]
    assert held["turnover"][4] < sold["turnover"][4]
    # Nothing moved between days 3 and 4 but A's close (12 -> 13), which neither book held on day 3.
    assert held["value"][4] == pytest.approx(held["value"][3] - held["cost"][4] * held["value"][3])


def test_risk_analysis_is_qlibs_sum_mode():
    r = np.array([0.01, -0.02, 0.03, -0.01])
    out = risk_analysis(r)
    assert out["annualized_return"] == pytest.approx(np.mean(r) * 252)
    assert out["information_ratio"] == pytest.approx(np.mean(r) / np.std(r, ddof=1) * math.sqrt(252))
    qlib = risk_analysis(r, 238)  # Qlib 0.9.7's daily periods a year
    assert qlib["annualized_return"] == pytest.approx(np.mean(r) * 238)
    assert qlib["information_ratio"] == pytest.approx(np.mean(r) / np.std(r, ddof=1) * math.sqrt(238))
    assert out["max_drawdown"] == pytest.approx(-0.02)  # cumsum 0.01, -0.01, 0.02, 0.01: the 0.01 -> -0.01 fall
    stats = topk_stats(topk_dropout(scores_frame(), market(), CFG))
    assert stats["max_drawdown"] <= 0 and stats["mean_held"] == pytest.approx((2 + 2 + 1 + 2 + 2) / 5)


def test_equal_weight_benchmark_and_an_index_on_another_calendar():
    bench = equal_weight_benchmark(prices_frame())
    # Day 3: A 12/12, B 21/22, C 6/5.5 (D did not trade on day 2: left out), E 55/50.
    assert bench["return"][3] == pytest.approx(np.mean([0, 21 / 22 - 1, 6 / 5.5 - 1, 0.1]))
    assert bench["return"][0] is None
    # An index with a day the market lacks and a day missing: returns compound between market days.
    index = pl.DataFrame({"date": [DAYS[0], DAYS[1], DAYS[2], DAYS[4]], "return": [None, 0.1, 0.1, 0.2]})
    got = benchmark_on(pl.Series(DAYS[:5]), index)
    np.testing.assert_allclose(got, [NAN, 0.1, 0.1, 0.0, 0.2])


def test_an_index_file_is_read_and_checked(tmp_path):
    path = tmp_path / "index.csv"
    path.write_text("Date,Close\n2020-01-01,100\n2020-01-02,101\n2020-01-03,99.99\n")
    bench = read_benchmark(path)
    assert bench["return"].to_list()[1:] == pytest.approx([0.01, 99.99 / 101 - 1])
    for text, words in [
        ("date,level\n2020-01-01,1\n", "a close (index level) or return column"),
        ("date,close\n2020-01-01,100\n2020-13-02,101\n", "not ISO dates"),
        ("date,close\n2020-01-01,100\n2020-01-02,0\n", "must be > 0"),
        ("date,close\n2020-01-01,100\n2020-01-01,101\n", "more than once"),
        ("date,return\n2020-01-01,0.01\n2020-01-02,-1.5\n", "<= -1"),
    ]:
        path.write_text(text)
        with pytest.raises(DataError, match=re.escape(words)) as err:
            read_benchmark(path)
        assert str(path) in str(err.value)


def test_evaluate_runs_the_backtest_per_horizon_and_fold():
    rng = np.random.default_rng(1)
    days, codes, prices, mkt = random_market(rng, 40, 20)
    rows = [(d, c, 0 if i < 20 else 1, "test", float(rng.normal()), float(rng.normal())) for i, d in enumerate(days[:-5]) for c in codes]
    preds = pl.DataFrame(rows, schema=["date", "code", "fold", "split", "pred_1d", "pred_5d"], orient="row")
    realized = prices.select("date", "code", ret_1d=pl.lit(0.0), ret_5d=pl.lit(0.0), r_next=pl.lit(0.0))
    cfg = EvalConfig(quantile=0.2, backtest=BacktestConfig(topk=4, n_drop=1, account=1e6))
    metrics, series = evaluate(preds, realized.with_columns(ret_1d=pl.col("ret_1d") + rng.normal(0, 1, realized.height)), [1, 5], cfg, market=mkt)
    for group in ("test", "fold0", "fold1"):
        for h in (1, 5):
            assert metrics[group][f"topk_information_ratio_{h}d"] is not None, (group, h)
            assert metrics[group][f"topk_max_drawdown_{h}d"] <= 0
    assert set(series["topk"].columns) == {"date", "benchmark", "excess_1d", "cum_excess_1d", "turnover_1d", "excess_5d", "cum_excess_5d", "turnover_5d"}
    assert series["topk"].height == 35
    no_market, _ = evaluate(preds, realized, [1, 5], cfg)
    assert "topk_excess_return_1d" not in no_market["test"]
    # Next-session fills by default; the idealized same-close figures beside them are a lag-0 run's.
    ideal, _ = evaluate(preds, realized, [1, 5], dataclasses.replace(cfg, execution_lag=0), market=mkt)
    for key in ("excess_return", "information_ratio", "excess_return_gross"):
        assert metrics["test"][f"topk_{key}_same_close_1d"] == ideal["test"][f"topk_{key}_1d"]
    assert metrics["test"]["topk_excess_return_1d"] != ideal["test"]["topk_excess_return_1d"]
    qlib_year = dataclasses.replace(cfg, backtest=dataclasses.replace(cfg.backtest, annualization=238.0))
    q, _ = evaluate(preds, realized, [1, 5], qlib_year, market=mkt)
    assert q["test"]["topk_excess_return_1d"] == pytest.approx(metrics["test"]["topk_excess_return_1d"] * 238 / 252, abs=2e-6)


def test_a_benchmark_that_stops_before_the_test_window_ends_is_a_clear_error():
    short = Market.from_frames(prices_frame(), pl.DataFrame({"date": DAYS[:3], "return": BENCH[:3]}), "inputs/index.csv")
    with pytest.raises(UserError, match=r"inputs/index.csv.*no return on 2020-01-04.*cover the test window"):
        topk_dropout(scores_frame(), short, CFG)


def test_ingest_writes_the_users_index_or_the_equal_weight_universe(tmp_path):
    from alphagraph.runtime.config import params_from_dict
    from alphagraph.data.ingest import ingest

    small = {"data": {"synthetic": {"n_stocks": 10, "n_days": 60, "n_sectors": 2, "n_funds": 3}}}
    raw = ingest(params_from_dict(small))
    assert raw.benchmark_source == "equal_weight" and raw.benchmark.equals(equal_weight_benchmark(raw.prices))
    days = raw.prices["date"].unique().sort()
    index = tmp_path / "index.csv"
    pl.DataFrame({"date": days, "close": np.linspace(100, 110, len(days))}).write_csv(index)
    small["data"]["benchmark_path"] = str(index)
    raw = ingest(params_from_dict(small))
    assert raw.benchmark_source == str(index) and raw.benchmark["return"][1] == pytest.approx(10 / (len(days) - 1) / 100)
    pl.DataFrame({"date": [dt.date(1990, 1, 1), dt.date(1990, 1, 2)], "close": [1.0, 2.0]}).write_csv(index)
    with pytest.raises(DataError, match=r"index.csv: the benchmark's dates 1990-01-01..1990-01-02 do not overlap"):
        ingest(params_from_dict(small))


def test_a_universe_smaller_than_the_book_is_held_not_churned():
    rng = np.random.default_rng(3)
    days, codes, _, mkt = random_market(rng, 40, 20)
    scores = pl.DataFrame(
        [(d, c, float(rng.normal())) for d in days[:-1] for c in codes], schema=["date", "code", "score"], orient="row"
    )
    cfg = BacktestConfig(topk=50, n_drop=5, account=1e6)
    held = topk_dropout(scores, mkt, cfg)
    assert held["n_held"].to_list() == [20] * held.height
    assert held["turnover"][1:].max() == 0.0  # bought on the first day, never sold for nothing better
    # Qlib sells the 5 worst with no candidate to replace them and buys them back the next day.
    churn = topk_dropout(scores, mkt, dataclasses.replace(cfg, replace_only=False))
    assert churn["turnover"][1:].mean() > 0.1 and churn["n_held"].min() == 15
