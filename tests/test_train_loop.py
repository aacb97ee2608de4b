"""The reusable training loop: a step lowers the loss, exact resume, early stopping, losses, split masks."""

from __future__ import annotations

import functools
import os
import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.runtime.config import Params, params_from_dict
from alphagraph.models.gat import GATBaseline, gat_fold_data
from alphagraph.evaluation.split import Fold
from alphagraph.train import (
    NONE,
    TEST,
    TRAIN,
    VAL,
    EarlyStopping,
    LoopConfig,
    MultiHorizonLoss,
    WarmupCosine,
    daily_corr,
    fit,
    masked_bce,
    masked_mse,
    seed_everything,
    split_codes,
)
from alphagraph.train.loop import CheckpointError, _rng_state, _set_rng_state, eval_days, load_checkpoint
from alphagraph.evaluation.walkforward import split_for
from tests.conftest import EASY_MARKET

# A small market with a strong planted signal (so a tiny model learns it robustly)
# and few feature windows (fewer inputs, faster tests).
TINY_TRAIN: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "data": {
        "synthetic": {
            "n_stocks": 60,
            "n_days": 420,
            "n_sectors": 4,
            "n_funds": 10,
            **EASY_MARKET,
            "signal": {
                "reversal": 0.11,
                "momentum": 0.08,
                "volume_price": 0.08,
                "sector_spillover": 0.09,
                "supply_chain": 0.15,
            },
        }
    },
    "features": {"windows": [5, 10, 20]},
    "normalize": {"min_stocks": 5},
    "split": {"n_splits": 1, "min_train_days": 170, "val_days": 60, "test_days": 80, "embargo_days": 20},
    "graph": {"corr_window": 20, "top_k": 5},
    "gat": {
        "hidden": 16,
        "heads": 2,
        "layers": 1,
        "dropout": 0.1,
        "epochs": 4,
        "batch_days": 8,
        "days_per_epoch": 48,
        "patience": 0,
        "num_threads": 1,
    },
}


@dataclass(frozen=True)
class Tiny:
    params: Params
    panel: pl.DataFrame
    index: Any
    fold: Fold
    edges: pl.DataFrame


def tiny_params(**gat: Any) -> Params:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_TRAIN.items()}
    raw["gat"] = {**TINY_TRAIN["gat"], **gat}
    return params_from_dict(raw)


@functools.lru_cache(maxsize=1)
def tiny_pipeline() -> Tiny:
    """ingest -> features -> normalize -> folds -> edges -> GraphIndex, in process (a few seconds)."""
    from alphagraph.data.ingest import ingest
    from alphagraph.features.panel import build_panel
    from alphagraph.graph.build import build_edges
    from alphagraph.graph.loader import GraphIndex
    from alphagraph.features.normalize import normalize_panel
    from alphagraph.evaluation.split import make_folds

    params = tiny_params()
    raw = ingest(params)
    features, _ = build_panel(raw.prices, raw.universe, params.features)
    panel, _ = normalize_panel(features, params.normalize, params.features.horizons)
    (fold,) = make_folds(panel["date"].unique().sort().to_list(), params.split)
    edges, _ = build_edges(raw.prices, raw.universe, raw.relations, params.graph)
    return Tiny(params, panel, GraphIndex(edges, panel, relations=params.graph.relations), fold, edges)


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    return tiny_pipeline()


def make_model(data, params: Params, seed: int = 0) -> GATBaseline:
    seed_everything(seed)
    return GATBaseline.from_config(params.gat, data.in_dim, data.edge_dim, len(data.horizons))


def make_loss(data, params: Params) -> MultiHorizonLoss:
    return MultiHorizonLoss.from_balance(params.gat.horizon_weights, data.class_balance("train"), params.gat.dir_weight)


def loop_cfg(**kw: Any) -> LoopConfig:
    base = dict(epochs=4, lr=3e-3, batch_days=8, days_per_epoch=24, eval_batch_days=32, patience=0, num_threads=1, device="cpu")
    return LoopConfig(**(base | kw))


# ----------------------------------------------------------------- data / masks


