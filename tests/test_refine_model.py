"""Core-model refinements (issue 20): FAN window norm, stochastic depth, vol-similarity edges, sector-residual correlation.

Each switch reaches the computation when on and changes nothing when off.
Hand-made tensors and frames only: no pipeline run.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.runtime.config import ConfigError, GraphConfig, TrainConfig, params_from_dict
from alphagraph.runtime.errors import UserError
from alphagraph.graph import build_edges
from alphagraph.graph.correlation import sector_mean_loo
from alphagraph.models.core import model as core
from alphagraph.models.core import CoreModel, TemporalEncoder, core_kwargs, depth_schedule
from alphagraph.models.fan import FrequencyAdaptiveNorm, dominant_part
from tests.test_graph import NO_RELATIONS, dated, day_of, full_inputs, to_prices, universe

RELS = ["a", "b", "c"]


def fake_batch(n: int = 60, length: int = 6, n_feat: int = 5, n_edges: int = 200, seed: int = 0) -> SimpleNamespace:
    """A day batch as the core model reads it: windows with masked days, typed edges (weight, sign, one-hot)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, length, dtype=torch.bool)
    mask[: n // 5, : length // 2] = False  # new listings: left padding
    mask[n // 5: n // 4, 1] = False  # a suspension inside the window
    b = SimpleNamespace(x_mask=mask, x_seq=torch.randn(n, length, n_feat, generator=g) * mask[..., None])
    b.edge_index = torch.randint(0, n, (2, n_edges), generator=g)
    b.edge_type = torch.randint(0, len(RELS), (n_edges,), generator=g)
    b.edge_attr = torch.cat([
        torch.rand(n_edges, 1, generator=g), torch.randn(n_edges, 1, generator=g).sign(), torch.zeros(n_edges, len(RELS)),
    ], dim=1)
    return b


def model(seed: int = 0, **kw) -> CoreModel:
    base = dict(in_dim=5, relations=RELS, n_horizons=2, seq_len=6, hidden=16, heads=2, layers=2, temporal_layers=2,
                dropout=0.0, pearl=None, neighbour_inputs=[0])
    torch.manual_seed(seed)
    return CoreModel(**(base | kw))


# ----------------------------------------------------------------- off = today


def test_switches_off_build_the_same_model_with_the_same_draws():
    b = fake_batch()
    off = dict(window_norm="gated", fan_top_k=7, stochastic_depth=0.0, edge_features=(), vol_scale=3.0)
    plain, explicit = model(dropout=0.1), model(dropout=0.1, **off)
    s0, s1 = plain.state_dict(), explicit.state_dict()
    assert list(s0) == list(s1) and all(torch.equal(s0[k], s1[k]) for k in s0)
    assert {type(m) for m in plain.modules()}.isdisjoint({FrequencyAdaptiveNorm})
    for m in (plain, explicit):
        m.train()
        torch.manual_seed(1)
        out = m(b)["reg"]
        after = torch.rand(4)  # the RNG stream after a training pass: no extra draws when off
        if m is plain:
            ref, ref_after = out, after
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert torch.equal(after, ref_after)
    # The default params add no constructor argument: model.json stays what it was.
    kwargs = core_kwargs(TrainConfig(), [f"f_{i}" for i in range(5)], RELS, 2)
    assert not {"window_norm", "fan_top_k", "stochastic_depth", "edge_features", "vol_index", "vol_scale"} & set(kwargs)


def test_params_are_validated():
    for train, key in (({"stochastic_depth": 1.0}, "train.stochastic_depth"), ({"fan_top_k": 0}, "train.fan_top_k"),
                       ({"edge_features": ["vol_similarity", "vol_similarity"]}, "train.edge_features"),
                       ({"edge_features": ["beta_similarity"]}, "train.edge_features"),
                       ({"vol_similarity_scale": 0.0}, "train.vol_similarity_scale"), ({"window_norm": "fann"}, "train.window_norm")):
        with pytest.raises(ConfigError, match=key):
            params_from_dict({"train": train})
    p = params_from_dict({"train": {"window_norm": "fan", "edge_features": ["vol_similarity"]}, "graph": {"residualize_sector": True}})
    assert p.train.window_norm == "fan" and p.graph.residualize_sector


# ------------------------------------------------------------------------- FAN


def planted(length: int = 24, freq: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, L, 2] windows: feature 0 = noise + a strong sinusoid at ``freq`` cycles per window; the sinusoid alone."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64)
    wave = 3.0 * torch.sin(2 * math.pi * freq * t / length + 0.7)
    x = torch.randn(1, length, 2, generator=g, dtype=torch.float64) * 0.3
    x[0, :, 0] += wave
    return x, wave


def test_fan_removes_a_planted_sinusoid_and_nothing_else():
    x, wave = planted()
    mask = torch.ones(1, 24, dtype=torch.bool)
    dom, _ = dominant_part(x, mask, top_k=1)
    residual = x - dom
    spec_x, spec_r = torch.fft.rfft(x, dim=1), torch.fft.rfft(residual, dim=1)
    assert spec_r[0, 4, 0].abs() < 1e-9 * spec_x[0, 4, 0].abs()  # the planted frequency is gone
    keep = torch.ones(13, dtype=torch.bool)
    keep[4] = False
    torch.testing.assert_close(spec_r[0, keep, 0], spec_x[0, keep, 0])  # every other one is untouched
    # feature 1 has no sinusoid: its own (noise) top frequency is removed, not frequency 4
    assert spec_r[0, 4, 1].abs() > 0 and (spec_x[0, :, 1].abs() - spec_r[0, :, 1].abs()).max() > 0
    # ... and the dominant part of feature 0 is the sinusoid (up to the noise's share of that frequency)
    assert float((dom[0, :, 0] - wave).abs().max()) < 0.1 * float(wave.abs().max())


def test_fan_in_the_encoder_sees_the_residual_and_adds_the_dominant_part_back():
    x, _ = planted()
    x = x.float()
    mask = torch.ones(1, 24, dtype=torch.bool)
    torch.manual_seed(0)
    enc = TemporalEncoder(2, 8, 24, "transformer", 2, 1, 0.0, window_norm="fan", fan_top_k=1).eval()
    seen = []
    enc.proj.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach()))
    torch.nn.init.constant_(enc.gate, 1.0)  # open the window gate (it starts at 0)
    out = enc(x, mask)
    spec = torch.fft.rfft(seen[0].double(), dim=1)
    assert spec[0, 4, 0].abs() < 1e-4 * torch.fft.rfft(x.double(), dim=1)[0, 4, 0].abs()
    # The forecast of the removed part reaches the output.
    with torch.no_grad():
        enc.norm.back.weight.zero_()
        enc.norm.back.bias.zero_()
    assert not torch.allclose(enc(x, mask), out)
    # gated and none see other inputs
    for norm in ("gated", "none"):
        torch.manual_seed(0)
        other = TemporalEncoder(2, 8, 24, "transformer", 2, 1, 0.0, window_norm=norm).eval()
        got = []
        other.proj.register_forward_pre_hook(lambda mod, args: got.append(args[0].detach()))
        other(x, mask)
        assert torch.fft.rfft(got[0].double(), dim=1)[0, 4, 0].abs() > 10
    assert TemporalEncoder(2, 8, 24, window_norm="none").norm is None


