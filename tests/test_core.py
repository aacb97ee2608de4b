"""Core relation-aware graph transformer: inputs, masking, leakage, relation weighting, sampling, training."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.runtime.config import params_from_dict
from alphagraph.evaluation.evaluate import daily_ic
from alphagraph.graph.loader import GraphIndex
from alphagraph.models.core import CoreModel, core_fold_data, hierarchical_classes, relation_report, train_core_fold
from alphagraph.features.normalize import feature_columns
from alphagraph.train import TEST, VAL, predict, seed_everything
from alphagraph.train import losses
from alphagraph.train.losses import SoftRank, soft_rank_corr
from tests.test_train_loop import TINY_TRAIN, tiny_pipeline

TINY_CORE = {
    "hidden": 16, "heads": 2, "layers": 1, "seq_len": 6, "epochs": 3, "days_per_epoch": 0, "lr": 3e-3,
    "patience": 0, "num_threads": 1, "pearl": {"samples": 4, "k": 3, "layers": 1, "dim": 8},
}


def core_params(**train):
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_TRAIN.items()}
    raw["train"] = TINY_CORE | train
    return params_from_dict(raw)


@pytest.fixture(scope="module")
def tiny():
    return tiny_pipeline()


def model_for(data, params, seed=0):
    seed_everything(seed)
    return CoreModel.from_config(params.train, data.feature_cols, data.index.relations, len(data.horizons)).eval()


# ----------------------------------------------------------------- inputs


def test_windows_hold_the_stock_history_and_mask_missing_days(tiny):
    params = core_params()
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    dates = tiny.index.dates
    b = data.batch([dates[0], dates[3], dates[200]])
    n, length = b.num_nodes, params.train.seq_len
    assert b.x_seq.shape == (n, length, data.in_dim) and b.x_mask.shape == (n, length)
    assert b.x_mask[:, -1].all()  # the node's own date
    torch.testing.assert_close(b.x_seq[:, -1], b.x)
    assert not b.x_mask[b.batch == 0, :-1].any()  # nothing before the first date
    assert (b.x_seq[~b.x_mask] == 0).all()
    # Against the panel: the window is the stock's rows on the last L panel dates.
    cols = feature_columns(tiny.panel)
    for i in np.random.default_rng(0).choice(n, 25, replace=False):
        row = tiny.panel.row(int(b.row[i]), named=True)
        d = int(np.searchsorted(dates, np.datetime64(row["date"], "D")))
        window = dates[max(d - length + 1, 0): d + 1]
        own = tiny.panel.filter((pl.col("code") == row["code"]) & pl.col("date").is_in(window.tolist())).sort("date")
        present = np.isin(window, own["date"].to_numpy().astype("datetime64[D]"))
        mask = b.x_mask[i, length - window.size:].numpy()
        np.testing.assert_array_equal(mask, present)
        np.testing.assert_allclose(b.x_seq[i, length - window.size:][mask].numpy(), own.select(cols).to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("temporal", ["transformer", "lstm"])
def test_masked_days_are_not_invented(tiny, temporal):
    params = core_params(temporal=temporal)
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    b = data.batch(tiny.index.dates[2:5])  # early dates: most windows are partly empty
    model = model_for(data, params)
    out = model(b)["reg"]
    garbage = b.clone()
    garbage.x_seq = torch.where(b.x_mask[..., None], b.x_seq, torch.randn_like(b.x_seq) * 100)
    torch.testing.assert_close(model(garbage)["reg"], out)
    assert torch.isfinite(out).all() and out.shape == (b.num_nodes, 4)


def test_inputs_of_a_date_ignore_everything_after_it(tiny):
    """Perturb features after t and drop every later graph snapshot: batches and outputs up to t do not move."""
    cols = feature_columns(tiny.panel)
    params = core_params(layers=2, neighbour_inputs=cols[:2])
    cut = tiny.index.dates[260]
    after = pl.col("date") > pl.lit(cut.item())
    panel2 = tiny.panel.with_columns(pl.when(after).then(pl.col(c) * -3 + 1).otherwise(pl.col(c)).alias(c) for c in cols)
    edges2 = tiny.edges.filter(pl.col("snapshot") <= pl.lit(cut.item()))
    index2 = GraphIndex(edges2, panel2, relations=tiny.index.relations)
    a = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    b = core_fold_data(panel2, index2, tiny.fold, params)
    days = list(tiny.index.dates[250:261])
    ba, bb = a.batch(days), b.batch(days)
    for key in ("x_seq", "x_mask", "edge_index", "edge_attr", "pearl_edge_index", "pearl_index", "row"):
        torch.testing.assert_close(ba[key], bb[key])
    model = model_for(a, params)
    torch.testing.assert_close(model(ba)["reg"], model(bb)["reg"])
    later = list(tiny.index.dates[261:265])
    assert not torch.allclose(a.batch(later).x_seq, b.batch(later).x_seq)  # the perturbation is real


# ------------------------------------------------------------ relations


def test_relation_weights_sum_to_one_and_relations_can_be_dropped(tiny):
    params = core_params(layers=2)
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    model = model_for(data, params)
    b = data.batch(data.dates("val")[:2])
    model.set_record(True)
    out = model(b)["reg"]
    assert len(model.relation_weights) == 2
    for w in model.relation_weights:
        assert w.shape == (b.num_nodes, len(tiny.index.relations))
        torch.testing.assert_close(w.sum(1), torch.ones(b.num_nodes))
    sc = tiny.index.relations.index("supply_chain")
    dropped = model(b, drop_relations=["supply_chain"])["reg"]
    for w in model.relation_weights:
        assert (w[:, sc] == 0).all()
        torch.testing.assert_close(w.sum(1), torch.ones(b.num_nodes))
    assert not torch.allclose(out, dropped)
    with pytest.raises(ValueError, match="not relations of this model"):
        model(b, drop_relations=["fund_flows"])
    with pytest.raises(ValueError, match="every relation"):
        model(b, drop_relations=tiny.index.relations)
    # Without learned weighting: a plain mean.
    flat = model_for(data, core_params(layers=2, relation_weighting=False))
    flat.set_record(True)
    flat(b)
    torch.testing.assert_close(flat.relation_weights[0], torch.full_like(flat.relation_weights[0], 1 / len(tiny.index.relations)))


def test_any_subset_of_relations_and_days_without_a_relation(tiny):
    rels = ["rolling_correlation", "supply_chain"]
    index = GraphIndex(tiny.edges, tiny.panel, relations=rels)
    params = core_params(layers=2)
    data = core_fold_data(tiny.panel, index, tiny.fold, params)
    model = model_for(data, params)
    b = data.batch(data.dates("val")[:2])
    assert set(b.edge_type.unique().tolist()) == {0, 1}
    model.set_record(True)
    full = model(b)["reg"]
    assert model.relation_weights[0].shape == (b.num_nodes, 2)
    # A day with no rolling_correlation edges: the relation gets an empty [2, 0] tensor and weights stay aligned.
    no_corr = b.clone()
    keep = b.edge_type != 0
    no_corr.edge_index, no_corr.edge_attr, no_corr.edge_type = b.edge_index[:, keep], b.edge_attr[keep], b.edge_type[keep]
    out = model(no_corr)["reg"]
    assert torch.isfinite(out).all() and not torch.allclose(out, full)
    # Same result as a model that never had edges of relation 0 in the first place vs. one with relation 1 removed too.
    none = b.clone()
    none.edge_index, none.edge_attr, none.edge_type = b.edge_index[:, :0], b.edge_attr[:0], b.edge_type[:0]
    assert torch.isfinite(model(none)["reg"]).all()


def test_hierarchical_inference_mapping():
    p_signal = np.array([0.2, 0.49, 0.5, 0.9, 0.9, 0.7])
    p_up = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.49])
    cls, probs = hierarchical_classes(p_signal, p_up)
    np.testing.assert_array_equal(cls, [0, 0, 1, -1, 1, -1])
    np.testing.assert_allclose(probs.sum(1), 1.0)
    np.testing.assert_allclose(probs[3], [0.9 * 0.8, 0.1, 0.9 * 0.2])
    assert (hierarchical_classes(p_signal, p_up, threshold=0.95)[0] == 0).all()


def test_soft_rank_corr_approaches_spearman_and_has_gradients():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(60, 2, generator=g, requires_grad=True)
    y = torch.randn(60, 2, generator=g) + pred.detach() * 0.5
    y[3, 0] = float("nan")
    day = torch.repeat_interleave(torch.arange(3), 20)
    mask = torch.ones(60, dtype=torch.bool)
    got = soft_rank_corr(pred, y, mask, day, tau=0.01)
    want = []
    for h in range(2):
        frame = pl.DataFrame({"date": day.numpy(), "p": pred.detach()[:, h].numpy(), "y": y[:, h].numpy()}).with_columns(
            pl.col("y").fill_nan(None)
        )
        want.append(daily_ic(frame, "p", "y")["rank_ic"].mean())
    np.testing.assert_allclose(got.detach().numpy(), want, atol=0.02)
    got.sum().backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("budget", [1 << 20, 40])  # every row at once; two rows per chunk (n = 5, so 25 pairs a row)
def test_soft_rank_matches_the_dense_pair_matrix_and_its_autograd(monkeypatch, budget):
    monkeypatch.setattr(losses, "PAIR_BUDGET", budget)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    v = (torch.rand(5, 5, generator=g) > 0.3).to(torch.float64)
    up = torch.randn(5, 5, generator=g, dtype=torch.float64)
    dense = (torch.sigmoid((z[:, :, None] - z[:, None, :]) / 0.1) * v[:, None, :]).sum(2)
    want = torch.autograd.grad((dense * up).sum(), z)[0]
    got = SoftRank.apply(z, v, 0.1)
    torch.testing.assert_close(got, dense, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad((got * up).sum(), z)[0], want, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: SoftRank.apply(t, v, 0.1), (z,))


# ------------------------------------------------------------- sampling


def test_neighbor_sampling_with_full_fanout_equals_full_graph(tiny):
    params = core_params(layers=2)
    full = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    sampled = core_fold_data(tiny.panel, tiny.index, tiny.fold, core_params(layers=2, sampling="neighbor", fanouts=[-1, -1]))
    model = model_for(full, params)
    dates = full.dates("val")[:6]
    a = predict(model, full, dates, (VAL,), batch_days=3)
    b = predict(model, sampled, dates, (VAL,), batch_days=3)
    oa, ob = np.argsort(a.rows), np.argsort(b.rows)
    np.testing.assert_array_equal(a.rows[oa], b.rows[ob])
    np.testing.assert_allclose(a.reg[oa], b.reg[ob], atol=1e-5)
    # Small fan-outs: at most 2 sampled in-edges per node and hop, different but finite predictions.
    small = core_fold_data(tiny.panel, tiny.index, tiny.fold, core_params(layers=2, sampling="neighbor", fanouts=[2, 2]))
    batch = small.batch(dates[:3])
    assert torch.bincount(batch.edge_index[1], minlength=batch.num_nodes).max() <= 4
    c = predict(model, small, dates, (VAL,), batch_days=3)
    oc = np.argsort(c.rows)
    assert np.isfinite(c.reg).all() and not np.allclose(a.reg[oa], c.reg[oc], atol=1e-4)


# ------------------------------------------------------------- training


def report_of(model, panel, index, fold, params):
    """The trained model's relation report over the fold's test dates."""
    data = core_fold_data(panel, index, fold, params)
    return relation_report(model, data, data.dates("test"), 16, torch.device("cpu"))


def train(tiny, **train):
    params = core_params(**train)
    out, model = train_core_fold(tiny.panel, tiny.index, tiny.fold, params)
    return out, model, report_of(model, tiny.panel, tiny.index, tiny.fold, params)


@pytest.fixture(scope="module")
def trained(tiny):
    return train(tiny)


def test_predictions_and_relation_report(trained):
    out, model, report = trained
    p = out.predictions
    assert {"pred_1d", "p_up_1d", "p_signal_1d"} <= set(p.columns)
    assert set(p["split"].unique()) == {"val", "test"}
    assert p.select(pl.col("pred_1d", "p_up_1d", "p_signal_1d").is_nan().any()).row(0) == (False, False, False)
    assert report.height == len(model.relations) * len(model.convs)
    assert report.group_by("layer").agg(pl.col("weight").sum())["weight"].to_numpy() == pytest.approx(1.0, abs=1e-4)


def test_learns_the_planted_signal(tiny, trained):
    out, _, _ = trained
    frame = out.predictions.filter(pl.col("split") == "test").join(tiny.panel.select("date", "code", "ret_1d"), on=["date", "code"])
    assert daily_ic(frame, "pred_1d", "ret_1d")["rank_ic"].mean() > 0.02


def test_deterministic_and_lr_matters(tiny, trained):
    again, _, report = train(tiny)
    assert again.predictions.equals(trained[0].predictions)
    assert again.result.history == trained[0].result.history
    assert report.equals(trained[2])
    other, _, _ = train(tiny, lr=5e-4)
    assert not other.predictions.equals(trained[0].predictions)
    assert other.result.history[-1]["val_rank_ic_1d"] != trained[0].result.history[-1]["val_rank_ic_1d"]


def test_weight_goes_to_the_relation_that_carries_the_signal():
    """A market whose only planted signal is the supply-chain lead-lag: the model must find that relation."""
    from alphagraph.data.ingest import ingest
    from alphagraph.features.panel import build_panel
    from alphagraph.graph.build import build_edges
    from alphagraph.features.normalize import normalize_panel
    from alphagraph.evaluation.split import make_folds

    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_TRAIN.items()}
    only_sc = {"reversal": 0.0, "momentum": 0.0, "volume_price": 0.0, "sector_spillover": 0.0, "supply_chain": 0.3}
    raw["data"] = {"synthetic": dict(TINY_TRAIN["data"]["synthetic"], signal=only_sc)}
    raw["train"] = TINY_CORE | {"epochs": 8}
    params = params_from_dict(raw)
    market = ingest(params)
    features, _ = build_panel(market.prices, market.universe, params.features)
    panel, _ = normalize_panel(features, params.normalize, params.features.horizons)
    (fold,) = make_folds(panel["date"].unique().sort().to_list(), params.split)
    edges, _ = build_edges(market.prices, market.universe, market.relations, params.graph)
    index = GraphIndex(edges, panel, relations=params.graph.relations)
    out, model = train_core_fold(panel, index, fold, params)
    report = report_of(model, panel, index, fold, params)

    weights = dict(report.select("relation", "weight").iter_rows())
    assert max(weights, key=weights.get) == "supply_chain" and weights["supply_chain"] > 0.5, weights

    def test_ic(drop=()):
        data = core_fold_data(panel, index, fold, params)
        forward = model.forward
        model.forward = lambda b: forward(b, drop_relations=drop)
        try:
            pred = predict(model, data, data.dates("test"), (TEST,), 32)
        finally:
            model.forward = forward
        frame = pl.DataFrame({"date": pred.day, "p": pred.reg[:, 0], "y": pred.y[:, 0]}).with_columns(pl.col("y").fill_nan(None))
        return daily_ic(frame, "p", "y")["rank_ic"].mean()

    full, without = test_ic(), test_ic(["supply_chain"])
    assert full > 0.08 and without < full / 2, (full, without)


def test_every_model_and_loss_knob_reaches_the_code(tiny):
    """Changing a train.* knob changes the model's output or its loss (no param is read and ignored)."""
    from alphagraph.models.core import core_loss

    base = core_params(layers=1)
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, base)
    b = data.batch(data.dates("train")[:2])

    def opened(model):  # the window gate starts closed: open it so the window's knobs can show
        torch.nn.init.constant_(model.temporal.gate, 1.0)
        return model

    out = opened(model_for(data, base))(b)["reg"]
    for knob in ({"pearl": {"mode": "none"}}, {"pearl": {"mode": "basis", "dim": 8}}, {"pearl": {"k": 2, "samples": 4, "dim": 8}},
                 {"temporal": "lstm"}, {"temporal_layers": 2}, {"hidden": 8}, {"heads": 1}, {"seq_len": 3},
                 {"neighbour_inputs": data.feature_cols[:1]}):
        params = core_params(layers=1, **knob)
        other_data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
        other = opened(model_for(other_data, params))(other_data.batch(data.dates("train")[:2]))["reg"]
        assert not torch.allclose(other, out), knob
    mask = b.split == 1
    model_out = model_for(data, base)(b)
    loss = core_loss(base.train, data)(model_out, b, mask)[0]
    for knob in ({"rank_weight": 0.0}, {"cls_weight": 0.0}, {"horizon_weights": [1.0, 0.0, 0.0, 0.0]}):
        params = core_params(layers=1, **knob)
        assert float(core_loss(params.train, data)(model_out, b, mask)[0]) != pytest.approx(float(loss)), knob


