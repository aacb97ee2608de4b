"""The feasible ceiling (alphagraph.evaluation.feasible, stage feasible): accuracy on the easy market, no look-ahead,
the file-source outputs, and a variant choice that reads no test label."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
import yaml

from alphagraph.runtime.config import ConfigError, FeasibleConfig, params_from_dict
from alphagraph.data.synthetic import COMPONENTS, generate_market
from alphagraph.evaluation.feasible import VARIANTS, choose_variant, feasible_alphas, feasible_predictions
from alphagraph.features.targets import compute_targets
from alphagraph.evaluation.split import make_folds
from tests.conftest import EASY_MARKET, ROOT
from tests.leakage import assert_unchanged_through, perturb_after, toy_prices

SMALL = {"n_stocks": 60, "n_days": 320, "n_sectors": 4, "n_funds": 10}
SPLIT = {"n_splits": 2, "min_train_days": 100, "val_days": 60, "test_days": 60, "embargo_days": 20}


def params(synthetic: dict, **groups):
    return params_from_dict({"data": {"synthetic": synthetic}, "split": SPLIT} | groups)


def alphas(p, market, prices=None, label_delay: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    syn = p.data.synthetic
    return feasible_alphas(
        market.prices if prices is None else prices, market.universe, market.relations,
        syn.signal, syn.supply_nonlinearity, label_delay, p.feasible,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_static_feasible_tracks_the_oracle_on_the_easy_market(seed):
    """Observed relations = true, constant strengths, linear supply chain: only the vol is estimated."""
    p = params({**SMALL, "n_stocks": 80, "n_days": 500, **EASY_MARKET})
    market = generate_market(p.data.synthetic, seed)
    frame, strengths = alphas(p, market)
    assert frame.height == market.prices.height
    dates = frame["date"].unique().sort()
    joined = frame.join(market.oracle.select("date", "code", "alpha"), on=["date", "code"])
    daily = (
        joined.filter(pl.col("date") >= dates[60])  # past the momentum window and the vol filters' start
        .group_by("date")
        .agg(static=pl.corr("static", "alpha", method="spearman"), rolling=pl.corr("rolling", "alpha", method="spearman"))
    )
    # Measured 0.985 mean, 0.88 worst day (seeds 0-2): not 1, the vol scaling is estimated.
    assert daily["static"].mean() > 0.95 and daily["static"].min() > 0.8
    assert daily["rolling"].mean() > 0.75  # strengths fitted on noisy past days
    # The rolling strengths find the constant planted a_k: their projection on a is about |a|^2.
    a = np.array([getattr(p.data.synthetic.signal, k) for k in COMPONENTS])
    b = strengths.filter(pl.col("date") >= dates[200]).select(f"b_{k}" for k in COMPONENTS).mean().row(0)
    assert 0.6 < float(np.dot(b, a) / np.dot(a, a)) < 1.4


def test_no_feasible_prediction_reads_the_future():
    """Prices and volumes after t changed: every static and rolling alpha (and strength) dated <= t is unchanged."""
    p = params(SMALL)  # the realistic market: noisy, dynamic relations
    market = generate_market(p.data.synthetic, 3)
    dates = market.prices["date"].unique().sort()
    for d in (0, 2):
        base, base_b = alphas(p, market, label_delay=d)
        for cut in (150, 260):
            t = dates[cut]
            after, after_b = alphas(p, market, perturb_after(market.prices, t, seed=cut), label_delay=d)
            assert_unchanged_through(base, after, t)
            assert_unchanged_through(base_b, after_b, t, keys=("date",))
            later = pl.col("date") > dates[cut + d + 2]
            for v in VARIANTS:  # the perturbation bites
                assert not base.filter(later)[v].equals(after.filter(later)[v]), v


def test_missing_relations_and_sectors_leave_zero_components():
    """A panel with no relations file rows and a code missing from the universe still gets alphas."""
    prices, universe = toy_prices(n_stocks=12, n_days=200)
    empty = pl.DataFrame(schema={"src": pl.Utf8, "dst": pl.Utf8, "relation": pl.Utf8, "weight": pl.Float64,
                                 "start": pl.Date, "end": pl.Date})
    p = params(SMALL)
    frame, _ = feasible_alphas(prices, universe, empty, p.data.synthetic.signal, 0.5, 0, p.feasible)
    assert frame.height == prices.height
    assert frame.filter(pl.col("date") > prices["date"].unique().sort()[80])["static"].null_count() == 0


def test_config_range_checks_name_the_key():
    assert params_from_dict({"feasible": {"halflife": 10}}).feasible == FeasibleConfig(halflife=10.0)
    with pytest.raises(ConfigError, match="feasible.halflife"):
        params_from_dict({"feasible": {"halflife": 0.5}})
    with pytest.raises(ConfigError, match="feasible.vol_prior_days"):
        params_from_dict({"feasible": {"vol_prior_days": -1}})


def choose(p, market, folds, prices) -> tuple[str, dict]:
    """The stage's choice on ``prices``: predictions of both variants and realized 1-day returns."""
    frame, _ = alphas(p, market, prices)
    keys = prices.select("date", "code")
    preds = {v: feasible_predictions(frame, v, keys, folds, [1], 1) for v in VARIANTS}
    return choose_variant(preds, compute_targets(prices, [1], 0, 1.0))


