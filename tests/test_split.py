import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagraph.runtime.config import SplitConfig
from alphagraph.evaluation.split import SplitError, assign_split, folds_to_json, load_folds, make_folds


def business_calendar(n: int, seed: int = 0) -> list[dt.date]:
    rng = np.random.default_rng(seed)
    days, d = [], dt.date(2018, 1, 1)
    while len(days) < n:
        if d.weekday() < 5 and rng.random() > 0.03:  # weekends and random holidays
            days.append(d)
        d += dt.timedelta(days=1)
    return days


def check_folds(cal: list[dt.date], cfg: SplitConfig) -> None:
    idx = {d: i for i, d in enumerate(cal)}
    folds = make_folds(cal, cfg)
    assert len(folds) == cfg.n_splits
    assert folds[-1].test[1] == cal[-1]  # the test windows cover the end of the sample
    for prev, nxt in zip(folds, folds[1:]):
        assert idx[nxt.test[0]] == idx[prev.test[1]] + 1  # contiguous, no overlap
    for f in folds:
        tr, va, te = ([idx[a], idx[b]] for a, b in (f.train, f.val, f.test))
        assert tr[0] <= tr[1] < va[0] <= va[1] < te[0] <= te[1]
        # gaps are at least the embargo (days strictly between the windows)
        assert va[0] - tr[1] - 1 >= cfg.embargo_days
        assert te[0] - va[1] - 1 >= cfg.embargo_days
        assert va[1] - va[0] + 1 == cfg.val_days and te[1] - te[0] + 1 == cfg.test_days
        assert tr[1] - tr[0] + 1 >= cfg.min_train_days
        if cfg.max_train_days is not None:
            assert tr[1] - tr[0] + 1 <= cfg.max_train_days
        # every label window of a train row (t + embargo at most) ends before val starts
        assert tr[1] + cfg.embargo_days < va[0]


def test_default_like_folds():
    check_folds(business_calendar(1500), SplitConfig(n_splits=3, val_days=250, test_days=250, embargo_days=20))


def test_too_short_says_needed_and_available():
    with pytest.raises(SplitError, match=r"need at least 792 trading days .* has 500"):
        make_folds(business_calendar(500), SplitConfig(n_splits=2, min_train_days=252, val_days=200, test_days=150, embargo_days=20))


def test_json_round_trip(tmp_path):
    cfg = SplitConfig(n_splits=2, min_train_days=50, val_days=30, test_days=30, embargo_days=5)
    folds = make_folds(business_calendar(300), cfg)
    from alphagraph.runtime.io import write_json

    write_json(folds_to_json(folds, cfg), tmp_path / "folds.json")
    assert load_folds(tmp_path / "folds.json") == folds


def test_purging_uses_each_stocks_own_trading_days():
    cal = business_calendar(200)
    cfg = SplitConfig(n_splits=1, min_train_days=60, val_days=40, test_days=40, embargo_days=5)
    (fold,) = make_folds(cal, cfg)
    rows = [(d, "A") for d in cal] + [(d, "B") for d in cal]
    panel = pl.DataFrame(rows, schema={"date": pl.Date, "code": pl.Utf8}, orient="row")
    # B is suspended for 10 days just after the train window: its last train
    # rows' 5-day labels now end inside validation and must be purged.
    t_end = cal.index(fold.train[1])
    gap = set(cal[t_end + 1 : t_end + 11])
    panel = panel.filter(~((pl.col("code") == "B") & pl.col("date").is_in(gap))).sort("date", "code")
    out = assign_split(panel, fold, reach=5)
    a_train = out.filter((pl.col("code") == "A") & (pl.col("split") == "train"))
    b_train = out.filter((pl.col("code") == "B") & (pl.col("split") == "train"))
    assert a_train["date"].max() == fold.train[1]
    assert b_train["date"].max() < fold.train[1]
    # For every kept train row, the stock's row `reach` days later is before val.
    for code in ("A", "B"):
        dates = panel.filter(pl.col("code") == code)["date"].to_list()
        pos = {d: i for i, d in enumerate(dates)}
        for d in out.filter((pl.col("code") == code) & (pl.col("split") == "train"))["date"]:
            j = pos[d] + 5
            assert j >= len(dates) or dates[j] < fold.val[0]
    assert set(out["split"].unique()) == {"train", "val", "test"}


@settings(max_examples=60, deadline=None)
@given(
    n_days=st.integers(100, 900),
    n_splits=st.integers(1, 5),
    val=st.integers(1, 120),
    test=st.integers(1, 120),
    embargo=st.integers(1, 25),
    min_train=st.integers(1, 300),
    max_train=st.one_of(st.none(), st.integers(1, 400)),
    seed=st.integers(0, 100),
)
def test_property_random_calendars(n_days, n_splits, val, test, embargo, min_train, max_train, seed):
    cal = business_calendar(n_days, seed)
    if max_train is not None and max_train < min_train:
        max_train = min_train
    cfg = SplitConfig(n_splits=n_splits, min_train_days=min_train, max_train_days=max_train,
                      val_days=val, test_days=test, embargo_days=embargo)
    needed = min_train + 2 * embargo + val + n_splits * test
    if n_days < needed:
        with pytest.raises(SplitError):
            make_folds(cal, cfg)
    else:
        check_folds(cal, cfg)