def test_export_fold_choice(tiny):
    tiny_fold = tiny.fold
    from alphagraph.rl.export import choose_fold
    from alphagraph.evaluation.split import Fold

    folds = [Fold(k, tiny_fold.train, tiny_fold.val, tiny_fold.test) for k in range(3)]
    assert choose_fold(folds, -1).fold == 2 and choose_fold(folds, 0).fold == 0
    with pytest.raises(ValueError, match="export.fold"):
        choose_fold(folds, 5)


def test_a_relation_without_edges_is_not_a_module(tiny):
    from alphagraph.runtime.errors import UserError
    from alphagraph.models.core import core_index

    params = core_params()
    edges = tiny.edges.filter(pl.col("relation") != "competitor")
    index = core_index(edges, tiny.panel, params)
    assert "competitor" not in index.relations and "supply_chain" in index.relations
    with pytest.raises(UserError, match="train.use_edges"):
        core_index(edges.clear(), tiny.panel, params)


# ---------------------------------------------------------- neighbour inputs


def test_neighbour_inputs_are_weighted_sums_and_means_per_relation():
    """Hand-made graph: node 2 hears nodes 0 (w 0.5) and 1 (w 2, sign -1) on relation a, node 0 on b."""
    model = CoreModel(in_dim=3, relations=["a", "b"], n_horizons=1, seq_len=2, hidden=8, layers=0, pearl=None,
                      neighbour_inputs=[0, 2])
    x = torch.tensor([[1.0, 9.0, 2.0], [3.0, 9.0, -1.0], [5.0, 9.0, 7.0]])
    batch = type("B", (), {})()
    batch.edge_index = torch.tensor([[0, 1, 0], [2, 2, 1]])
    batch.edge_type = torch.tensor([0, 0, 1])
    attr = torch.tensor([[0.5, 1.0], [2.0, -1.0], [1.0, 1.0]])
    out = model.neighbour_sums(x[:, [0, 2]], batch, attr)
    a_sum = 0.5 * x[0, [0, 2]] - 2.0 * x[1, [0, 2]]  # signed weights
    torch.testing.assert_close(out[2, :2], a_sum)
    torch.testing.assert_close(out[2, 2:4], a_sum / 2.5)  # over the sum of |w|
    torch.testing.assert_close(out[1, 4:6], x[0, [0, 2]])
    torch.testing.assert_close(out[1, 6:8], x[0, [0, 2]])
    assert (out[0] == 0).all()  # no in-neighbours
    dropped = model.neighbour_sums(x[:, [0, 2]], batch, attr, drop=["a"])
    assert (dropped[:, :4] == 0).all() and torch.equal(dropped[:, 4:], out[:, 4:])