def test_the_variant_choice_reads_no_test_label():
    p = params(SMALL)
    market = generate_market(p.data.synthetic, 5)
    folds = make_folds(market.prices["date"].unique().sort().to_list(), p.split)
    first_test = min(f.test[0] for f in folds)
    assert any(f.val[1] >= first_test for f in folds)  # a later fold validates on test days: they must not count
    choice, report = choose(p, market, folds, market.prices)
    # Every return from the first test day's close on (every test label) is redrawn.
    noisy = perturb_after(market.prices, first_test, seed=9, low=0.7, high=1.4)
    choice2, report2 = choose(p, market, folds, noisy)
    assert choice2 == choice and report2["val"] == report["val"]
    assert report2["test"] != report["test"]  # the perturbation reached the test figures
    assert set(report["val"]) == {"rank_ic_1d_static", "rank_ic_1d_rolling"}


def test_a_file_source_writes_the_unavailable_outputs(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "file"}}))
    subprocess.run([sys.executable, str(ROOT / "stages/feasible.py")], cwd=tmp_path, check=True, capture_output=True)
    for path in ("metrics/feasible.json", "reports/models/feasible.json"):
        assert json.loads((tmp_path / path).read_text()) == {"available": False}
    preds = pl.read_parquet(tmp_path / "data/predictions/feasible.parquet")
    assert preds.height == 0 and preds.columns == ["date", "code", "fold", "split"] + [f"pred_{h}d" for h in (1, 5, 10, 20)]
    assert pl.read_csv(tmp_path / "plots/feasible/rank_ic.csv").columns == ["date"] + [f"rank_ic_{h}d" for h in (1, 5, 10, 20)]
    assert (tmp_path / "plots/feasible/cum_return.csv").exists()


def test_the_leaderboard_shows_the_feasible_ceiling_and_each_models_share_of_it():
    from alphagraph.reporting.report import best_model, leaderboard, to_markdown
    from alphagraph.reporting.page import board_columns

    def doc(ic: float) -> dict:
        return {"test": {"rank_ic_1d": ic, "rank_ic_5d": ic / 2}}

    metrics = {"lgbm": doc(0.02), "oracle": doc(0.08), "feasible": doc(0.05) | {"available": True}}
    board = leaderboard(metrics, [1, 5])
    assert board["model"].to_list() == ["oracle", "feasible", "lgbm"]
    share = dict(zip(board["model"], board["frac_feasible_1d"]))
    assert share == pytest.approx({"oracle": 1.6, "feasible": 1.0, "lgbm": 0.4})
    assert best_model(board) == "lgbm"  # a ceiling is never the best model
    md = to_markdown(board, [1, 5])
    assert "/ feasible" in md and "| feasible (ceiling from observables) |" in md and "| 40% |" in md
    assert any(c.key == "frac_feasible_1d" for c in board_columns(board, [1, 5]))
    # A file source: the feasible file says unavailable, and neither the row nor the column is shown.
    board = leaderboard(metrics | {"feasible": {"available": False}}, [1, 5])
    assert "feasible" not in board["model"].to_list() and board["frac_feasible_1d"].null_count() == board.height
    assert "/ feasible" not in to_markdown(board, [1, 5])
    assert not any(c.key == "frac_feasible_1d" for c in board_columns(board, [1, 5]))