def test_split_codes_match_assign_split(tiny):
    codes = split_codes(tiny.panel, tiny.fold, max(tiny.params.features.horizons))
    assigned = split_for(tiny.panel, tiny.fold, tiny.params)
    assert codes.shape == (tiny.panel.height,)
    for name, code in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        assert int((codes == code).sum()) == assigned.filter(pl.col("split") == name).height
    # Purged and out-of-fold rows count for nothing; the embargo days are such rows.
    assert (codes == NONE).sum() > 0


def test_batches_keep_every_stock_of_the_day_and_mark_its_split(tiny):
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    day = data.dates("train")[-1]  # the last training day: some rows may be purged, all are nodes
    batch = data.batch([day])
    rows = tiny.panel.filter(pl.col("date") == day)
    assert batch.num_nodes == rows.height
    assert torch.equal(batch.split, torch.from_numpy(data.codes[batch.row.numpy()]))
    assert batch.y.shape == (rows.height, 4) and batch.y_dir.shape == (rows.height, 4)
    assert set(batch.split.tolist()) <= {NONE, TRAIN}
    assert batch.edge_attr.shape[1] == data.edge_dim


# ------------------------------------------------------------------------ losses


def test_masked_losses_ignore_masked_nodes_and_null_labels():
    pred = torch.tensor([[1.0, 0.0], [2.0, 5.0], [100.0, 100.0]])
    y = torch.tensor([[0.0, float("nan")], [0.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([True, True, False])
    mse, count = masked_mse(pred, y, mask)
    assert torch.allclose(mse, torch.tensor([2.5, 16.0])) and count.tolist() == [2, 1]
    logit = torch.zeros(3, 2)
    bce, _ = masked_bce(logit, torch.tensor([[1.0, float("nan")], [0.0, 1.0], [1.0, 1.0]]), mask, torch.tensor([3.0, 1.0]))
    # horizon 0: (3 * log 2 + log 2) / 2; horizon 1: log 2
    assert torch.allclose(bce, torch.tensor([2 * np.log(2), np.log(2)], dtype=torch.float32))


def test_daily_corr_matches_numpy_per_day():
    g = torch.Generator().manual_seed(0)
    pred, y = torch.randn(20, 1, generator=g), torch.randn(20, 1, generator=g)
    day = torch.tensor([0] * 10 + [1] * 10)
    corr = daily_corr(pred, y, torch.ones(20, dtype=torch.bool), day, 2)
    expected = np.mean([np.corrcoef(pred[s, 0], y[s, 0])[0, 1] for s in (slice(0, 10), slice(10, 20))])
    assert corr.item() == pytest.approx(expected, abs=1e-5)


def test_warmup_then_cosine_schedule():
    f = WarmupCosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(9) == pytest.approx(0.55) and f(14) == pytest.approx(0.1)
    assert all(f(s) >= f(s + 1) for s in range(4, 20))


def test_early_stopping_state_machine():
    stop = EarlyStopping(patience=2, mode="max")
    assert stop.update(0.1, 1) and not stop.update(0.1, 2) and stop.update(0.2, 3)
    assert not stop.update(float("nan"), 4) and not stop.should_stop
    assert not stop.update(0.15, 5) and stop.should_stop and stop.best_epoch == 3
    low = EarlyStopping(patience=1, mode="min")
    assert low.update(1.0, 1) and low.update(0.5, 2) and not low.update(0.7, 3) and low.should_stop


# -------------------------------------------------------------------------- loop


def test_one_step_lowers_the_loss_on_a_fixed_batch(tiny):
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    model, loss_fn = make_model(data, tiny.params), make_loss(data, tiny.params)
    batch = data.batch(data.dates("train")[:8])
    mask = batch.split == TRAIN
    model.eval()  # no dropout: the same function before and after the step
    out = model(batch)
    assert out["reg"].shape == (batch.num_nodes, 4) and out["dir_logit"].shape == (batch.num_nodes, 4)
    before, parts = loss_fn(out, batch, mask)
    assert {"mse", "bce", "loss"} <= set(parts)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    opt.zero_grad()
    before.backward()
    opt.step()
    after, _ = loss_fn(model(batch), batch, mask)
    assert after.item() < before.item()


def test_only_train_nodes_get_gradients_from_the_loss(tiny):
    """A node outside the training split changes nothing: its labels never reach the loss."""
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    model, loss_fn = make_model(data, tiny.params), make_loss(data, tiny.params)
    model.eval()
    batch = data.batch(data.dates("train")[-4:])  # last training days: some rows are purged (NONE)
    mask = batch.split == TRAIN
    assert (~mask).any()
    base, _ = loss_fn(model(batch), batch, mask)
    batch.y[~mask] = 1e6
    poisoned, _ = loss_fn(model(batch), batch, mask)
    assert base.item() == poisoned.item()


def test_resume_is_exact(tiny, tmp_path):
    """2 epochs, stop, resume for 2 more == 4 epochs straight: identical weights and history."""
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    cfg = loop_cfg(epochs=4)
    straight = make_model(data, tiny.params)
    full = fit(straight, data, make_loss(data, tiny.params), cfg, run_dir=tmp_path / "a")

    first = make_model(data, tiny.params)
    part = fit(first, data, make_loss(data, tiny.params), cfg, run_dir=tmp_path / "b", until_epoch=2)
    assert part.epochs_run == 2 and not part.finished
    torch.manual_seed(123)  # a restarted process has other RNG states: the checkpoint restores them
    np.random.seed(123)
    resumed_model = make_model(data, tiny.params, seed=99)  # different init: overwritten by the checkpoint
    resumed = fit(resumed_model, data, make_loss(data, tiny.params), cfg, run_dir=tmp_path / "b")
    assert resumed.finished and resumed.epochs_run == 4 == full.epochs_run

    last_a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    last_b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert last_a.keys() == last_b.keys()
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    # The returned models hold the best epoch's weights: identical too.
    for (name, p), (_, q) in zip(straight.named_parameters(), resumed_model.named_parameters()):
        assert torch.equal(p, q), name
    assert [h["val_rank_ic_1d"] for h in full.history] == [h["val_rank_ic_1d"] for h in resumed.history]
    assert full.best_epoch == resumed.best_epoch
    # A finished run resumes to a no-op.
    again = fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg, run_dir=tmp_path / "b")
    assert again.epochs_run == 4 and len(again.history) == 4


def test_resume_refuses_a_different_config(tiny, tmp_path):
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), loop_cfg(epochs=2, days_per_epoch=8), tmp_path, until_epoch=1)
    with pytest.raises(ValueError, match="different loop config"):
        fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), loop_cfg(epochs=2, days_per_epoch=8, lr=1.0), tmp_path)


