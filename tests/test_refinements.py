"""The refinement study's bookkeeping: params of a run, the leak-free validation and the plan's success criterion."""

import datetime as dt

import polars as pl
import pytest

from alphagraph.runtime.errors import UserError
from alphagraph.runtime.config import Params, to_dict
from alphagraph.experiments.refinements import CATALOG, _window_metrics, judge, to_markdown, variant_params


def _rec(name, seed, ic, ic5=0.02, ic1=0.02, cpu=100.0):
    return {"refinement": name, "seed": seed, "val_rank_ic_1d": ic, "val_rank_ic_5d": ic5, "val_ic_1d": ic1,
            "test_rank_ic_1d": ic, "cpu_seconds": cpu}


def test_every_refinement_is_a_valid_params_change_and_the_budget_applies_to_all():
    base = to_dict(Params())
    for name in CATALOG:
        tree = variant_params(base, {"train.epochs": 3}, name, seed=2)
        assert tree["train"]["epochs"] == 3 and tree["seed"] == 2
        for key, value in CATALOG[name].items():
            group, leaf = key.split(".")
            assert tree[group][leaf] == value
    assert variant_params(base, {}, "baseline", 0)["train"] == base["train"]
    with pytest.raises(UserError, match="trian"):
        variant_params(base, {"trian.epochs": 3}, "baseline", 0)


def test_the_criterion_needs_five_percent_no_guard_worse_and_at_most_ten_percent_more_time():
    records = [_rec("baseline", s, 0.020 + 0.001 * s) for s in range(3)]
    records += [_rec("fan", s, 0.0215 + 0.001 * s) for s in range(3)]  # +7 %: pass
    records += [_rec("adabelief", s, 0.0205 + 0.001 * s) for s in range(3)]  # +2 %: fail
    records += [_rec("stochastic_depth", s, 0.0215 + 0.001 * s, cpu=120.0) for s in range(3)]  # slow
    records += [_rec("regime_weighting", s, 0.0215 + 0.001 * s, ic5=0.01 + 0.001 * s) for s in range(3)]  # guard
    rows = {r["refinement"]: r for r in judge(records)}
    assert rows["fan"]["verdict"] == "pass" and rows["fan"]["gain"] == pytest.approx(0.0015 / 0.021)
    assert rows["adabelief"]["verdict"].startswith("fail: gain")
    assert "time x1.20" in rows["stochastic_depth"]["verdict"]
    assert "val_rank_ic_5d worse" in rows["regime_weighting"]["verdict"]
    table = to_markdown(list(rows.values()), "t")
    assert table.count("\n| ") == 1 + 5 and "pass" in table  # header and rows


def test_the_validation_figures_read_no_day_that_a_fold_tests():
    """Pooled over walk-forward folds, fold 1's validation days after fold 0's first test day are test days."""
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(6)]
    rows = []
    for i, d in enumerate(days):  # fold 0: val days 0-2, test 3-5; fold 1: val 3-5 (fold 0's test days)
        for c in range(20):
            ret = float(c) if i < 3 else float(-c)
            rows.append({"date": d, "code": f"S{c}", "fold": 0 if i < 3 else 1, "split": "val", "pred_1d": float(c), "ret_1d": ret})
            if i >= 3:
                rows.append({"date": d, "code": f"S{c}", "fold": 0, "split": "test", "pred_1d": float(c), "ret_1d": ret})
    frame = pl.DataFrame(rows)
    got = _window_metrics(frame, "val")
    assert got["val_rank_ic_1d"] == pytest.approx(1.0)  # the inverted days after the first test day do not count
    assert _window_metrics(frame, "test")["test_rank_ic_1d"] == pytest.approx(-1.0)


def test_a_refinement_that_excludes_a_default_switch_is_judged_against_its_own_reference():
    records = [_rec("baseline", s, 0.030) for s in range(3)]
    records += [_rec("no_ridge_path", s, 0.020 + 0.001 * s) for s in range(3)]
    records += [_rec("pretrain_masked", s, 0.0215 + 0.001 * s) for s in range(3)]  # +7 % over no_ridge_path
    rows = {r["refinement"]: r for r in judge(records)}
    assert rows["pretrain_masked"]["against"] == "no_ridge_path" and rows["pretrain_masked"]["verdict"] == "pass"
    assert rows["no_ridge_path"]["against"] == "baseline" and rows["no_ridge_path"]["verdict"].startswith("fail")
    assert "| pretrain_masked (vs no_ridge_path) |" in to_markdown(list(rows.values()), "t")
