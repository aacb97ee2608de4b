"""Where each model wins: sector and regime RankIC, look-ahead-free regimes, per-stock win shares."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from alphagraph.evaluation import wins

N_DAYS = 60
START = dt.date(2021, 1, 1)


def _grid(codes: list[str], n_days: int = N_DAYS) -> pl.DataFrame:
    dates = [START + dt.timedelta(days=i) for i in range(n_days)]
    return pl.DataFrame({"date": [d for d in dates for _ in codes], "code": codes * n_days},
                        schema={"date": pl.Date, "code": pl.String})


def _labels(grid: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return grid.with_columns(ret_1d=pl.Series(rng.normal(0, 0.02, grid.height)))


def _predictions(labels: pl.DataFrame, signal: np.ndarray | float, seed: int, split: str = "test") -> pl.DataFrame:
    """``pred_1d = signal * z(ret) + noise`` (``signal`` per row or one number)."""
    rng = np.random.default_rng(seed)
    pred = signal * labels["ret_1d"].to_numpy() / 0.02 + rng.normal(0, 1, labels.height)
    return labels.select("date", "code").with_columns(
        pl.lit(0, dtype=pl.Int32).alias("fold"), pl.lit(split).alias("split"), pl.Series("pred_1d", pred, dtype=pl.Float32)
    )


@pytest.fixture(scope="module")
def sectors_case() -> dict[str, object]:
    codes = [f"S{i:02d}" for i in range(20)]
    sectors = pl.DataFrame({"code": codes, "sector": ["S1"] * 10 + ["S2"] * 10})
    labels = _labels(_grid(codes))
    in_s1 = labels["code"].is_in(codes[:10]).to_numpy()
    preds = {
        "A": _predictions(labels, np.where(in_s1, 3.0, 0.0), seed=1),
        "B": _predictions(labels, np.where(in_s1, 0.0, 3.0), seed=2),
    }
    return {"labels": labels, "sectors": sectors, "preds": preds, "codes": codes}


def test_each_model_wins_its_own_sector(sectors_case: dict) -> None:
    out = wins.sector_rank_ic(sectors_case["preds"], sectors_case["labels"], sectors_case["sectors"])
    assert out.columns == ["model", "sector", "rank_ic", "t", "n_days", "mean_stocks"]
    ic = {(r["model"], r["sector"]): r["rank_ic"] for r in out.iter_rows(named=True)}
    assert ic[("A", "S1")] > 0.6 and ic[("B", "S2")] > 0.6
    assert abs(ic[("A", "S2")]) < 0.2 and abs(ic[("B", "S1")]) < 0.2
    assert set(out["n_days"]) == {N_DAYS} and set(out["mean_stocks"]) == {10.0}
    assert out.filter(pl.col("rank_ic") > 0.6)["t"].min() > 5


def test_sector_tables_by_code_by_date_and_by_validity_agree(sectors_case: dict) -> None:
    preds, labels, sectors = sectors_case["preds"], sectors_case["labels"], sectors_case["sectors"]
    static = wins.sector_rank_ic(preds, labels, sectors)
    dated = labels.select("date", "code").join(sectors, on="code")
    assert wins.sector_rank_ic(preds, labels, dated).equals(static)
    unbounded = sectors.with_columns(pl.lit(None, dtype=pl.Date).alias("start"), pl.lit(None, dtype=pl.Date).alias("end"))
    assert wins.sector_rank_ic(preds, labels, unbounded).equals(static)
    # A sector change on day 30 moves the stock's later rows only.
    switch = START + dt.timedelta(days=30)
    moving = pl.concat([
        unbounded.filter(pl.col("code") != "S00"),
        pl.DataFrame(
            {"code": ["S00", "S00"], "sector": ["S1", "S2"], "start": [None, switch],
             "end": [switch - dt.timedelta(days=1), None]},
            schema=unbounded.schema,
        ),
    ])
    out = wins.sector_rank_ic(preds, labels, moving)
    mean_stocks = {(r["model"], r["sector"]): r["mean_stocks"] for r in out.iter_rows(named=True)}
    assert mean_stocks[("A", "S1")] == pytest.approx(9.5) and mean_stocks[("A", "S2")] == pytest.approx(10.5)


def test_small_sectors_and_val_rows_are_skipped(sectors_case: dict) -> None:
    preds, labels, codes = sectors_case["preds"], sectors_case["labels"], sectors_case["codes"]
    tiny = pl.DataFrame({"code": codes, "sector": ["S1"] * 16 + ["tiny"] * 4})
    out = wins.sector_rank_ic(preds, labels, tiny)
    assert set(out["sector"]) == {"S1"}
    val_only = {k: v.with_columns(pl.lit("val").alias("split")) for k, v in preds.items()}
    assert wins.sector_rank_ic(val_only, labels, sectors_case["sectors"]).is_empty()


def _prices(n_days: int, n_stocks: int = 10, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    # Volatility switches between calm and turbulent spells so both regimes occur.
    sigma = np.where((np.arange(n_days) // 40) % 2 == 0, 0.005, 0.03)
    market = rng.normal(0, sigma)
    rets = market[:, None] + rng.normal(0, 0.005, (n_days, n_stocks))
    close = 10 * np.exp(np.cumsum(rets, axis=0))
    grid = _grid([f"S{i:02d}" for i in range(n_stocks)], n_days)
    return grid.with_columns(close=pl.Series(close.ravel()))


def test_regimes_have_no_look_ahead() -> None:
    prices = _prices(200)
    base = wins.volatility_regimes(prices, window=10)
    assert set(base["regime"]) == {"calm", "turbulent"}
    assert base.columns == ["date", "regime", "vol", "vol_median"]
    cut = START + dt.timedelta(days=120)
    rng = np.random.default_rng(1)
    later = pl.col("date") > cut
    shocked = prices.with_columns(
        pl.when(later).then(pl.col("close") * pl.Series(rng.uniform(0.5, 2.0, prices.height))).otherwise(pl.col("close"))
    )
    # Truncating the future, or rewriting it, leaves every label up to the cut alone.
    for other in (shocked, prices.filter(~later)):
        got = wins.volatility_regimes(other, window=10).filter(pl.col("date") <= cut)
        assert got.equals(base.filter(pl.col("date") <= cut))
    assert not wins.volatility_regimes(shocked, window=10).equals(base)


def test_regimes_use_trailing_vol_and_expanding_median() -> None:
    prices = _prices(150)
    window = 10
    out = wins.volatility_regimes(prices, window=window)
    close = prices.sort("date", "code")["close"].to_numpy().reshape(150, -1)
    mkt = (close[1:] / close[:-1] - 1).mean(axis=1)  # returns of days 1..149
    vol = np.array([mkt[t - window:t].std(ddof=1) for t in range(window, len(mkt) + 1)])  # days window..149
    median = np.array([np.median(vol[: i + 1]) for i in range(len(vol))])
    keep = np.arange(len(vol)) >= window - 1  # min_history = window volatility values
    np.testing.assert_allclose(out["vol"].to_numpy(), vol[keep], rtol=1e-10)
    np.testing.assert_allclose(out["vol_median"].to_numpy(), median[keep], rtol=1e-10)
    assert (out["regime"] == "turbulent").to_numpy().tolist() == (vol[keep] > median[keep]).tolist()
    assert out["date"][0] == START + dt.timedelta(days=2 * window - 1)


def test_regime_rank_ic_splits_days_by_regime() -> None:
    codes = [f"S{i:02d}" for i in range(15)]
    labels = _labels(_grid(codes))
    day = (labels["date"] - START).dt.total_days().to_numpy()
    calm = day % 2 == 0
    preds = {"A": _predictions(labels, np.where(calm, 3.0, 0.0), seed=3)}
    regimes = pl.DataFrame({"date": [START + dt.timedelta(days=i) for i in range(N_DAYS)],
                            "regime": ["calm" if i % 2 == 0 else "turbulent" for i in range(N_DAYS)]})
    out = wins.regime_rank_ic(preds, labels, regimes.filter(pl.col("date") != START))  # day 0: no regime
    assert out.columns == ["model", "regime", "rank_ic", "t", "n_days", "mean_stocks"]
    ic = dict(zip(out["regime"], out["rank_ic"]))
    assert ic["calm"] > 0.6 and abs(ic["turbulent"]) < 0.2
    assert dict(zip(out["regime"], out["n_days"])) == {"calm": N_DAYS // 2 - 1, "turbulent": N_DAYS // 2}


@pytest.fixture(scope="module")
def stocks_case() -> dict[str, object]:
    labels = _labels(_grid([f"S{i:02d}" for i in range(25)]), seed=4)
    return {"labels": labels, "good": _predictions(labels, 2.0, seed=5), "noise": _predictions(labels, 0.0, seed=6),
            "other": _predictions(labels, 0.3, seed=7)}


def test_a_model_never_beats_itself(stocks_case: dict) -> None:
    out = wins.stock_win_share({"a": stocks_case["good"], "b": stocks_case["good"]}, stocks_case["labels"])
    assert out.columns == ["model_a", "model_b", "share", "n_stocks", "accuracy_a", "accuracy_b"]
    assert out["share"].to_list() == [0.0, 0.0] and out["n_stocks"].to_list() == [25, 25]


def test_win_shares_of_a_pair_sum_to_at_most_one(stocks_case: dict) -> None:
    preds = {k: stocks_case[k] for k in ("good", "noise", "other")}
    out = wins.stock_win_share(preds, stocks_case["labels"])
    assert out.height == 6
    both = out.join(out, left_on=["model_a", "model_b"], right_on=["model_b", "model_a"])
    assert ((both["share"] + both["share_right"]) <= 1 + 1e-12).all()
    assert (both["n_stocks"] == both["n_stocks_right"]).all()


def test_a_clearly_better_model_wins_most_stocks(stocks_case: dict) -> None:
    out = wins.stock_win_share({"good": stocks_case["good"], "noise": stocks_case["noise"]}, stocks_case["labels"])
    row = out.filter(pl.col("model_a") == "good").row(0, named=True)
    assert row["share"] > 0.9 and row["accuracy_a"] > 0.5 > row["accuracy_b"]


def test_stocks_need_min_days_in_common(stocks_case: dict) -> None:
    labels = stocks_case["labels"]
    good = stocks_case["good"]
    # S00 loses all but 10 of its test days in one model: it no longer counts.
    day = (pl.col("date") - pl.lit(START)).dt.total_days()
    sparse = good.filter((pl.col("code") != "S00") | (day < 10))
    out = wins.stock_win_share({"good": good, "sparse": sparse}, labels)
    assert out["n_stocks"].to_list() == [24, 24]
    assert wins.stock_win_share({"good": good, "sparse": sparse}, labels, min_days=5)["n_stocks"].to_list() == [25, 25]


def test_overlapping_test_rows_are_refused(stocks_case: dict) -> None:
    good = stocks_case["good"]
    twice = pl.concat([good, good.with_columns(pl.lit(1, dtype=pl.Int32).alias("fold"))])
    with pytest.raises(ValueError, match="test windows overlap"):
        wins.stock_win_share({"a": twice, "b": good}, stocks_case["labels"])
