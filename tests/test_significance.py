"""Newey-West inference for a daily mean and the pairwise RankIC tests (alphagraph.evaluation.significance)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from alphagraph.evaluation.significance import lags_for, newey_west, newey_west_t, pairwise_rank_ic_tests


def reference_nw(x: np.ndarray, lags: int) -> tuple[float, float]:
    """Textbook Newey-West with loops: NaN dropped, gamma_j over T, Bartlett weights."""
    x = x[np.isfinite(x)]
    n = x.size
    e = x - x.mean()
    s = e @ e / n
    for j in range(1, lags + 1):
        s += 2 * (1 - j / (lags + 1)) * (e[j:] @ e[:-j]) / n
    return float(x.mean()), float(np.sqrt(s / n))


def ar1(rng: np.random.Generator, phi: float, draws: int, days: int, burn: int = 200) -> np.ndarray:
    eps = rng.standard_normal((draws, days + burn))
    x = np.empty_like(eps)
    x[:, 0] = eps[:, 0]
    for t in range(1, x.shape[1]):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x[:, burn:]


def test_lag_rule():
    # floor(4 (T/100)^(2/9)): 750 test days -> 6 lags; h-day labels overlap h-1 days.
    assert [lags_for(h, 750) for h in (1, 5, 10, 20)] == [6, 6, 9, 19]
    assert lags_for(1, 100) == 4
    assert lags_for(20, 5) == 4  # never more than n - 1
    assert lags_for(1, 1) == lags_for(5, 0) == 0


@pytest.mark.parametrize("lags", [None, 0, 3, 40])
def test_matches_the_textbook_formula_with_nan_days_dropped(lags):
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal(300)) * 0.1 + rng.standard_normal(300)
    x[[0, 7, 150, 299]] = np.nan
    mean, se, t, n, used = newey_west_t(x, lags)
    assert n == 296
    assert used == (lags_for(1, 296) if lags is None else lags)
    ref_mean, ref_se = reference_nw(x, used)
    assert mean == pytest.approx(ref_mean, rel=1e-12)
    assert se == pytest.approx(ref_se, rel=1e-9)
    assert t == pytest.approx(mean / se)


def test_rows_are_independent_series():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 200))
    x[1, ::3] = np.nan
    out = newey_west(x, lags=[0, 5, 10])
    for i, lag in enumerate([0, 5, 10]):
        assert out["se"][i] == pytest.approx(reference_nw(x[i], lag)[1], rel=1e-9)
    assert out["n"].tolist() == [200, 133, 200]


def test_ar1_se_close_to_the_long_run_se_and_naive_se_too_small():
    # AR(1) with phi=0.5 and unit innovations: the mean's true se is sqrt(1 / (1-phi)^2 / T).
    phi, days = 0.5, 1000
    x = ar1(np.random.default_rng(2), phi, draws=3000, days=days)
    true_se = math.sqrt(1 / (1 - phi) ** 2 / days)
    assert x.mean(axis=1).std() == pytest.approx(true_se, rel=0.05)  # the simulation itself
    nw = newey_west(x)
    assert (nw["lags"] == 6).all()
    # Bartlett with 6 lags is biased down by ~10% at phi=0.5; more lags remove most of it.
    assert np.mean(nw["se"]) == pytest.approx(true_se, rel=0.15)
    assert np.mean(newey_west(x, lags=20)["se"]) == pytest.approx(true_se, rel=0.07)
    naive = x.std(axis=1, ddof=1) / math.sqrt(days)
    assert np.mean(naive) < 0.65 * true_se  # sqrt((1-phi)/(1+phi)) = 0.58 of the truth
    # So the naive t rejects a true zero mean far too often; NW is close to 5%.
    assert np.mean(np.abs(x.mean(axis=1) / naive) > 1.96) > 0.2  # P(|Z| > 1.96 * 0.58) = 0.26
    assert np.mean(np.abs(nw["t"]) > 1.96) < 0.12


def test_overlapping_h_day_sums_need_h_minus_1_lags():
    # An h-day label is a sum of h daily returns: consecutive labels share h-1 of them.
    h, days = 5, 1000
    daily = np.random.default_rng(3).standard_normal((2000, days + h - 1))
    labels = np.lib.stride_tricks.sliding_window_view(daily, h, axis=1).sum(axis=2)
    true_se = math.sqrt(h**2 / days)  # long-run variance of the MA(h-1) sum is h^2
    nw = newey_west(labels, horizon=h)
    assert (nw["lags"] == 6).all()
    assert np.mean(nw["se"]) == pytest.approx(true_se, rel=0.15)
    assert np.mean(labels.std(axis=1) / math.sqrt(days)) < 0.5 * true_se


def test_iid_se_is_close_to_the_naive_se():
    x = np.random.default_rng(4).standard_normal((2000, 750))
    naive = x.std(axis=1, ddof=1) / math.sqrt(750)
    nw = newey_west(x)
    assert np.mean(nw["se"] / naive) == pytest.approx(1.0, abs=0.03)
    # With no lags it is the naive se (T in the denominator, as gamma_0 has).
    assert newey_west(x, lags=0)["se"] == pytest.approx(x.std(axis=1) / math.sqrt(750), rel=1e-9)


def test_degenerate_series():
    mean, se, t, n, lags = newey_west_t([np.nan, np.nan])
    assert n == 0 and lags == 0 and all(math.isnan(v) for v in (mean, se, t))
    mean, se, t, n, _ = newey_west_t([0.3, np.nan])
    assert (mean, n) == (0.3, 1) and math.isnan(se) and math.isnan(t)
    mean, se, t, n, _ = newey_west_t(np.full(10, 0.25))  # no variation: no t
    assert mean == 0.25 and math.isnan(se) and math.isnan(t)
    with pytest.raises(ValueError, match="1-D"):
        newey_west_t(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="lags"):
        newey_west(np.zeros(5), lags=-1)


def frame(dates, values, h: int = 1) -> pl.DataFrame:
    return pl.DataFrame({"date": dates, f"rank_ic_{h}d": values}, schema={"date": pl.String, f"rank_ic_{h}d": pl.Float64})


def test_pairwise_tests_on_fabricated_series():
    rng = np.random.default_rng(5)
    days = [f"2020-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 26)]  # 300 days
    base = rng.standard_normal(300) * 0.1
    a = base + 0.02 + rng.standard_normal(300) * 0.02
    b = base + rng.standard_normal(300) * 0.02
    c = base + rng.standard_normal(300) * 0.02
    c[:50] = np.nan  # c misses its first 50 days: its pairs use 250 days, a-b keeps 300
    series = {
        "a": frame(days, a),
        "b": frame(days[::-1], b[::-1]),  # row order does not matter, dates do
        "c": frame(days, c),
    }
    out = pairwise_rank_ic_tests(series, horizon=1)
    assert out.columns == ["a", "b", "diff", "se", "t", "n", "lags"]
    assert list(zip(out["a"], out["b"])) == [("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"), ("c", "a"), ("c", "b")]
    row = {(r["a"], r["b"]): r for r in out.iter_rows(named=True)}
    ab = row[("a", "b")]
    assert ab["n"] == 300 and ab["lags"] == lags_for(1, 300)
    mean, se, t, _, _ = newey_west_t(a - b)
    assert (ab["diff"], ab["se"], ab["t"]) == pytest.approx((mean, se, t))
    assert ab["diff"] == pytest.approx(0.02, abs=0.005) and ab["t"] > 5  # the shared noise cancels
    assert row[("a", "c")]["n"] == row[("b", "c")]["n"] == 250
    assert row[("a", "c")]["diff"] == pytest.approx(np.nanmean(a - c))
    assert abs(row[("b", "c")]["t"]) < 4
    # Antisymmetric: b - a is -(a - b) with the same standard error.
    assert row[("b", "a")]["diff"] == pytest.approx(-ab["diff"])
    assert row[("b", "a")]["se"] == pytest.approx(ab["se"])


def test_pairwise_lags_follow_the_horizon_and_dates_missing_in_one_model():
    days = [f"d{i:03d}" for i in range(100)]
    rng = np.random.default_rng(6)
    series = {"x": frame(days, rng.standard_normal(100), 20), "y": frame(days[10:], rng.standard_normal(90), 20)}
    out = pairwise_rank_ic_tests(series, horizon=20)
    assert out["n"].to_list() == [90, 90]
    assert out["lags"].to_list() == [19, 19]
    with pytest.raises(ValueError, match="rank_ic_5d"):
        pairwise_rank_ic_tests(series, horizon=5)
    assert pairwise_rank_ic_tests({"x": series["x"]}, horizon=20).height == 0
    assert pairwise_rank_ic_tests({}, horizon=1).height == 0
