"""Split schemes: walk_forward unchanged, rolling, purged k-fold with embargo (no training label window touches val or test)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from alphagraph.runtime.config import ConfigError, SplitConfig, params_from_dict
from alphagraph.runtime.io import write_json
from alphagraph.evaluation.split import Fold, SplitError, assign_split, folds_to_json, in_train, load_folds, make_folds
from tests.test_split import business_calendar


def todays_walk_forward(calendar: list[dt.date], cfg: SplitConfig) -> list[Fold]:
    """make_folds as it was before split.scheme (the walk-forward branch, verbatim)."""
    n, e, v, t = len(calendar), cfg.embargo_days, cfg.val_days, cfg.test_days
    first_test = n - cfg.n_splits * t
    folds = []
    for k in range(cfg.n_splits):
        test_start = first_test + k * t
        val_end = test_start - e - 1
        val_start = val_end - v + 1
        train_end = val_start - e - 1
        train_start = 0 if cfg.max_train_days is None else max(0, train_end - cfg.max_train_days + 1)
        folds.append(Fold(k, (calendar[train_start], calendar[train_end]), (calendar[val_start], calendar[val_end]),
                          (calendar[test_start], calendar[test_start + t - 1])))
    return folds


def test_walk_forward_and_rolling_are_todays_folds():
    cal = business_calendar(1500)
    default = SplitConfig()
    folds = make_folds(cal, default)
    assert folds == todays_walk_forward(cal, default) and all(f.train_ranges is None for f in folds)
    doc = folds_to_json(folds, default)
    assert set(doc) == {"embargo_days", "folds"} and all(set(f) == {"fold", "train", "val", "test"} for f in doc["folds"])
    window = SplitConfig(max_train_days=400)
    assert make_folds(cal, SplitConfig(scheme="rolling", max_train_days=400)) == todays_walk_forward(cal, window)
    with pytest.raises(SplitError, match="max_train_days"):
        make_folds(cal, SplitConfig(scheme="rolling"))


# ------------------------------------------------------------------ purged k-fold

CFG = SplitConfig(scheme="purged_kfold", n_splits=4, min_train_days=60, val_days=20, embargo_days=6)
REACH = 5


def irregular_panel(cal: list[dt.date]) -> pl.DataFrame:
    """A trades every day; B is suspended 12 days ending 3 days before fold 2's val window (its label
    windows there stretch over the suspension into val); C delists in the middle of the calendar; D is
    suspended 10 days from 2 days after fold 1's test block (its test rows' label windows outlast the embargo)."""
    folds = make_folds(cal, CFG)
    val2, test1 = cal.index(folds[2].val[0]), cal.index(folds[1].test[1])
    gap, gap_d = set(cal[val2 - 15: val2 - 3]), set(cal[test1 + 2: test1 + 12])
    rows = [(d, "A") for d in cal] + [(d, "B") for d in cal if d not in gap] + [(d, "C") for d in cal[:170]]
    rows += [(d, "D") for d in cal if d not in gap_d]
    return pl.DataFrame(rows, schema={"date": pl.Date, "code": pl.Utf8}, orient="row").sort("date", "code")


def label_windows(panel: pl.DataFrame, reach: int) -> dict[tuple[dt.date, str], tuple[dt.date, dt.date]]:
    """(date, code) -> [date, the stock's row `reach` rows later, else its last row], by plain loops."""
    out = {}
    for code in panel["code"].unique().to_list():
        dates = panel.filter(pl.col("code") == code)["date"].to_list()
        for i, d in enumerate(dates):
            out[(d, code)] = (d, dates[min(i + reach, len(dates) - 1)])
    return out


def test_purged_kfold_no_training_label_window_touches_val_or_test():
    cal = business_calendar(320, seed=3)
    folds = make_folds(cal, CFG)
    idx = {d: i for i, d in enumerate(cal)}
    # The test blocks tile the calendar: every day is tested exactly once.
    tested = [i for f in folds for i in range(idx[f.test[0]], idx[f.test[1]] + 1)]
    assert tested == list(range(len(cal)))
    panel = irregular_panel(cal)
    windows = label_windows(panel, REACH)
    purged = {"B": 0, "D": 0}
    for f in folds:
        out = assign_split(panel, f, REACH)
        rows = {s: out.filter(pl.col("split") == s) for s in ("train", "val", "test")}
        assert all(r.height for r in rows.values())
        held = {s: rows[s].select("date", "code").rows() for s in ("val", "test")}
        for d, code in rows["train"].select("date", "code").rows():
            lo, hi = windows[(d, code)]
            for s in ("val", "test"):
                window = getattr(f, s)
                assert hi < window[0] or lo > window[1], (f.fold, d, code, s)  # no val / test DATE in it
                # nor a day of a label window of the same stock's held-out rows
                assert all(hi < windows[k][0] or lo > windows[k][1] for k in held[s] if k[1] == code)
            # embargo: nothing within embargo_days after a held-out window
            assert not any(0 < idx[d] - idx[getattr(f, s)[1]] <= CFG.embargo_days for s in ("val", "test"))
        for d, code in held["val"]:
            lo, hi = windows[(d, code)]
            assert hi < f.test[0] or lo > f.test[1]
        assert rows["test"].height == panel.filter(pl.col("date").is_between(*f.test)).height
        # the suspensions: some of B's and D's rows are purged where A's rows on the same dates train
        a = set(rows["train"].filter(pl.col("code") == "A")["date"].to_list())
        for code in ("B", "D"):
            kept = set(rows["train"].filter(pl.col("code") == code)["date"].to_list())
            purged[code] += len((a & set(panel.filter(pl.col("code") == code)["date"].to_list())) - kept)
    assert purged["B"] > 0 and purged["D"] > 0
    # a middle fold trains on both sides of its held-out span
    mid = folds[1]
    assert len(mid.ranges) == 2 and mid.ranges[0][1] < mid.val[0] and mid.ranges[1][0] > mid.test[1] and mid.trains_after_test
    assert folds[0].val[0] > folds[0].test[1]  # no room before the first block: validation after it


def test_purged_kfold_round_trips_and_reaches_every_consumer(tmp_path):
    from alphagraph.rl.export import date_split, in_sample_expr
    from alphagraph.train import TRAIN, split_codes

    cal = business_calendar(320, seed=3)
    folds = make_folds(cal, CFG)
    write_json(folds_to_json(folds, CFG), tmp_path / "folds.json")
    assert load_folds(tmp_path / "folds.json") == folds
    f = folds[1]
    panel = irregular_panel(cal)
    codes = split_codes(panel, f, REACH)
    train_dates = set(panel.filter(pl.Series(codes == TRAIN))["date"].to_list())
    assert min(train_dates) < f.val[0] and max(train_dates) > f.test[1]
    frame = pl.DataFrame({"date": cal}).with_columns(split=date_split(f), in_sample=in_sample_expr(f), tr=in_train(f))
    inside = frame.filter(pl.col("date").is_between(*f.test))
    assert set(inside["split"]) == {"test"} and not inside["in_sample"].any()
    assert frame.filter(~pl.col("date").is_between(*f.test))["in_sample"].all()  # trained on both sides
    assert frame.filter(pl.col("split") == "train")["tr"].all() and frame.filter(pl.col("date") > f.test[1])["tr"].any()


def test_purged_kfold_errors_name_the_params():
    with pytest.raises(SplitError, match="min_train_days"):
        make_folds(business_calendar(200), SplitConfig(scheme="purged_kfold", n_splits=2, min_train_days=150, val_days=10, embargo_days=5))
    with pytest.raises(SplitError, match="val_days"):
        make_folds(business_calendar(60), SplitConfig(scheme="purged_kfold", n_splits=2, min_train_days=1, val_days=30, embargo_days=5))
    with pytest.raises(ConfigError, match="split.max_train_days"):
        params_from_dict({"split": {"scheme": "rolling"}})
    with pytest.raises(ConfigError, match="split.scheme"):
        params_from_dict({"split": {"scheme": "purged_kfold", "val_start": "2020-01-01", "test_start": "2021-01-01"}})