def test_unknown_neighbour_input_names_the_param(tiny):
    from alphagraph.runtime.errors import UserError
    from alphagraph.models.core import core_kwargs

    params = core_params(neighbour_inputs=["f_no_such_feature"])
    with pytest.raises(UserError, match="train.neighbour_inputs"):
        core_kwargs(params.train, feature_columns(tiny.panel), tiny.index.relations, 4)


# ------------------------------------------------------- memory on a large universe


def large_universe(n_stocks=600, n_days=150, n_feats=6, every=10, seed=0):
    """A random panel (every stock every day) and edges with a snapshot every ``every`` days: no pipeline run."""
    import datetime as dt

    rng = np.random.default_rng(seed)
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n_days)]
    codes = [f"S{i:04d}" for i in range(n_stocks)]
    n = n_stocks * n_days
    panel = pl.DataFrame({
        "date": np.repeat(np.array(days, dtype="datetime64[D]"), n_stocks), "code": codes * n_days,
        **{f"f_{j}": rng.normal(size=n).astype(np.float32) for j in range(n_feats)},
        "y_1d": rng.normal(size=n).astype(np.float32), "dir_1d": rng.integers(0, 2, n).astype(np.int8),
        "sig_1d": rng.integers(0, 2, n).astype(np.int8),
    })
    snaps = days[::every]
    m = 3 * n_stocks
    edges = pl.concat([
        pl.DataFrame({
            "snapshot": [s] * m, "relation": ["competitor"] * n_stocks + ["supply_chain"] * (m - n_stocks),
            "src": [codes[i] for i in rng.integers(0, n_stocks, m)], "dst": [codes[i] for i in rng.integers(0, n_stocks, m)],
            "weight": rng.uniform(0.1, 1, m).astype(np.float32), "sign": np.ones(m, dtype=np.int8),
        }) for s in snaps
    ])
    return panel, edges


