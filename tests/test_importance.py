"""Interpretability: core lag attention, relation attention per date and per stock, permutation importance."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from alphagraph.graph.loader import NODE
from alphagraph.train.importance import IMPORTANCE_DAYS, feature_groups, importance_days, permutation_importance
from alphagraph.models.core.attention import (
    attention_maps, core_lag_attention, core_lag_attention_report, relation_attention_by_date, stock_attention,
)
from alphagraph.models.core import CoreModel, core_fold_data, relation_report
from alphagraph.models.temporal import TemporalModel
from alphagraph.features.normalize import feature_columns
from alphagraph.train import seed_everything
from tests.test_core import core_params
from tests.test_train_loop import tiny_pipeline


@pytest.fixture(scope="module")
def tiny():
    return tiny_pipeline()


def core_for(tiny, seed=0, **train):
    params = core_params(**train)
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    seed_everything(seed)
    model = CoreModel.from_config(params.train, data.feature_cols, data.index.relations, len(data.horizons)).eval()
    return model, data


# ------------------------------------------------------------- lag attention


def test_core_lag_attention_sums_to_one_over_traded_days(tiny):
    model, data = core_for(tiny, temporal_layers=2)
    b = data.batch(tiny.index.dates[[2, 4, 200]])  # early dates: most windows are partly empty
    assert not b.x_mask.all()
    att = core_lag_attention(model, b)
    assert att.shape == b.x_mask.shape
    torch.testing.assert_close(att.sum(1), torch.ones(b.num_nodes))
    assert (att[~b.x_mask] == 0).all() and (att >= 0).all()
    assert not model.record and not model.temporal.record and not model.training  # state restored
    report = core_lag_attention_report(model, data, data.dates("val")[:5], batch_days=2)
    assert report.columns == ["lag", "attention"] and report["lag"].to_list() == list(range(data.seq_len))
    assert report["attention"].sum() == pytest.approx(1.0, abs=1e-6)


def test_core_lstm_encoder_has_no_lag_attention(tiny):
    model, data = core_for(tiny, temporal="lstm")
    with pytest.raises(ValueError, match="no attention over lags"):
        core_lag_attention(model, data.batch(data.dates("val")[:1]))


@pytest.mark.parametrize("training", [False, True])
def test_recording_leaves_core_outputs_bit_identical(tiny, training):
    model, data = core_for(tiny, layers=2, temporal_layers=2, neighbour_inputs=feature_columns(tiny.panel)[:2])
    b = data.batch(data.dates("val")[:3])
    model.train(training)
    outs = []
    for on in (False, True, False):
        model.set_record(on)
        torch.manual_seed(1)  # dropout draws the same in both passes
        outs.append(model(b))
    model.set_record(False)
    assert model.temporal.lag_attention is None  # not recorded when off
    for key in ("reg", "sig_logit", "dir_logit", "emb"):
        assert torch.equal(outs[0][key], outs[1][key]) and torch.equal(outs[0][key], outs[2][key])


def test_attention_maps_in_one_pass_give_each_read_out(tiny):
    """One recorded pass over the dates gives what each read-out gives over the same batches."""
    model, data = core_for(tiny, layers=2, temporal_layers=2)
    dates, cpu = data.dates("test")[:7], torch.device("cpu")
    maps = attention_maps(model, data, dates, cpu, batch_days=3)
    assert set(maps) == {"relations", "attention_lag", "relation_attention", "stock_attention"}
    assert maps["relations"].equals(relation_report(model, data, dates, 3, cpu))
    assert maps["attention_lag"].equals(core_lag_attention_report(model, data, dates, batch_days=3))
    assert maps["relation_attention"].equals(relation_attention_by_date(model, data, dates, batch_days=3))
    assert maps["stock_attention"].equals(stock_attention(model, data, dates[-1:]))
    assert not model.record and not model.training  # state restored


# -------------------------------------------------------- relation attention


def test_relation_attention_by_date(tiny):
    model, data = core_for(tiny)
    dates = data.dates("val")[:6]
    frame = relation_attention_by_date(model, data, dates, batch_days=4)
    assert frame.columns == ["date", "relation", "weight", "attention"]
    assert frame.height == len(dates) * len(model.relations)
    assert frame.select(pl.struct("date", "relation").n_unique()).item() == frame.height
    assert frame["date"].unique().sort().cast(pl.Date).to_numpy().astype("datetime64[D]").tolist() == dates.tolist()
    assert frame["weight"].is_between(0, 1).all()
    att = frame["attention"].drop_nulls()
    assert att.len() > 0 and att.is_between(0, 1).all()
    per_date = frame.group_by("date").agg(pl.col("weight").sum())["weight"]
    assert per_date.to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert not model.record
    # Pooled over the dates (node-weighted), the same as relation_report.
    n = pl.Series([int((data.batch([d]).num_nodes)) for d in dates])
    pooled = relation_report(model, data, dates, 4, torch.device("cpu"))
    w = frame.with_columns(n=pl.col("date").rank("dense").cast(pl.Int64).map_elements(lambda i: n[i - 1], return_dtype=pl.Int64))
    mean_w = w.group_by("relation").agg((pl.col("weight") * pl.col("n")).sum() / pl.col("n").sum())
    joined = pooled.join(mean_w, on="relation", suffix="_by_date")
    np.testing.assert_allclose(joined["weight"].to_numpy(), joined["weight_by_date"].to_numpy(), atol=1e-6)


def test_relation_attention_by_date_layers(tiny):
    model, data = core_for(tiny, layers=2)
    dates = data.dates("val")[:2]
    last = relation_attention_by_date(model, data, dates, layer=-1)
    first = relation_attention_by_date(model, data, dates, layer=0)
    both = relation_attention_by_date(model, data, dates, layer=None)
    np.testing.assert_allclose(both["weight"].to_numpy(), (last["weight"].to_numpy() + first["weight"].to_numpy()) / 2, atol=1e-9)
    with pytest.raises(ValueError, match="layer"):
        relation_attention_by_date(model, data, dates, layer=2)
    model0, data0 = core_for(tiny, layers=0)
    with pytest.raises(ValueError, match="no relation layers"):
        relation_attention_by_date(model0, data0, dates)


def test_stock_attention(tiny):
    model, data = core_for(tiny, layers=2)
    dates = data.dates("val")[[0, 5]]
    full = stock_attention(model, data, dates, top=10_000)
    assert full.columns == ["date", "code", "relation", "neighbour", "attention"]
    sums = full.group_by("date", "code", "relation").agg(pl.col("attention").sum(), k=pl.len())
    assert (sums["attention"] <= 1 + 1e-6).all() and (full["attention"] >= 0).all()
    # All neighbours together: the node's neighbour-attention mass of the last layer.
    model.set_record(True)
    b = data.batch([dates[0]])
    model(b)
    model.set_record(False)
    keys = tiny.panel.select(pl.col("date", "code").gather(pl.Series(b.row.numpy())))
    for name in model.relations:
        mass = model.convs[-1].convs[(NODE, name, NODE)].neighbor_attention
        expected = keys.with_columns(mass=pl.Series(mass.double().numpy()))
        got = sums.filter(pl.col("relation") == name).join(expected, on=["date", "code"])
        assert got.height > 0
        np.testing.assert_allclose(got["attention"].to_numpy(), got["mass"].to_numpy(), atol=1e-6)
    # Top-k and a subset of stocks.
    codes = full["code"].unique().sort().to_list()[:3]
    top = stock_attention(model, data, dates, codes=codes, top=2)
    assert set(top["code"]) <= set(codes) and top.height > 0
    assert top.group_by("date", "code", "relation").len()["len"].max() <= 2
    best = full.filter(pl.col("code").is_in(codes)).sort("attention", descending=True).group_by(
        "date", "code", "relation", maintain_order=True).first()
    check = top.group_by("date", "code", "relation", maintain_order=True).first().join(best, on=["date", "code", "relation"])
    np.testing.assert_allclose(check["attention"].to_numpy(), check["attention_right"].to_numpy())


# ------------------------------------------------------- permutation importance


class ReadsOne(nn.Module):
    """reg = sign * one feature of the node (today, or the oldest window day), for every horizon."""

    def __init__(self, j: int, sign: float = 1.0, source: str = "x_seq", day: int = -1, horizons: int = 4) -> None:
        super().__init__()
        self.j, self.sign, self.source, self.day, self.horizons = j, sign, source, day, horizons

    def forward(self, batch):
        x = batch.x_seq[:, self.day, self.j] if self.source == "x_seq" else batch.x[:, self.j]
        return {"reg": (self.sign * x)[:, None].expand(-1, self.horizons)}


@pytest.fixture(scope="module")
def fold_data(tiny):
    return core_fold_data(tiny.panel, tiny.index, tiny.fold, core_params())


def test_permutation_importance_finds_the_one_feature_read(fold_data):
    data = fold_data
    cols = data.feature_cols
    j = cols.index("f_roc_5")  # 5-day return: the best single feature on this fold's validation (RankIC ~0.06)
    val = data.dates("val")
    out = permutation_importance(ReadsOne(j, 1.0), data, val, cols, horizon_index=0, seed=0)
    assert out.columns == ["feature", "rank_ic", "drop", "rank_shift"] and out["feature"].to_list() == cols
    baseline = float(out["rank_ic"][j] + out["drop"][j])
    assert baseline > 0.03
    assert out["drop"][j] > 0.03
    # the predictions are the feature itself: shuffled, a day's ranking is a random one (shift about 1)
    assert 0.8 < out["rank_shift"][j] < 1.2
    others = out.filter(pl.col("feature") != cols[j])
    assert (others["drop"] == 0.0).all() and (others["rank_shift"].abs() < 1e-12).all()
    # Deterministic with a seed; a feature's figure does not depend on the other features asked for.
    again = permutation_importance(ReadsOne(j, 1.0), data, val, [cols[j], cols[0]], seed=0)
    assert again["rank_ic"][0] == out["rank_ic"][j] and again["drop"][1] == 0.0
    other_seed = permutation_importance(ReadsOne(j, 1.0), data, val, [cols[j]], seed=1, repeats=2)
    assert other_seed["rank_ic"][0] != out["rank_ic"][j]
    # x and x_seq[:, -1] are permuted together: a model reading batch.x sees the same.
    via_x = permutation_importance(ReadsOne(j, 1.0, source="x"), data, val, [cols[j], cols[0]], seed=0)
    np.testing.assert_allclose(via_x["rank_ic"].to_numpy(), again["rank_ic"].to_numpy(), atol=1e-12)
    # The whole history moves: a model reading the oldest window day of j also loses it.
    old = permutation_importance(ReadsOne(j, 1.0, day=0), data, val, [cols[j], cols[0]], seed=0)
    assert old["drop"][0] != 0.0 and old["drop"][1] == 0.0
    with pytest.raises(ValueError, match="not feature columns"):
        permutation_importance(ReadsOne(j), data, val, ["nope"])


def test_feature_families_are_shuffled_together(fold_data):
    data = fold_data
    cols = data.feature_cols
    groups = feature_groups(cols)
    assert groups["f_roc_*"] == [c for c in cols if c.startswith("f_roc_")] and len(groups["f_roc_*"]) > 1
    assert groups["f_kmid"] == ["f_kmid"]  # alone in its family: its own name
    assert sorted(c for members in groups.values() for c in members) == sorted(cols)
    j = cols.index("f_roc_5")
    val = data.dates("val")
    out = permutation_importance(ReadsOne(j, 1.0), data, val, groups, seed=0)
    assert out["feature"].to_list() == list(groups)
    roc = out.filter(pl.col("feature") == "f_roc_*")
    assert roc["drop"][0] > 0.03
    assert (out.filter(pl.col("feature") != "f_roc_*")["drop"] == 0.0).all()
    # a family of one is the feature alone: the same permutation, the same figure
    alone = permutation_importance(ReadsOne(cols.index("f_kmid"), 1.0), data, val, {"f_kmid": ["f_kmid"]}, seed=0)
    single = permutation_importance(ReadsOne(cols.index("f_kmid"), 1.0), data, val, ["f_kmid"], seed=0)
    assert alone.equals(single)
    with pytest.raises(ValueError, match="not feature columns"):
        permutation_importance(ReadsOne(j), data, val, {"f_roc_*": ["f_roc_5", "nope"]})


def test_permutation_importance_on_the_neural_models(tiny, fold_data):
    data = fold_data
    val = data.dates("val")[:8]
    feats = data.feature_cols[:3]
    model, _ = core_for(tiny)
    model.train()
    core = permutation_importance(model, data, val, feats, batch_days=4)
    assert core.height == 3 and core["drop"].is_finite().all()
    assert model.training  # mode restored
    seed_everything(0)
    temporal = TemporalModel(data.in_dim, len(data.horizons), kind="transformer", seq_len=data.seq_len, hidden=8)
    out = permutation_importance(temporal, data, val, feats, batch_days=4)
    assert out["drop"].is_finite().all()
    assert out.equals(permutation_importance(temporal, data, val, feats, batch_days=4))


def test_importance_days_keep_the_stock_days_not_the_days():
    from types import SimpleNamespace

    def days(stocks):
        return importance_days(SimpleNamespace(panel=pl.DataFrame({"date": np.repeat(np.arange(5), stocks)})))

    assert days(184) == IMPORTANCE_DAYS  # the default market: every day of the budget
    assert days(1026) == 3  # a NASDAQ-sized universe: as many stock-days in fewer days
    assert days(100_000) == 1