def test_early_stopping_triggers_when_val_metric_stops_improving(tiny):
    """lr = 0: the weights never change, so the val metric never improves after epoch 1."""
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    cfg = loop_cfg(epochs=10, lr=0.0, patience=2, days_per_epoch=8)
    result = fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg)
    assert result.stopped_early and result.finished
    assert result.epochs_run == 3 and result.best_epoch == 1
    scores = [h["val_rank_ic_1d"] for h in result.history]
    assert scores == [scores[0]] * 3


def test_select_metric_loss_and_bad_select_horizon(tiny):
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    cfg = loop_cfg(epochs=2, days_per_epoch=8, select_metric="loss")
    result = fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg)
    assert result.best_score == min(h["val_loss"] for h in result.history)
    with pytest.raises(ValueError, match="select_horizon"):
        fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), loop_cfg(select_horizon=3))
    with pytest.raises(ValueError, match="select_metric"):
        loop_cfg(select_metric="sharpe")


# ----------------------------------------------------------------- safe checkpoints


class Smuggler:
    """Unpickling it calls ``os.makedirs(marker)``: any callable a checkpoint carries would run the same way."""

    def __init__(self, marker: Any) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_checkpoints_hold_only_tensors_and_plain_containers(tiny, tmp_path):
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), loop_cfg(epochs=2, days_per_epoch=8), tmp_path)
    for name in ("last.pt", "best.pt"):
        torch.load(tmp_path / name, weights_only=True)  # raises on anything that would need code to rebuild
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 2 and len(last["history"]) == 2 and last["finished"]