@pytest.mark.parametrize("sampling", ["full", "neighbor"])
def test_a_batch_builds_only_its_own_days_graphs_and_windows(sampling):
    from alphagraph.train import TRAIN
    from alphagraph.train.core_data import CoreDayData

    panel, edges = large_universe()
    index = GraphIndex(edges, panel, relations=["competitor", "supply_chain"])
    codes = np.full(panel.height, TRAIN, dtype=np.int8)
    feats = feature_columns(panel)
    data = CoreDayData(index, panel, codes, feats, [1], seq_len=5, sampling=sampling, fanouts=[4, 2], snapshot_cache=3)
    days = index.dates[[40, 41, 97]]
    b = data.batch(days)
    assert index.mapped_days == 3  # only the batch's days got a graph
    assert not index._features  # no [rows, features] copy of the panel
    assert set(data._snap_cache) == {4, 9}  # the batch's snapshots only
    for lo in range(0, 150, 10):  # batches over every snapshot: the cache stays bounded
        data.batch(index.dates[lo: lo + 2])
    assert len(data._snap_cache) == 3 and index.mapped_days == 3 + 30
    # The windows hold the stocks' rows, read from the panel (here: every stock trades every day).
    values = panel.select(feats).to_numpy()
    rows = b.row.numpy()
    for lag in range(5):
        past = rows - lag * 600
        ok = past >= 0
        np.testing.assert_array_equal(b.x_mask[:, 4 - lag].numpy(), ok)
        np.testing.assert_array_equal(b.x_seq[ok, 4 - lag].numpy(), values[past[ok]])
    np.testing.assert_array_equal(b.y_sig[:, 0].numpy(), panel["sig_1d"].to_numpy()[rows])
    if sampling == "neighbor":
        assert b.num_nodes == 3 * 600 and torch.bincount(b.edge_index[1], minlength=b.num_nodes).max() <= 4


