"""Pretraining of the core model's encoder: masked prediction, InfoNCE, leakage, loading into CoreModel."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.runtime.config import PearlConfig, PretrainConfig, TrainConfig, params_from_dict
from alphagraph.runtime.errors import UserError
from alphagraph.graph.loader import GraphIndex
from alphagraph.models.core import CoreModel, core_kwargs
from alphagraph.models.core.pretrain import (
    HEAD_PREFIXES,
    Pretrainer,
    encoder_state,
    info_nce,
    load_pretrained,
    pretrain_encoder,
    save_pretrained,
)
from alphagraph.evaluation.split import Fold
from alphagraph.train import seed_everything, split_codes
from alphagraph.train.core_data import CoreDayData

N_STOCKS, N_DAYS = 32, 70
TRAIN_CFG = TrainConfig(hidden=16, heads=2, layers=1, seq_len=3, neighbour_inputs=[], pearl=PearlConfig(mode="none"))
DAYS = [dt.date(2021, 1, 1) + dt.timedelta(days=i) for i in range(N_DAYS)]
FOLD = Fold(0, (DAYS[0], DAYS[39]), (DAYS[45], DAYS[54]), (DAYS[60], DAYS[69]))


def planted(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stock i's label is its supplier's (i + 1 mod n) feature f_0 of the same day; its own features say nothing.

    f_2 is a persistent trait of each stock (what the contrastive views share).
    """
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(N_DAYS, N_STOCKS, 3)).astype(np.float32)
    f[:, :, 2] = rng.normal(size=N_STOCKS) + 0.1 * f[:, :, 2]
    supplier = (np.arange(N_STOCKS) + 1) % N_STOCKS
    codes = [f"S{i:03d}" for i in range(N_STOCKS)]
    panel = pl.DataFrame({
        "date": np.repeat(np.array(DAYS, dtype="datetime64[D]"), N_STOCKS), "code": codes * N_DAYS,
        **{f"f_{j}": f[:, :, j].ravel() for j in range(3)},
        "y_1d": f[:, supplier, 0].ravel(),
    })
    edges = pl.DataFrame({
        "snapshot": [DAYS[0]] * N_STOCKS, "relation": ["supply_chain"] * N_STOCKS,
        "src": [codes[s] for s in supplier], "dst": codes,
        "weight": np.ones(N_STOCKS, dtype=np.float32), "sign": np.ones(N_STOCKS, dtype=np.int8),
    })
    return panel, edges


def day_data(panel: pl.DataFrame, edges: pl.DataFrame, use_edges: bool = True) -> CoreDayData:
    index = GraphIndex(edges, panel, relations=["supply_chain"])
    codes = split_codes(panel, FOLD, 1)
    return CoreDayData(index, panel, codes, ["f_0", "f_1", "f_2"], [1], TRAIN_CFG.seq_len, use_edges=use_edges)


def kwargs_for(cfg: TrainConfig = TRAIN_CFG) -> dict:
    return core_kwargs(cfg, ["f_0", "f_1", "f_2"], ["supply_chain"], 1)


def pretrain(data: CoreDayData, objective: str = "masked", seed: int = 0, **cfg) -> tuple[CoreModel, list[dict]]:
    seed_everything(seed)
    core = CoreModel(**kwargs_for())
    pre = PretrainConfig(objective=objective, **({"epochs": 6, "lr": 3e-3, "days_per_epoch": 0, "batch_days": 8, "num_threads": 1} | cfg))
    history = pretrain_encoder(Pretrainer(core, objective, 1), data, pre, seed=seed)
    return core, history


@pytest.fixture(scope="module")
def market():
    return planted()


@pytest.fixture(scope="module")
def masked_run(market):
    return pretrain(day_data(*market), "masked", mask_share=0.3, epochs=10)


# ---------------------------------------------------------------------- masked


def test_masked_loss_learns_the_neighbour_signal(market, masked_run):
    """Loss falls far below predicting 0 with the graph; without edges the masked node cannot beat 0."""
    _, history = masked_run
    late = {k: np.mean([r[k] for r in history[-3:]]) for k in ("masked", "masked_zero")}  # epochs are a few noisy steps
    assert late["masked"] < 0.5 * history[0]["masked"], history
    assert late["masked"] < 0.5 * late["masked_zero"], history
    _, alone = pretrain(day_data(*market, use_edges=False), "masked", mask_share=0.3)
    assert np.mean([r["masked"] for r in alone[-3:]]) > 0.9 * np.mean([r["masked_zero"] for r in alone[-3:]]), alone


