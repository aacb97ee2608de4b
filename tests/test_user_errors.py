"""A user's mistake stops with one message naming the knob; nothing half-written, no null metrics."""

import datetime as dt
import subprocess
import sys

import polars as pl
import pytest

from alphagraph.runtime.config import ConfigError, params_from_dict
from alphagraph.runtime.errors import UserError
from alphagraph.features.normalize import normalize_panel
from alphagraph.evaluation.oracle import empty_outputs
from alphagraph.evaluation.split import SplitError, make_folds
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"graph": {"relations": ["supplychain"]}}, "graph.relations"),
        ({"graph": {"relations": ["supply_chain"]}, "train": {"relations": ["competitor"]}}, "train.relations"),
        ({"gat": {"relations": ["sector"]}}, "gat.relations"),
        ({"split": {"val_start": "2016-01-01"}}, "split.val_start"),
        ({"split": {"val_start": "2017-01-01", "test_start": "2016-01-01"}}, "split.test_start"),
        ({"data": {"start": "01/02/2013"}}, "data.start"),
        ({"data": {"start": "2014-01-01", "end": "2013-01-01"}}, "data.end"),
        ({"data": {"min_code_match": 1.5}}, "data.min_code_match"),
        ({"normalize": {"min_stocks": 1}}, "normalize.min_stocks"),
    ],
)
def test_bad_params_name_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        params_from_dict(raw)


def test_a_stage_reports_a_user_error_in_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("graph:\n  relations: [supplychain]\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages/check_params.py"), "--params", str(params)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert "graph.relations" in line and "supplychain" in line


def _panel(n_stocks: int, n_days: int = 5) -> pl.DataFrame:
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n_days)]
    rows = [(d, f"S{i}", float(i), 0.01 * i) for d in days for i in range(n_stocks)]
    return pl.DataFrame(rows, schema=["date", "code", "f_x", "ret_1d"], orient="row")


def test_normalize_with_too_few_stocks_names_min_stocks():
    cfg = params_from_dict({}).normalize  # min_stocks 20
    with pytest.raises(UserError, match=r"normalize\.min_stocks = 20.*the most on any date is 4"):
        normalize_panel(_panel(4), cfg, [1])
    out, _ = normalize_panel(_panel(25), cfg, [1])
    assert out.height == 25 * 5


def test_short_calendar_names_min_stocks_as_a_cause():
    cfg = params_from_dict({}).split
    with pytest.raises(SplitError, match=r"normalize\.min_stocks"):
        make_folds([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(30)], cfg)


def test_fixed_split_dates():
    calendar = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(3 * 365)]
    cfg = params_from_dict({"split": {"val_start": "2014-01-01", "test_start": "2015-01-01", "min_train_days": 100}}).split
    (fold,) = make_folds(calendar, cfg)
    assert fold.train == (dt.date(2013, 1, 1), dt.date(2013, 12, 31))
    assert fold.val == (dt.date(2014, 1, 1), dt.date(2014, 12, 31))
    assert fold.test == (dt.date(2015, 1, 1), calendar[-1])
    late = params_from_dict({"split": {"val_start": "2013-02-01", "test_start": "2015-01-01"}}).split
    with pytest.raises(SplitError, match=r"fixed train window .* holds 31 trading days, needs at least 252"):
        make_folds(calendar, late)


def test_empty_oracle_outputs_are_well_typed():
    preds, series = empty_outputs([1, 5])
    assert preds.height == 0 and preds.schema["pred_5d"] == pl.Float32 and preds.schema["date"] == pl.Date
    assert series["rank_ic"].columns == ["date", "rank_ic_1d", "rank_ic_5d"]
    assert series["cum_return"].columns == ["date", "cum_return_1d", "cum_return_5d"]


def test_null_headline_metrics_stop_the_stage(tmp_path, monkeypatch):
    """Four stocks a day: no long-short book at eval.quantile 0.1, so the stage must not write null metrics."""
    from alphagraph.evaluation import walkforward

    monkeypatch.chdir(tmp_path)
    params = params_from_dict({"features": {"horizons": [1]}, "gat": {"horizon_weights": [1.0]},
                               "train": {"horizon_weights": [1.0]}, "split": {"embargo_days": 1}})
    panel = _panel(4, 6)
    preds = panel.select("date", "code", pl.lit(0, dtype=pl.Int32).alias("fold"), pl.lit("test").alias("split"),
                         pl.col("f_x").alias("pred_1d"))
    monkeypatch.setattr(walkforward, "market_data", lambda: (None, None))
    monkeypatch.setattr(walkforward, "realized_returns", lambda p, h, prices: p.select("date", "code", "ret_1d", pl.col("ret_1d").alias("r_next")))
    with pytest.raises(UserError, match=r"test\.sharpe_1d.*eval\.quantile"):
        walkforward.evaluate_and_write("lgbm", preds, panel, params)
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "data").exists()
