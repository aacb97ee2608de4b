import dataclasses

import polars as pl
import pytest

from alphagraph.evaluation.evaluate import evaluate, next_day_returns
from alphagraph.models.lgbm import train_fold
from alphagraph.evaluation.oracle import oracle_predictions
from alphagraph.evaluation.split import assign_split


def run_lgbm(sp, lgbm_cfg=None, horizons=None, n_folds=None):
    params = sp.params
    cfg = lgbm_cfg or params.lgbm
    preds = []
    for fold in sp.folds[:n_folds]:
        split_panel = assign_split(sp.panel, fold, max(params.features.horizons))
        preds.append(train_fold(split_panel, fold.fold, horizons or params.features.horizons, cfg, params.seed).predictions)
    return pl.concat(preds)


def realized(sp):
    h = sp.params.features.horizons
    cols = [f"ret_{x}d" for x in h] + [f"dir_{x}d" for x in h]
    return sp.panel.select("date", "code", *cols).join(next_day_returns(sp.prices), on=["date", "code"])


@pytest.fixture(scope="module")
def lgbm_run(small_pipeline):
    preds = run_lgbm(small_pipeline)
    oracle = oracle_predictions(small_pipeline.oracle, small_pipeline.panel, small_pipeline.folds,
                                small_pipeline.params.features.horizons, 20)
    cfg = small_pipeline.params.eval
    om, _ = evaluate(oracle, realized(small_pipeline), small_pipeline.params.features.horizons, cfg)
    m, _ = evaluate(preds, realized(small_pipeline), small_pipeline.params.features.horizons, cfg,
                    oracle_rank_ic_1d=om["test"]["rank_ic_1d"])
    return preds, m, om


def test_lgbm_learns_but_stays_below_the_oracle(lgbm_run):
    preds, m, om = lgbm_run
    assert set(preds["split"].unique()) == {"val", "test"}
    assert preds.columns[:4] == ["date", "code", "fold", "split"]
    # 80 stocks x 240 test days: a RankIC standard error of roughly 0.008.
    assert m["test"]["rank_ic_1d"] > 0.02
    assert m["test"]["rank_ic_1d"] < om["test"]["rank_ic_1d"]
    assert 0 < m["test"]["rank_ic_1d_vs_oracle"] < 1


def test_lgbm_is_deterministic(small_pipeline, lgbm_run):
    again = run_lgbm(small_pipeline, horizons=[1], n_folds=1)
    first = lgbm_run[0].filter(pl.col("fold") == 0).select(again.columns)
    assert again.equals(first)


def test_lgbm_param_is_used(small_pipeline, lgbm_run):
    changed = dataclasses.replace(small_pipeline.params.lgbm, num_leaves=4, learning_rate=0.2)
    again = run_lgbm(small_pipeline, changed, horizons=[1], n_folds=1)
    first = lgbm_run[0].filter(pl.col("fold") == 0).select(again.columns)
    assert not again.equals(first)


def test_label_delay_keeps_the_oracle_a_ceiling(make_small_pipeline):
    """With signals traded a day late, the oracle predicts the delayed label and still beats the model."""
    sp = make_small_pipeline({"features": {"label_delay": 1}, "split": {"embargo_days": 21}})
    params = sp.params
    reach, horizons = 21, [1]
    fold = sp.folds[0]
    preds = train_fold(assign_split(sp.panel, fold, reach), fold.fold, horizons, params.lgbm, params.seed).predictions
    cfg = params.eval

    def pooled_rank_ic(p):
        return evaluate(p, realized(sp), horizons, cfg)[0]["test"]["rank_ic_1d"]

    delayed = oracle_predictions(sp.oracle, sp.panel, sp.folds[:1], horizons, reach, label_delay=1)
    undelayed = oracle_predictions(sp.oracle, sp.panel, sp.folds[:1], horizons, reach)
    model, ceiling, stale = pooled_rank_ic(preds), pooled_rank_ic(delayed), pooled_rank_ic(undelayed)
    assert ceiling > model > 0.0
    assert ceiling > 2 * stale  # the planted alpha of t says little about the return a day later