def test_a_masked_node_does_not_see_its_own_features(market):
    """Its window is replaced by the mask token and hidden from its neighbours' inputs too (2 layers, neighbour sums)."""
    cfg = dataclasses.replace(TRAIN_CFG, layers=2, neighbour_inputs=["f_0"])
    seed_everything(0)
    core = CoreModel(**kwargs_for(cfg))
    model = Pretrainer(core, "masked", 1).eval()
    torch.nn.init.normal_(model.mask_token)
    torch.nn.init.constant_(core.temporal.gate, 1.0)  # the window's path open
    data = day_data(*market)
    b = data.batch(data.index.dates[10:12])
    masked = torch.zeros(b.num_nodes, dtype=torch.bool)
    masked[[0, 5, 40]] = True
    h = model.encode(b, masked)
    other = b.clone()
    other.x_seq = torch.where(masked[:, None, None], torch.randn_like(b.x_seq) * 5, b.x_seq)
    torch.testing.assert_close(model.encode(other, masked), h)
    assert not torch.allclose(model.encode(other), model.encode(b))  # unmasked, the change shows
    torch.testing.assert_close(b.x_seq, data.batch(data.index.dates[10:12]).x_seq)  # the caller's batch is untouched


# ----------------------------------------------------------------- contrastive


def test_info_nce_prefers_aligned_pairs():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 8, generator=g)
    group = torch.arange(40) // 10  # four days of ten stocks
    aligned = info_nce(a, a + 0.05 * torch.randn(40, 8, generator=g), group, 0.1)
    shuffled = info_nce(a, a[torch.randperm(40, generator=g)], group, 0.1)
    assert float(aligned) < 0.1 < np.log(10) - 0.5 < float(shuffled)
    # Negatives are the same group's rows only: another group's copy of the anchor is no competitor.
    twins = torch.cat([a[:10], a[:10]])
    assert float(info_nce(twins, twins, torch.arange(20) // 10, 0.1)) < 0.1


def test_contrastive_loss_decreases(market):
    _, history = pretrain(day_data(*market), "contrastive", epochs=4, offset_days=2)
    assert history[-1]["contrastive"] < history[0]["contrastive"] - 0.3, history
    assert history[-1]["contrastive"] < history[-1]["contrastive_chance"] - 0.3  # chance: log(stocks of a day)


def test_both_objectives_sum(market):
    _, history = pretrain(day_data(*market), "both", epochs=1, offset_days=2)
    r = history[0]
    assert r["loss"] == pytest.approx(r["masked"] + r["contrastive"], rel=1e-5)


# --------------------------------------------------------------------- leakage


@pytest.mark.parametrize("objective", ["masked", "contrastive"])
def test_validation_and_test_rows_do_not_move_the_weights(market, objective):
    """Change every label and feature from the first validation day on: the pretrained encoder is bit-identical."""
    panel, edges = market
    later = pl.col("date") >= pl.lit(FOLD.val[0])
    changed = panel.with_columns(pl.when(later).then(pl.col(c) * -3 + 1).otherwise(pl.col(c)).alias(c) for c in ("y_1d", "f_0", "f_1"))
    run = dict(epochs=2, days_per_epoch=16, offset_days=2)
    a, _ = pretrain(day_data(panel, edges), objective, **run)
    b, _ = pretrain(day_data(changed, edges), objective, **run)
    sa, sb = encoder_state(a), encoder_state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # The check can fail: a change inside the training window moves them.
    early = pl.col("date") <= pl.lit(FOLD.train[1])
    moved, _ = pretrain(day_data(panel.with_columns(pl.when(early).then(-pl.col("y_1d")).otherwise(pl.col("y_1d")).alias("y_1d"),
                                                    pl.when(early).then(-pl.col("f_0")).otherwise(pl.col("f_0")).alias("f_0")), edges),
                        objective, **run)
    assert not all(torch.equal(sa[k], v) for k, v in encoder_state(moved).items())


# ---------------------------------------------------------------- checkpoints


def test_load_into_core_model_and_refusals(tmp_path, masked_run):
    core, history = masked_run
    save_pretrained(core, kwargs_for(), "masked", 3, history, tmp_path / "fold3.pt")
    seed_everything(1)
    fresh = CoreModel(**kwargs_for())
    heads = {k: v.clone() for k, v in fresh.state_dict().items() if k.startswith(HEAD_PREFIXES)}
    meta = load_pretrained(fresh, kwargs_for(), 3, tmp_path)
    assert meta["objective"] == "masked" and meta["history"][-1]["masked"] == pytest.approx(history[-1]["masked"])
    loaded, want = fresh.state_dict(), encoder_state(core)
    assert want and all(torch.equal(loaded[k], v) for k, v in want.items())
    assert heads and all(torch.equal(loaded[k], v) for k, v in heads.items())  # the heads keep their own init

    other = dataclasses.replace(TRAIN_CFG, hidden=8)
    with pytest.raises(UserError, match=r"fold3\.pt.*hidden"):
        load_pretrained(CoreModel(**kwargs_for(other)), kwargs_for(other), 3, tmp_path)
    with pytest.raises(UserError, match=r"fold4\.pt does not exist; run the pretrain stage"):
        load_pretrained(fresh, kwargs_for(), 4, tmp_path)
    (tmp_path / "pretrain.json").write_text('{"objective": "none"}')
    with pytest.raises(UserError, match=r"fold4\.pt.*pretrain\.objective: none"):
        load_pretrained(fresh, kwargs_for(), 4, tmp_path)


def test_pretrain_params_are_checked():
    base = {"train": {"init_from": "pretrain"}}
    with pytest.raises(UserError, match="train.init_from"):
        params_from_dict(base)
    assert params_from_dict(base | {"pretrain": {"objective": "both"}}).train.init_from == "pretrain"
    for key, value in (("mask_share", 1.0), ("offset_days", 0), ("temperature", 0.0), ("objective", "denoise")):
        with pytest.raises(UserError, match=f"pretrain.{key}"):
            params_from_dict({"pretrain": {key: value}})


def test_a_fold_of_the_tiny_pipeline_pretrains_and_loads(tmp_path):
    """pretrain_fold on the tiny market (PEARL, neighbour inputs), then train_core_fold's build + load_pretrained."""
    from alphagraph.models.core import core_fold_data
    from alphagraph.features.normalize import feature_columns
    from alphagraph.models.core.pretrain import pretrain_fold
    from tests.test_core import core_params
    from tests.test_train_loop import tiny_pipeline

    tiny = tiny_pipeline()
    base = core_params(neighbour_inputs=feature_columns(tiny.panel)[:1])
    params = dataclasses.replace(base, pretrain=PretrainConfig(objective="both", epochs=1, days_per_epoch=4, batch_days=2, num_threads=1))
    core, history = pretrain_fold(tiny.panel, tiny.index, tiny.fold, params)
    assert {"masked", "contrastive"} <= set(history[0])
    cfg, features = params.train, feature_columns(tiny.panel)
    kwargs = core_kwargs(cfg, features, tiny.index.relations, len(params.features.horizons), params.seed)
    save_pretrained(core, kwargs, "both", tiny.fold.fold, history, tmp_path / f"fold{tiny.fold.fold}.pt")

    # What train_core_fold does with train.init_from: pretrain (after the model is built and seeded).
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    seed_everything(params.seed * 1000 + tiny.fold.fold)
    model = CoreModel.from_config(cfg, features, tiny.index.relations, len(data.horizons), seed=params.seed)
    init = encoder_state(model)
    rng = torch.get_rng_state()
    load_pretrained(model, kwargs, tiny.fold.fold, tmp_path)
    assert torch.equal(torch.get_rng_state(), rng)  # loading draws nothing: the run after it is unchanged
    loaded, want = encoder_state(model), encoder_state(core)
    assert all(torch.equal(loaded[k], v) for k, v in want.items())
    assert any(not torch.equal(init[k], v) for k, v in want.items())  # pretraining moved the encoder


def test_the_stage_writes_only_a_marker_when_off(tmp_path, monkeypatch):
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["pretrain.py", "--params", str(root / "params.yaml")])
    runpy.run_path(str(root / "stages/pretrain.py"))["main"]()  # not run_main: it would install signal handlers here
    assert sorted(p.name for p in (tmp_path / "models/pretrain").iterdir()) == ["pretrain.json"]
    with pytest.raises(UserError, match="pretrain.objective: none"):
        load_pretrained(CoreModel(**kwargs_for()), kwargs_for(), 0, tmp_path / "models/pretrain")