# --------------------------------------------------------- the linear (wide) path


@pytest.fixture(scope="module")
def tiny_prices(tiny):
    from alphagraph.data.ingest import ingest

    return ingest(tiny.params).prices.select("date", "code", "close")


def test_per_day_zscore_standardizes_each_day_of_a_batch():
    from alphagraph.models.core import per_day_zscore

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=gen) * torch.tensor([1.0, 5.0, 0.0]) + 7.0  # last column constant
    day = torch.tensor([0] * 10 + [1] * 20)
    z = per_day_zscore(x, day, 2)
    for d in (0, 1):
        part = z[day == d]
        torch.testing.assert_close(part[:, :2].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
        torch.testing.assert_close(part[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-4, rtol=0)
        assert torch.all(part[:, 2] == 0)


def test_standardized_neighbour_inputs_reach_the_output(tiny):
    cols = feature_columns(tiny.panel)
    outs = []
    for on in (False, True):
        params = core_params(neighbour_inputs=cols[:2], neighbour_standardize=on)
        data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
        outs.append(model_for(data, params)(data.batch(data.dates("train")[:2]))["reg"])
    assert not torch.allclose(*outs)


def test_ridge_path_starts_as_the_linear_graph_ridge_and_stays_frozen(tiny, tiny_prices):
    """train.wide: ridge = the fold's linear_graph ridge, frozen; the deep head starts at 0."""
    from alphagraph.models.core import set_ridge_path, wide_columns, wide_index
    from alphagraph.models.linear import fit_linear_fold

    params = core_params(wide="ridge", epochs=1)
    wide = wide_index(tiny.panel, params, tiny.edges, tiny_prices)
    fit = fit_linear_fold("linear_graph", wide, tiny.fold, params)
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params, wide=wide)
    assert data.wide_dim == len(wide_columns(wide, tiny.panel)) > 0
    model = CoreModel.from_config(params.train, data.feature_cols, tiny.index.relations, len(data.horizons), wide_dim=data.wide_dim).eval()
    set_ridge_path(model, fit, data.feature_cols, wide_columns(wide, tiny.panel))
    days = list(data.dates("val")[:3])
    with torch.no_grad():
        reg = model(data.batch(days))["reg"].numpy()
    b = data.batch(days)
    keys = tiny.panel.select("date", "code")[pl.Series(b.row.numpy())]
    want = keys.join(fit.predictions, on=["date", "code"], how="left")
    for j, h in enumerate(params.features.horizons):
        np.testing.assert_allclose(reg[:, j], want[f"pred_{h}d"].to_numpy(), rtol=1e-4, atol=1e-4)
    before = model.wide.weight.detach().clone()
    _, trained = train_core_fold(tiny.panel, tiny.index, tiny.fold, params, progress=False, wide=wide)
    torch.testing.assert_close(trained.wide.weight.detach(), before)
    assert trained.reg.weight.abs().sum() > 0  # the deep head did train


def test_wide_inputs_of_a_date_ignore_everything_after_it(tiny, tiny_prices):
    from alphagraph.models.core import wide_index

    params = core_params(wide="learned")
    cut = tiny.index.dates[260].item()
    after = pl.col("date") > pl.lit(cut)
    cols = feature_columns(tiny.panel)
    panel2 = tiny.panel.with_columns(pl.when(after).then(pl.col(c) * -3 + 1).otherwise(pl.col(c)).alias(c) for c in cols)
    prices2 = tiny_prices.with_columns(pl.when(after).then(pl.col("close") * 1.7).otherwise(pl.col("close")).alias("close"))
    edges2 = tiny.edges.filter(pl.col("snapshot") <= pl.lit(cut))
    index2 = GraphIndex(edges2, panel2, relations=tiny.index.relations)
    a = core_fold_data(tiny.panel, tiny.index, tiny.fold, params, wide=wide_index(tiny.panel, params, tiny.edges, tiny_prices))
    b = core_fold_data(panel2, index2, tiny.fold, params, wide=wide_index(panel2, params, edges2, prices2))
    days = list(tiny.index.dates[250:261])
    torch.testing.assert_close(a.batch(days).x_wide, b.batch(days).x_wide)
    later = list(tiny.index.dates[262:266])
    assert not torch.allclose(a.batch(later).x_wide, b.batch(later).x_wide)  # the perturbation is real


def test_the_ridge_path_and_selection_read_no_test_label(tiny, tiny_prices):
    """train.wide: ridge chooses its alpha and the loop its epoch on validation: test labels move nothing."""
    from alphagraph.models.core import wide_index

    params = core_params(wide="ridge", neighbour_standardize=True, epochs=2)
    test = pl.col("date") >= pl.lit(tiny.fold.test[0])
    labels = [c for c in tiny.panel.columns if c.startswith(("y_", "ret_", "dir_", "sig_"))]
    scrambled = tiny.panel.with_columns(pl.when(test).then(pl.col(c).reverse()).otherwise(pl.col(c)).alias(c) for c in labels)
    assert not scrambled.equals(tiny.panel)
    outs = []
    for panel in (tiny.panel, scrambled):
        index = GraphIndex(tiny.edges, panel, relations=tiny.index.relations)
        wide = wide_index(panel, params, tiny.edges, tiny_prices)
        out, _ = train_core_fold(panel, index, tiny.fold, params, progress=False, wide=wide)
        outs.append(out)
    assert outs[0].predictions.equals(outs[1].predictions)
    assert outs[0].result.history == outs[1].result.history
