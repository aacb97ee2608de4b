"""Targets: forward returns over the stock's own next rows, label delay, dir/sig labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from alphagraph.features import compute_targets
from tests.leakage import toy_prices

HORIZONS = [1, 5, 20]


@pytest.fixture(scope="module")
def panel():
    prices, _ = toy_prices(n_stocks=8, n_days=260, seed=11)
    return prices


def own_rows(prices: pl.DataFrame, code: str) -> pl.DataFrame:
    return prices.filter(pl.col("code") == code).sort("date")


def forward(prices: pl.DataFrame, code: str, i: int, h: int, delay: int) -> float | None:
    """Hand-computed: close of the stock's (i+delay+h)-th row / close of its (i+delay)-th row - 1."""
    c = own_rows(prices, code)["close"].to_list()
    if i + delay + h >= len(c):
        return None
    return c[i + delay + h] / c[i + delay] - 1


def value(targets: pl.DataFrame, prices: pl.DataFrame, code: str, i: int, col: str):
    day = own_rows(prices, code)["date"][i]
    return targets.filter((pl.col("code") == code) & (pl.col("date") == day))[col].item()


def test_schema_rows_and_order(panel):
    t = compute_targets(panel, HORIZONS, 0, 1.0)
    expected = ["date", "code"] + [f"{p}_{h}d" for h in HORIZONS for p in ("ret", "dir", "sig")]
    assert t.columns == expected
    assert t.select("date", "code").equals(panel.select("date", "code"))
    assert all(t.schema[f"ret_{h}d"] == pl.Float64 for h in HORIZONS)
    assert all(t.schema[f"{p}_{h}d"] == pl.Int8 for h in HORIZONS for p in ("dir", "sig"))


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_forward_returns_by_hand(panel, delay):
    t = compute_targets(panel, HORIZONS, delay, 1.0)
    # C03 is suspended on days 50-54 and 120-121: row 48 + 5 rows crosses the gap
    cases = [("C00", 0), ("C00", 100), ("C03", 48), ("C03", 118), ("C01", 3), ("C02", 70), ("C06", 230)]
    for code, i in cases:
        for h in HORIZONS:
            want = forward(panel, code, i, h, delay)
            got = value(t, panel, code, i, f"ret_{h}d")
            if want is None:
                assert got is None, (code, i, h, delay)
            else:
                assert got == pytest.approx(want, rel=1e-12), (code, i, h, delay)


def test_label_delay_shifts_labels_by_own_rows(panel):
    d0 = compute_targets(panel, HORIZONS, 0, 1.0)
    d1 = compute_targets(panel, HORIZONS, 1, 1.0)
    for h in HORIZONS:
        shifted = d0.with_columns(pl.col(f"ret_{h}d").shift(-1).over("code", order_by="date").alias("next"))
        joined = shifted.join(d1.select("date", "code", pl.col(f"ret_{h}d").alias("delayed")), on=["date", "code"])
        assert joined.select((pl.col("next").eq_missing(pl.col("delayed"))).all()).item()


def test_null_at_end_of_sample_and_after_delisting(panel):
    t = compute_targets(panel, HORIZONS, 1, 1.0)
    for h in HORIZONS:
        for code in panel["code"].unique():
            col = t.filter(pl.col("code") == code).sort("date")[f"ret_{h}d"]
            n = col.len()
            k = min(n, h + 1)  # the last h+delay rows of every stock have no label
            assert col.tail(k).null_count() == k
            if n > k:
                assert col.head(n - k).null_count() == 0
    # C02 delists after day 180: its labels stop before its last row even though the panel goes on
    c02 = own_rows(t, "C02")
    assert c02["ret_5d"].tail(6).null_count() == 6
    assert c02["date"].max() < t["date"].max()


def test_dir_and_sig(panel):
    thr = 0.8
    t = compute_targets(panel, HORIZONS, 0, thr)
    for h in HORIZONS:
        r, dr, sg = f"ret_{h}d", f"dir_{h}d", f"sig_{h}d"
        assert t.filter(pl.col(r).is_null()).select(pl.col(dr).is_null().all(), pl.col(sg).is_null().all()).row(0) == (True, True)
        ok = t.filter(pl.col(r).is_not_null())
        assert (ok[dr] == (ok[r] > 0).cast(pl.Int8)).all()
        # per-date z-score by hand
        for day in ok["date"].unique().sort().gather([0, 50, 150]):
            x = ok.filter(pl.col("date") == day)
            v = x[r].to_numpy()
            z = (v - v.mean()) / v.std(ddof=1)
            assert x[sg].to_list() == (np.abs(z) > thr).astype(int).tolist()
    # a zero return is not "up"
    flat = pl.DataFrame({"date": [dt.date(2021, 1, 4), dt.date(2021, 1, 5)], "code": ["A", "A"], "close": [10.0, 10.0]})
    f = compute_targets(flat, [1], 0, 1.0)
    assert f["ret_1d"][0] == 0.0 and f["dir_1d"][0] == 0
    assert f["sig_1d"][0] is None  # one stock that day: no z-score


def test_rejects_bad_arguments(panel):
    with pytest.raises(ValueError):
        compute_targets(panel, [0], 0, 1.0)
    with pytest.raises(ValueError):
        compute_targets(panel, [1], -1, 1.0)