def test_fan_masked_days_do_not_matter():
    """A new listing (left padding) and a suspension: garbage there changes nothing, and the traded days
    are transformed as the same days without any padding."""
    x, _ = planted(length=24)
    x = x.float().repeat(2, 1, 1)
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[0, :8] = False
    mask[1, 10:13] = False
    fan = FrequencyAdaptiveNorm(2, 24, 8, top_k=2)
    res, back = fan(x, mask)
    garbage = torch.where(mask[..., None], x, torch.randn_like(x) * 1e3)
    res_g, back_g = fan(garbage, mask)
    torch.testing.assert_close(res_g, res, rtol=0, atol=0)
    torch.testing.assert_close(back_g, back, rtol=0, atol=0)
    assert (res[~mask] == 0).all()
    for row in range(2):
        days = x[row][mask[row]][None]  # the traded days alone, as a window without masked days
        dom_alone, _ = dominant_part(days, torch.ones(1, days.size(1), dtype=torch.bool), top_k=2)
        torch.testing.assert_close(res[row][mask[row]], (days - dom_alone)[0], rtol=1e-5, atol=1e-5)
    # At most n // 2 components of an n-day window: one day keeps its value.
    one = torch.zeros(1, 24, dtype=torch.bool)
    one[0, -1] = True
    res_one, _ = fan(x[:1], one)
    torch.testing.assert_close(res_one[0, -1], x[0, -1])


# ------------------------------------------------------------ stochastic depth