def test_rng_states_survive_a_weights_only_round_trip(tmp_path):
    seed_everything(7)
    np.random.standard_normal()  # a cached gaussian in numpy's state
    random.gauss(0, 1)  # and in python's
    path = tmp_path / "rng.pt"
    torch.save(_rng_state(torch.device("cpu")), path)
    expected = (torch.rand(3), np.random.standard_normal(4), np.random.rand(2), random.random(), random.gauss(0, 1))
    seed_everything(123)
    _set_rng_state(load_checkpoint(path))
    again = (torch.rand(3), np.random.standard_normal(4), np.random.rand(2), random.random(), random.gauss(0, 1))
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and np.array_equal(expected[2], again[2])
    assert expected[3:] == again[3:]


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_at_resume(tiny, tmp_path):
    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    cfg = loop_cfg(epochs=2, days_per_epoch=8)
    fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg, tmp_path, until_epoch=1)
    marker = tmp_path / "pwned"
    ckpt = load_checkpoint(tmp_path / "last.pt")
    torch.save({**ckpt, "history": [*ckpt["history"], Smuggler(marker)]}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'last.pt'}: refused to load") + ".*os.makedirs"):
        fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg, tmp_path)
    assert not marker.exists()
    # A refused best.pt too (read back when a finished run resumes).
    (tmp_path / "last.pt").unlink()
    fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg, tmp_path)
    torch.save({"model": Smuggler(marker)}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="best.pt: refused to load"):
        fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg, tmp_path)
    assert not marker.exists()
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt: cannot be loaded"):
        fit(make_model(data, tiny.params), data, make_loss(data, tiny.params), cfg, tmp_path)


def test_cpu_evaluation_batches_hold_about_a_thousand_stock_days():
    from types import SimpleNamespace

    data = SimpleNamespace(panel=pl.DataFrame({"date": np.repeat(np.arange(10), 200)}))
    assert eval_days(data, 32, torch.device("cpu"), None) == 32  # no cut asked
    assert eval_days(data, 32, torch.device("cpu"), 1024) == 5  # 1,024 rows / 200 stocks a day
    assert eval_days(data, 2, torch.device("cpu"), 1024) == 2  # never more than asked
    big = SimpleNamespace(panel=pl.DataFrame({"date": np.repeat(np.arange(3), 5000)}))
    assert eval_days(big, 32, torch.device("cpu"), 1024) == 1
    assert eval_days(data, 32, torch.device("meta"), 1024) == 32  # an accelerator keeps its batches


def test_validation_batches_kept_across_epochs_change_nothing(tiny, monkeypatch):
    """The validation batches built once (BatchCache) give the same history and weights as rebuilding them."""
    import alphagraph.train.loop as loop

    data = gat_fold_data(tiny.panel, tiny.index, tiny.fold, tiny.params)
    built = []
    batch = data.batch
    monkeypatch.setattr(data, "batch", lambda dates: built.append(len(dates)) or batch(dates))

    def run(budget: int) -> tuple[Any, GATBaseline, int]:
        monkeypatch.setattr(loop, "VAL_CACHE_BYTES", budget)
        built.clear()
        model = make_model(data, tiny.params)
        return fit(model, data, make_loss(data, tiny.params), loop_cfg(epochs=3)), model, len(built)

    kept, kept_model, kept_builds = run(1 << 30)
    rebuilt, rebuilt_model, rebuilt_builds = run(0)
    assert [h["val_rank_ic_1d"] for h in kept.history] == [h["val_rank_ic_1d"] for h in rebuilt.history]
    assert [h["val_loss"] for h in kept.history] == [h["val_loss"] for h in rebuilt.history]
    for (name, p), (_, q) in zip(kept_model.named_parameters(), rebuilt_model.named_parameters()):
        assert torch.equal(p, q), name
    parts = -(-data.dates("val").size // eval_days(data, 32, torch.device("cpu"), None))
    assert rebuilt_builds - kept_builds == 2 * parts  # epochs 2 and 3 reuse epoch 1's batches


def test_batch_cache_keeps_nothing_when_the_batches_would_pass_the_budget():
    from alphagraph.train.loop import BatchCache

    class Batch:
        def __init__(self) -> None:
            self.x = torch.zeros(256)  # 1 kB

    small = BatchCache(budget=10_000)
    first = small.get(0, Batch, parts=4)
    assert small.get(0, Batch, parts=4) is first and small.used == 1024
    big = BatchCache(budget=3_000)  # 4 x 1 kB estimated: over
    assert big.get(0, Batch, parts=4) is not big.get(0, Batch, parts=4) and not big.batches
