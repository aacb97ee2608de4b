"""RL feature export: the frozen model's outputs per (date, code), leakage, readers, schema."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.export import MARKET, export_features, finrl_frame, load_core, load_rl_features, observation_columns, schema
from alphagraph.graph.loader import GraphIndex
from alphagraph.io import write_json, write_parquet
from alphagraph.models.core import CoreModel, core_kwargs
from alphagraph.normalize import feature_columns
from tests.test_core import core_params
from tests.test_train_loop import tiny_pipeline

PARAMS = core_params(layers=2)


@pytest.fixture(scope="module")
def tiny():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def prices(tiny):
    # Raw market columns for the panel's rows (the tiny pipeline keeps no prices frame): any positive values do.
    rng = np.random.default_rng(0)
    keys = tiny.panel.select("date", "code")
    close = rng.uniform(5, 50, keys.height)
    return keys.with_columns(open=close, high=close * 1.01, low=close * 0.99, close=close, volume=rng.uniform(1e5, 1e6, keys.height))


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    """A seeded (untrained) core model saved the way the core stage saves it."""
    fold_dir = tmp_path_factory.mktemp("core") / "fold0"
    cols = feature_columns(tiny.panel)
    kwargs = core_kwargs(PARAMS.train, len(cols), tiny.index.relations, 4, PARAMS.seed)
    torch.manual_seed(0)
    model = CoreModel(**kwargs)
    fold_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "epoch": 1, "score": 0.0}, fold_dir / "best.pt")
    write_json({"kwargs": kwargs, "features": cols, "horizons": [1, 5, 10, 20], "fold": 0}, fold_dir / "model.json")
    return fold_dir


def run_export(tiny, prices, checkpoint, panel=None, index=None, batch_days=16):
    model, meta = load_core(checkpoint)
    panel = tiny.panel if panel is None else panel
    index = tiny.index if index is None else index
    return export_features(model, panel, prices, index, tiny.fold, PARAMS, meta["features"], batch_days, progress=False)


@pytest.fixture(scope="module")
def exported(tiny, prices, checkpoint):
    return run_export(tiny, prices, checkpoint)


def test_every_panel_row_exported_without_nan(tiny, exported):
    assert exported.height == tiny.panel.height
    assert exported.select("date", "code").equals(tiny.panel.select("date", "code").sort("date", "code"))
    obs = observation_columns(exported.columns)
    assert sum(c.startswith("emb_") for c in obs) == PARAMS.train.hidden
    assert {"pred_1d", "pred_20d", "p_signal", "p_up", "p_up_5d", *MARKET, "ret_1d", "tradable", "split"} <= set(exported.columns)
    values = exported.select(obs).to_numpy()
    assert np.isfinite(values).all()
    assert exported["tradable"].all()
    assert set(exported["split"].unique()) == {"train", "val", "test", "none"}
    assert exported.schema["emb_0"] == pl.Float32


def test_embeddings_equal_the_model_forward(tiny, exported, checkpoint):
    from alphagraph.models.core import core_fold_data

    model, _ = load_core(checkpoint)
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, PARAMS)
    emb_cols = [c for c in exported.columns if c.startswith("emb_")]
    for d in tiny.index.dates[[30, 200, 401]]:
        batch = data.batch([d])  # the date alone, not in a batch of 16 as in the export
        out = model(batch)
        codes = tiny.panel["code"].gather(pl.Series(batch.row.numpy()))
        for i in (0, batch.num_nodes // 2, batch.num_nodes - 1):
            row = exported.filter((pl.col("date") == d.item()) & (pl.col("code") == codes[i]))
            np.testing.assert_allclose(row.select(emb_cols).to_numpy()[0], out["emb"][i].numpy(), atol=1e-5)
            assert row["pred_1d"][0] == pytest.approx(float(out["reg"][i, 0]), abs=1e-5)
            assert row["p_up_1d"][0] == pytest.approx(float(torch.sigmoid(out["dir_logit"][i, 0])), abs=1e-5)


def test_deterministic_and_independent_of_batching(tiny, prices, checkpoint, exported):
    assert run_export(tiny, prices, checkpoint).equals(exported)
    obs = observation_columns(exported.columns)
    other = run_export(tiny, prices, checkpoint, batch_days=7)  # float rounding of batched matmuls only
    np.testing.assert_allclose(other.select(obs).to_numpy(), exported.select(obs).to_numpy(), atol=1e-5)


def test_no_leakage_from_after_the_date(tiny, prices, checkpoint, exported):
    cut = tiny.index.dates[300]
    after = pl.col("date") > pl.lit(cut.item())
    cols = feature_columns(tiny.panel)
    panel2 = tiny.panel.with_columns(pl.when(after).then(pl.col(c) * -2 + 0.5).otherwise(pl.col(c)).alias(c) for c in cols)
    edges2 = tiny.edges.filter(pl.col("snapshot") <= pl.lit(cut.item()))
    again = run_export(tiny, prices, checkpoint, panel2, GraphIndex(edges2, panel2, relations=tiny.index.relations))
    obs = observation_columns(exported.columns)
    before = (pl.col("date") <= pl.lit(cut.item()))
    assert again.filter(before).select("date", "code", *obs).equals(exported.filter(before).select("date", "code", *obs))
    assert not again.filter(~before).select(obs).equals(exported.filter(~before).select(obs))


def test_reader_arrays_agree_with_the_parquet(exported, tmp_path):
    # Drop some rows: those stocks did not trade that day.
    holes = exported.with_row_index("i").filter(pl.col("i") % 17 != 3).drop("i")
    path = write_parquet(holes, tmp_path / "rl.parquet")
    rl = load_rl_features(path)
    assert rl.obs.shape == (holes["date"].n_unique(), holes["code"].n_unique(), len(rl.columns))
    assert rl.mask.sum() == holes.height
    for r in holes.sample(20, seed=1).iter_rows(named=True):
        t = int(np.searchsorted(rl.dates, np.datetime64(r["date"])))
        n = rl.codes.index(r["code"])
        assert rl.mask[t, n]
        np.testing.assert_allclose(rl.obs[t, n], [r[c] for c in rl.columns], rtol=1e-6)
        assert rl.close[t, n] == r["close"]
    assert (rl.obs[~rl.mask] == 0).all() and np.isnan(rl.close[~rl.mask]).all()
    train = load_rl_features(path, split="train")
    assert train.dates.max() < load_rl_features(path, split="test").dates.min()
    with pytest.raises(ValueError, match="split must be one of"):
        load_rl_features(path, split="future")


def test_finrl_frame_is_balanced_with_no_zero_prices(exported, tmp_path):
    holes = exported.with_row_index("i").filter(pl.col("i") % 13 != 5).drop("i")
    path = write_parquet(holes, tmp_path / "rl.parquet")
    frame = finrl_frame(path, split="test")
    n_dates, n_tics = frame["date"].n_unique(), frame["tic"].n_unique()
    assert frame.height == n_dates * n_tics
    assert frame.group_by("date").len()["len"].n_unique() == 1
    for c in ("open", "high", "low", "close"):
        assert frame[c].null_count() == 0 and (frame[c] > 0).all()
    test_rows = holes.filter(pl.col("split") == "test").height
    assert frame["tradable"].sum() == test_rows and frame.height > test_rows
    assert (frame.filter(~pl.col("tradable"))["volume"] == 0).all()
    assert frame.columns[:8] == ["date", "tic", *MARKET, "tradable"]


def test_schema_names_every_column_and_the_checkpoint(exported, checkpoint, tiny):
    s = schema(exported, PARAMS, tiny.fold, checkpoint / "best.pt")
    assert [c["name"] for c in s["columns"]] == exported.columns
    assert all(c["meaning"] for c in s["columns"])
    assert s["embedding_size"] == PARAMS.train.hidden and s["horizons"] == [1, 5, 10, 20]
    assert len(s["checkpoint"]["sha256"]) == 64
    assert s["params"]["train"]["lr"] == PARAMS.train.lr
    json.dumps(s)  # serializable