def test_stochastic_depth_drops_layer_l_with_probability_l_over_L_times_p(monkeypatch):
    assert depth_schedule(4, 0.4) == pytest.approx([0.1, 0.2, 0.3, 0.4])
    drops: dict[tuple[int, float], list[float]] = {}
    real = core.path_mask

    def counting(x, p):
        keep = real(x, p)
        drops.setdefault((x.dim(), round(p, 6)), []).append(float((keep == 0).float().mean()))
        return keep

    monkeypatch.setattr(core, "path_mask", counting)
    m = model(layers=4, temporal_layers=2, stochastic_depth=0.4).train()
    b = fake_batch(n=400, n_edges=600)
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(25):
            m(b)
    # graph layers (2-D branches [N, D]) and temporal blocks ([N, L, D]), each drawn once per forward pass
    expected = {(2, 0.1), (2, 0.2), (2, 0.3), (2, 0.4), (3, 0.2), (3, 0.4)}
    assert set(drops) == expected
    for (_, p), seen in drops.items():
        assert len(seen) == 25 and np.mean(seen) == pytest.approx(p, abs=0.02), (p, np.mean(seen))


def test_stochastic_depth_trains_randomly_and_evaluates_as_the_plain_model():
    b = fake_batch()
    m = model(stochastic_depth=0.5)
    plain = model(stochastic_depth=0.0)
    plain.load_state_dict(m.state_dict())  # same parameters: the switch adds none
    m.eval(), plain.eval()
    first = m(b)["reg"]
    torch.testing.assert_close(m(b)["reg"], first, rtol=0, atol=0)  # eval is deterministic ...
    torch.testing.assert_close(plain(b)["reg"], first, rtol=0, atol=0)  # ... and the plain model (inverted scaling)
    m.train(), plain.train()
    torch.manual_seed(0)
    a1, a2 = m(b)["reg"], m(b)["reg"]
    assert not torch.allclose(a1, a2)  # dropout is 0: only stochastic depth draws
    p1, p2 = plain(b)["reg"], plain(b)["reg"]
    torch.testing.assert_close(p1, p2, rtol=0, atol=0)


# ------------------------------------------------------------- edge features


def test_vol_similarity_edge_feature_is_the_formula_and_reaches_the_attention():
    b = fake_batch()
    m = model(edge_features=["vol_similarity"], vol_index=3, vol_scale=0.5).eval()
    att = m.convs[0].convs[("stock", "a", "stock")]
    assert att.lin_edge.in_features == 3 and model().convs[0].convs[("stock", "a", "stock")].lin_edge.in_features == 2
    attr = m.edge_inputs(b, b.edge_attr[:, :2])
    v = b.x_seq[:, -1, 3]
    src, dst = b.edge_index
    torch.testing.assert_close(attr[:, 2], torch.exp(-(v[src] - v[dst]).abs() / 0.5))
    torch.testing.assert_close(attr[:, :2], b.edge_attr[:, :2])
    out = m(b)["reg"]
    wider = model(edge_features=["vol_similarity"], vol_index=3, vol_scale=5.0).eval()
    wider.load_state_dict(m.state_dict())  # only s differs
    assert not torch.allclose(wider(b)["reg"], out)
    with pytest.raises(ValueError, match="vol_index"):
        model(edge_features=["vol_similarity"])


def test_vol_similarity_needs_the_volatility_column():
    cfg = TrainConfig(edge_features=["vol_similarity"], vol_similarity_scale=2.0)
    feats = ["f_a", "f_rvol_20", "f_b"]
    kwargs = core_kwargs(cfg, feats, RELS, 2)
    assert kwargs["vol_index"] == 1 and kwargs["edge_features"] == ["vol_similarity"] and kwargs["vol_scale"] == 2.0
    with pytest.raises(UserError, match="train.edge_features.*f_rvol_20"):
        core_kwargs(cfg, ["f_a", "f_b"], RELS, 2)
    fan = core_kwargs(TrainConfig(window_norm="fan", fan_top_k=2, stochastic_depth=0.2), feats, RELS, 2)
    assert fan["window_norm"] == "fan" and fan["fan_top_k"] == 2 and fan["stochastic_depth"] == 0.2
    assert isinstance(CoreModel(**fan).temporal.norm, FrequencyAdaptiveNorm)


# ------------------------------------------------ sector-residual correlation


def test_sector_mean_leave_one_out_matches_a_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 9))
    x[rng.random(x.shape) < 0.25] = np.nan
    sector = np.array([2, 0, 2, -1, 0, 2, 5, 0, 2])
    got = sector_mean_loo(x, sector)
    for d in range(7):
        for j in range(9):
            peers = [x[d, k] for k in range(9) if k != j and sector[k] == sector[j] and sector[j] >= 0 and np.isfinite(x[d, k])]
            want = np.mean(peers) if peers else np.nan
            np.testing.assert_allclose(got[d, j], want, rtol=1e-12, equal_nan=True)


def sector_market(n_days: int = 90, per_sector: int = 8, seed: int = 0) -> tuple[np.ndarray, pl.DataFrame]:
    """Closes of 3 sectors x ``per_sector`` stocks: market + a strong sector factor + noise; S000 and S008
    (different sectors) share a weaker planted component."""
    rng = np.random.default_rng(seed)
    n = 3 * per_sector
    sector = np.arange(n) // per_sector
    ret = rng.normal(0, 0.01, (n_days, 1)) + rng.normal(0, 0.02, (n_days, 3))[:, sector] + rng.normal(0, 0.01, (n_days, n))
    pair = rng.normal(0, 0.01, n_days)
    ret[:, 0] += pair
    ret[:, per_sector] += pair
    close = 100 * np.exp(np.cumsum(ret, axis=0))
    return close, universe(n, sector_of=lambda i: f"X{i // per_sector}")


def test_residual_correlation_removes_a_planted_sector_factor():
    close, uni = sector_market()
    cfg = dict(relations=["rolling_correlation"], corr_window=60, top_k=3, rebuild_every=80)
    plain, _ = build_edges(to_prices(close), uni, NO_RELATIONS, GraphConfig(**cfg))
    resid, metrics = build_edges(to_prices(close), uni, NO_RELATIONS, GraphConfig(**cfg, residualize_sector=True))
    snap = day_of(80)

    def of(edges, code):
        e = edges.filter(pl.col("snapshot") == snap, pl.col("dst") == code).sort("rho", descending=True)
        return e["src"].to_list(), e["rho"].to_numpy()

    def same_sector(edges):
        e = edges.filter(pl.col("snapshot") == snap)
        return e, e.filter(pl.col("src").str.slice(1).cast(pl.Int32) // 8 == pl.col("dst").str.slice(1).cast(pl.Int32) // 8)

    every, same = same_sector(plain)
    assert same.height == every.height and same["rho"].min() > 0.5  # the sector dominates plain correlation
    assert "S008" not in of(plain, "S000")[0]
    every, same = same_sector(resid)
    assert of(resid, "S000")[0][0] == "S008" and of(resid, "S008")[0][0] == "S000"  # the planted cross-sector pair
    assert same["rho"].max() < 0.3  # no positive sector co-movement is left
    assert metrics["point_in_time"] == {"rolling_correlation": False}  # the static universe is reported
    with pytest.raises(UserError, match="graph.residualize_sector"):
        build_edges(to_prices(close), uni.drop("sector"), NO_RELATIONS, GraphConfig(**cfg, residualize_sector=True))
    no_sector, _ = build_edges(to_prices(close), uni.drop("sector"), NO_RELATIONS, GraphConfig(**cfg))
    assert no_sector.equals(plain)  # off: the universe is not read


def test_residual_correlation_keeps_the_graph_leakage_rule():
    """Perturbing or deleting later prices, or a sector change dated later, moves no earlier snapshot."""
    prices, uni, rel = full_inputs()
    pit = dated(uni, S000=(None, 64))
    moved = uni.filter(pl.col("code") == "S000").with_columns(sector=pl.lit("X1"), start=pl.lit(day_of(65)),
                                                                 end=pl.lit(None, dtype=pl.Date))
    pit = pl.concat([pit, moved])
    cfg = GraphConfig(relations=["rolling_correlation"], corr_window=30, rebuild_every=10, top_k=4, residualize_sector=True)
    static, _ = build_edges(prices, uni, rel, cfg)
    before, metrics = build_edges(prices, pit, rel, cfg)
    assert metrics["point_in_time"] == {"rolling_correlation": True}
    change = pl.col("snapshot") < day_of(65)
    assert before.filter(change).equals(static.filter(change))  # the later sector change reaches no earlier snapshot
    assert not before.filter(~change).equals(static.filter(~change))
    cut = prices["date"].unique().sort()[75]
    later = pl.col("date") > cut
    factor = pl.Series(np.random.default_rng(7).uniform(0.5, 1.5, prices.height))
    shaken = prices.with_columns(pl.when(later).then(pl.col("close") * factor).otherwise(pl.col("close")).alias("close"))
    past = pl.col("snapshot") <= cut
    for changed in (shaken, prices.filter(~later)):
        after, _ = build_edges(changed, pit, rel, cfg)
        assert after.filter(past).equals(before.filter(past))
    assert before.filter(past).height > 0
