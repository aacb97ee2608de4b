"""RL feature export: the frozen model's outputs per (date, code), what is in-sample, leakage, devices, readers, FinRL, schema."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.runtime.errors import UserError
from alphagraph.rl.export import (
    MARKET,
    export_features,
    finrl_env_kwargs,
    finrl_frame,
    load_core,
    load_rl_features,
    model_outputs,
    observation_columns,
    schema,
)
from alphagraph.graph.loader import GraphIndex
from alphagraph.runtime.io import write_json, write_parquet
from alphagraph.models.core import CoreModel, core_fold_data, core_kwargs
from alphagraph.features.normalize import feature_columns
from alphagraph.train import split_codes
from alphagraph.train.core_data import CoreDayData
from alphagraph.train.loop import CheckpointError
from alphagraph.evaluation.walkforward import label_reach
from tests.test_core import core_params
from tests.test_train_loop import Smuggler, tiny_pipeline

PARAMS = core_params(layers=2)
HORIZONS = [1, 5, 10, 20]


@pytest.fixture(scope="module")
def tiny():
    return tiny_pipeline()


def make_prices(keys: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    # Raw market columns for the panel's rows (the tiny pipeline keeps no prices frame): any positive values do.
    rng = np.random.default_rng(seed)
    close = rng.uniform(5, 50, keys.height)
    return keys.with_columns(open=close, high=close * 1.01, low=close * 0.99, close=close, volume=rng.uniform(1e5, 1e6, keys.height))


@pytest.fixture(scope="module")
def prices(tiny):
    return make_prices(tiny.panel.select("date", "code"))


@pytest.fixture(scope="module")
def oos(tiny):
    """Core-stage predictions of fold 0 (val and test rows) with their own values: they are not the export's model."""
    d = pl.col("date")
    f = tiny.fold
    rows = tiny.panel.select("date", "code").filter(d.is_between(*f.val) | d.is_between(*f.test))
    rng = np.random.default_rng(1)
    cols = {f"{p}_{h}d": pl.Series(rng.uniform(0, 1, rows.height), dtype=pl.Float32) for p in ("pred", "p_up", "p_signal") for h in HORIZONS}
    split = pl.when(d.is_between(*f.val)).then(pl.lit("val")).otherwise(pl.lit("test"))
    return rows.with_columns(fold=pl.lit(0, dtype=pl.Int32), split=split, **cols)


@pytest.fixture(scope="module")
def checkpoint(tiny, tmp_path_factory):
    """A seeded (untrained) core model saved the way the core stage saves it."""
    fold_dir = tmp_path_factory.mktemp("core") / "fold0"
    cols = feature_columns(tiny.panel)
    kwargs = core_kwargs(PARAMS.train, cols, tiny.index.relations, 4, PARAMS.seed)
    torch.manual_seed(0)
    model = CoreModel(**kwargs)
    fold_dir.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "epoch": 1, "score": 0.0}, fold_dir / "best.pt")
    write_json({"kwargs": kwargs, "features": cols, "horizons": HORIZONS, "fold": 0}, fold_dir / "model.json")
    return fold_dir


def run_export(tiny, prices, checkpoint, panel=None, index=None, batch_days=16, oos=None, model=None):
    loaded, meta = load_core(checkpoint)
    panel = tiny.panel if panel is None else panel
    index = tiny.index if index is None else index
    return export_features(
        loaded if model is None else model, panel, prices, index, tiny.fold, PARAMS, meta["features"], batch_days, progress=False, oos=oos,
    )


@pytest.fixture(scope="module")
def exported(tiny, prices, checkpoint, oos):
    return run_export(tiny, prices, checkpoint, oos=oos)


def test_every_panel_row_exported_without_nan(tiny, exported):
    assert exported.height == tiny.panel.height
    assert exported.select("date", "code").equals(tiny.panel.select("date", "code").sort("date", "code"))
    obs = observation_columns(exported.columns)
    assert sum(c.startswith("emb_") for c in obs) == PARAMS.train.hidden
    wanted = {"pred_1d", "pred_20d", "p_signal", "p_up", "p_up_5d", *MARKET, "ret_1d", "tradable", "split", "in_sample", "fold"}
    assert wanted <= set(exported.columns)
    assert exported.columns[:6] == ["date", "code", "fold", "split", "in_sample", "tradable"]
    assert np.isfinite(exported.select(obs).to_numpy()).all()
    assert exported["tradable"].all() and (exported["fold"] == 0).all()
    assert set(exported["split"].unique()) == {"train", "val", "test", "none"}
    assert exported.schema["emb_0"] == pl.Float32 and exported.schema["in_sample"] == pl.Boolean


def test_embeddings_equal_the_model_forward(tiny, exported, checkpoint):
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


def test_deterministic_and_independent_of_batching(tiny, prices, checkpoint, oos, exported):
    assert run_export(tiny, prices, checkpoint, oos=oos).equals(exported)
    obs = observation_columns(exported.columns)
    other = run_export(tiny, prices, checkpoint, batch_days=7, oos=oos)  # float rounding of batched matmuls only
    np.testing.assert_allclose(other.select(obs).to_numpy(), exported.select(obs).to_numpy(), atol=1e-5)


# ------------------------------------------------------------ in-sample rows


def test_in_sample_is_every_date_the_model_trained_or_early_stopped_on(tiny, exported):
    f = tiny.fold
    data = core_fold_data(tiny.panel, tiny.index, f, PARAMS)  # what fit() trains (TRAIN dates) and selects on (VAL dates)
    seen = {d.item() for d in np.concatenate([data.dates("train"), data.dates("val")])}
    per_date = exported.group_by("date").agg(pl.col("in_sample").unique(), pl.col("split").unique()).sort("date")
    assert (per_date["in_sample"].list.len() == 1).all() and (per_date["split"].list.len() == 1).all()  # dates alone
    flagged = set(per_date.filter(pl.col("in_sample").list.first())["date"].to_list())
    assert seen <= flagged
    # Beyond them only the embargo days (their returns lie inside the training / validation label windows):
    # in_sample is exactly "dated before the test window".
    assert flagged == {d for d in per_date["date"].to_list() if d < f.test[0]}
    assert all(f.train[1] < d < f.val[0] or f.val[1] < d < f.test[0] for d in flagged - seen)
    test_dates = set(exported.filter(pl.col("split") == "test")["date"].to_list())
    assert test_dates and not (test_dates & flagged)
    # split is the date window, nothing else.
    for name, (lo, hi) in (("train", f.train), ("val", f.val), ("test", f.test)):
        rows = exported.filter(pl.col("split") == name)
        assert rows["date"].min() == min(d for d in per_date["date"] if lo <= d <= hi) and rows["date"].max() <= hi


# ------------------------------------------------------------ leakage


@pytest.mark.parametrize("where", ["train_end", "test"])
def test_every_column_but_the_reward_ignores_the_future(tiny, prices, checkpoint, oos, exported, where):
    """Change features, prices and predictions after the cut, and delete a stock's rows after it (delisting)."""
    dates = tiny.index.dates
    at = np.searchsorted(dates, np.datetime64(tiny.fold.train[1])) - 5 if where == "train_end" else dates.size - 30
    cut, resume = dates[at].item(), dates[min(at + 30, dates.size - 1)].item()
    after = pl.col("date") > pl.lit(cut)
    suspended, delisted = tiny.panel["code"].unique().sort()[3:5]
    # A 30-day suspension right after the cut and a delisting: future events a row-level purge would see.
    gone = (pl.col("code") == suspended) & pl.col("date").is_between(cut, resume, closed="right") | (pl.col("code") == delisted) & after
    cols = feature_columns(tiny.panel)
    panel2 = tiny.panel.filter(~gone).with_columns(pl.when(after).then(pl.col(c) * -2 + 0.5).otherwise(pl.col(c)).alias(c) for c in cols)
    edges2 = tiny.edges.filter(pl.col("snapshot") <= pl.lit(cut))
    index2 = GraphIndex(edges2, panel2, relations=tiny.index.relations)
    prices2 = prices.filter(~gone).with_columns(
        pl.when(after).then(pl.col(c) * 1.7).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")
    )
    oos2 = oos.filter(~gone).with_columns(pl.when(after).then(1 - pl.col("pred_1d")).otherwise(pl.col("pred_1d")).alias("pred_1d"))
    again = run_export(tiny, prices2, checkpoint, panel2, index2, oos=oos2)

    before = pl.col("date") <= pl.lit(cut)
    keep = [c for c in exported.columns if c != "ret_1d"]
    assert again.filter(before).select(keep).equals(exported.filter(before).select(keep))
    # The reward looks one market day ahead: unchanged up to the day before the cut.
    assert again.filter(pl.col("date") < pl.lit(cut))["ret_1d"].equals(exported.filter(pl.col("date") < pl.lit(cut))["ret_1d"])
    changed = again.filter(after).join(exported, on=["date", "code"], suffix="_old")
    assert (changed["pred_1d"] != changed["pred_1d_old"]).any()  # the perturbation reached the model
    if where == "train_end":
        # The old row-level split (purged by the stock's next 20 rows) moves with the deletion: this test catches it.
        reach = label_reach(PARAMS)
        old, new = split_codes(tiny.panel, tiny.fold, reach), split_codes(panel2, tiny.fold, reach)
        n_before = tiny.panel.filter(before).height
        assert not np.array_equal(old[:n_before], new[:n_before])


# ------------------------------------------------------------ walk-forward columns


def test_walk_forward_columns_are_the_test_rows_of_the_core_predictions(tiny, exported, oos):
    wf = exported.filter(pl.col("oos_fold").is_not_null())
    test = oos.filter(pl.col("split") == "test")
    assert wf.height == test.height and set(wf["split"].unique()) == {"test"} and not wf["in_sample"].any()
    joined = wf.join(test, on=["date", "code"])
    for h in HORIZONS:
        for p in ("pred", "p_up", "p_signal"):
            assert (joined[f"oos_{p}_{h}d"] == joined[f"{p}_{h}d_right"]).all()
    assert (joined["oos_p_signal"] == joined["p_signal_1d_right"]).all()  # train.select_horizon = 1
    # Val rows were used to early-stop their fold's model: never walk-forward.
    assert exported.filter(pl.col("split") == "val")["oos_pred_1d"].null_count() == exported.filter(pl.col("split") == "val").height
    assert observation_columns(exported.columns, "oos")[:2] == ["oos_pred_1d", "oos_pred_5d"]


def test_predictions_from_another_run_are_refused(tiny, prices, checkpoint, oos):
    short = oos.filter(pl.col("date") < pl.lit(tiny.fold.test[1]))
    with pytest.raises(UserError, match="different runs"):
        run_export(tiny, prices, checkpoint, oos=short)
    with pytest.raises(UserError, match="missing columns"):
        run_export(tiny, prices, checkpoint, oos=oos.drop("pred_5d"))


# ------------------------------------------------------------ devices


class MetaModel(torch.nn.Module):
    """Parameters on the meta device; checks that the batch was moved there, answers on the CPU (meta has no values)."""

    def __init__(self, hidden: int, n_horizons: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.empty(1, device="meta"))
        self.hidden, self.n_horizons, self.nodes = hidden, n_horizons, 0

    def forward(self, batch):
        assert batch.x_seq.is_meta and batch.edge_index.is_meta, "the export did not move the batch to the model's device"
        n = batch.x_seq.shape[0]
        self.nodes += n
        z = torch.arange(n, dtype=torch.float32)[:, None]  # position in the batch, to check the row alignment
        return {"emb": z.expand(n, self.hidden), "reg": z.expand(n, self.n_horizons),
                "sig_logit": torch.zeros(n, self.n_horizons), "dir_logit": torch.zeros(n, self.n_horizons)}


def test_export_batching_on_another_device_reads_nothing_back_from_it(tiny, prices, checkpoint):
    """``Data.to`` moves a batch in place: rows read after the move would be device tensors (the CUDA crash)."""
    cols = feature_columns(tiny.panel)
    data = CoreDayData(tiny.index, tiny.panel, np.zeros(tiny.panel.height, dtype=np.int8), cols, HORIZONS, PARAMS.train.seq_len)
    model = MetaModel(PARAMS.train.hidden, len(HORIZONS))
    dates = tiny.index.dates[:40]
    out = model_outputs(model, data, dates, batch_days=16)
    expected = np.concatenate([data.batch(dates[lo: lo + 16]).row.numpy() for lo in range(0, dates.size, 16)])
    np.testing.assert_array_equal(out["row"], expected)
    assert model.nodes == expected.size and out["emb"].shape == (expected.size, PARAMS.train.hidden)
    full = run_export(tiny, prices, checkpoint, model=MetaModel(PARAMS.train.hidden, len(HORIZONS)))
    assert full.select("date", "code").equals(tiny.panel.select("date", "code").sort("date", "code"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_export_on_cuda_matches_the_cpu(tiny, prices, checkpoint, oos, exported):
    model, meta = load_core(checkpoint, "cuda")
    on_gpu = export_features(model, tiny.panel, prices, tiny.index, tiny.fold, PARAMS, meta["features"], 16, progress=False, oos=oos)
    obs = observation_columns(exported.columns)
    assert on_gpu.drop(obs).equals(exported.drop(obs))
    np.testing.assert_allclose(on_gpu.select(obs).to_numpy(), exported.select(obs).to_numpy(), atol=1e-3)


# ------------------------------------------------------------ checkpoints


def test_a_checkpoint_carrying_a_pickled_callable_is_refused_at_export(tiny, checkpoint, tmp_path):
    bad = tmp_path / "fold0"
    bad.mkdir()
    (bad / "model.json").write_bytes((checkpoint / "model.json").read_bytes())
    marker = tmp_path / "pwned"
    state = torch.load(checkpoint / "best.pt", weights_only=True)
    torch.save({**state, "hook": Smuggler(marker)}, bad / "best.pt")
    with pytest.raises(CheckpointError, match=re.escape(f"{bad / 'best.pt'}: refused to load")):
        load_core(bad)
    assert not marker.exists()
    torch.save({"weights": state["model"]}, bad / "best.pt")  # safe to load, but not a core checkpoint
    with pytest.raises(CheckpointError, match="not a core checkpoint"):
        load_core(bad)


# ------------------------------------------------------------ readers


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
        assert rl.mask[t, n] and rl.in_sample[t] == r["in_sample"]
        np.testing.assert_allclose(rl.obs[t, n], [r[c] for c in rl.columns], rtol=1e-6)
        assert rl.close[t, n] == r["close"]
    assert (rl.obs[~rl.mask] == 0).all() and np.isnan(rl.close[~rl.mask]).all()
    fit_on = load_rl_features(path, in_sample=False)
    assert not fit_on.in_sample.any() and fit_on.dates.min() == holes.filter(~pl.col("in_sample"))["date"].min()
    assert load_rl_features(path, split="train").dates.max() < load_rl_features(path, split="test").dates.min()
    # An earlier fold's test window over the exported fold's val window: in-sample for the model columns only.
    val = pl.col("split") == "val"
    two_folds = holes.with_columns(
        pl.when(val).then(pl.lit(-1, dtype=pl.Int32)).otherwise(pl.col("oos_fold")).alias("oos_fold"),
        *(pl.when(val).then(pl.col(c.removeprefix("oos_"))).otherwise(pl.col(c)).alias(c) for c in observation_columns(holes.columns, "oos")),
    )
    wf = load_rl_features(write_parquet(two_folds, tmp_path / "wf.parquet"), source="oos")
    assert wf.columns == observation_columns(holes.columns, "oos") and not wf.in_sample.any()
    assert wf.dates.size == two_folds.filter(pl.col("oos_fold").is_not_null())["date"].n_unique() > holes.filter(val)["date"].n_unique()
    with pytest.raises(ValueError, match="out-of-sample on every row"):
        load_rl_features(path, source="oos", in_sample=True)
    with pytest.raises(ValueError, match="split must be one of"):
        load_rl_features(path, split="future")
    with pytest.raises(ValueError, match="no oos observation columns"):
        load_rl_features(write_parquet(holes.drop(observation_columns(holes.columns, "oos")), tmp_path / "no_wf.parquet"), source="oos")


# ------------------------------------------------------------ FinRL


@pytest.fixture(scope="module")
def market_events(exported):
    """An export where one stock lists inside the test window, one delists, one is suspended for 5 days."""
    test_dates = exported.filter(pl.col("split") == "test")["date"].unique().sort()
    codes = exported["code"].unique().sort()
    listing, delisting, suspended = codes[0], codes[1], codes[2]
    d, c = pl.col("date"), pl.col("code")
    drop = (
        ((c == listing) & (d < test_dates[20]))
        | ((c == delisting) & (d > test_dates[50]))
        | ((c == suspended) & d.is_between(test_dates[30], test_dates[34]))
    )
    return exported.filter(~drop), (listing, delisting, suspended), test_dates


def test_finrl_frame_has_no_price_before_a_listing_or_after_a_delisting(market_events, tmp_path):
    rows, (listing, delisting, suspended), test_dates = market_events
    path = write_parquet(rows, tmp_path / "rl.parquet")
    frame = finrl_frame(path, in_sample=False)
    tics = frame["tic"].unique().sort()
    assert listing not in tics and delisting not in tics  # not alive over the whole window
    assert frame.height == frame["date"].n_unique() * tics.len()
    for col in ("open", "high", "low", "close"):
        assert frame[col].null_count() == 0 and (frame[col] > 0).all()
    # The suspension: the last close before it (a past price), volume 0, untradable, indicators 0.
    halt = frame.filter(pl.col("tic") == suspended).filter(pl.col("date").is_between(test_dates[30], test_dates[34]))
    last_close = rows.filter((pl.col("code") == suspended) & (pl.col("date") == test_dates[29]))["close"][0]
    assert halt.height == 5 and (halt["close"] == last_close).all() and (halt["volume"] == 0).all()
    assert not halt["tradable"].any() and (halt["untradable"] == 1.0).all() and (halt["pred_1d"] == 0).all()
    traded = rows.filter(~pl.col("in_sample") & pl.col("code").is_in(tics.to_list()))
    assert frame["tradable"].sum() == traded.height
    # Nothing after a date changes the frame's rows up to it (the universe fixed, the future rewritten).
    cut = test_dates[40]
    later = rows.with_columns(pl.when(pl.col("date") > cut).then(pl.col(c) * 3).otherwise(pl.col(c)).alias(c) for c in ("close", "pred_1d"))
    frame2 = finrl_frame(write_parquet(later, tmp_path / "later.parquet"), in_sample=False)
    assert frame2.filter(pl.col("date") <= cut).equals(frame.filter(pl.col("date") <= cut))


def test_finrl_state_vector_is_built_the_way_stock_trading_env_does(market_events, tmp_path):
    pd = pytest.importorskip("pandas")
    rows, _, _ = market_events
    frame = finrl_frame(write_parquet(rows, tmp_path / "rl.parquet"), in_sample=False)
    kw = finrl_env_kwargs(frame)
    n, tech = kw["stock_dim"], kw["tech_indicator_list"]
    assert tech[0] == "untradable" and tech[1:] == observation_columns(frame.columns)
    assert kw["state_space"] == 1 + 2 * n + len(tech) * n and kw["action_space"] == n
    assert frame.columns[:9] == ["date", "tic", *MARKET, "tradable", "untradable"]
    df = frame.to_pandas()
    df.index = df["date"].factorize()[0]  # FinRL's day index
    order = None
    for day in range(df.index.max() + 1):
        data = df.loc[day, :]  # StockTradingEnv: self.data = self.df.loc[self.day, :]
        # _initiate_state: cash + closes + holdings + every indicator over every stock.
        state = [1e6] + data.close.values.tolist() + [0] * n + sum((data[t].values.tolist() for t in tech), [])
        assert len(state) == kw["state_space"] and np.isfinite(state).all()
        order = data.tic.tolist() if order is None else order
        assert data.tic.tolist() == order  # same tickers, same order, every day
        # _buy_stock / _sell_stock skip stock i when state[1 + 2N + i] (the first indicator) is true.
        np.testing.assert_array_equal(np.array(state[1 + 2 * n: 1 + 3 * n]) == 1.0, ~data.tradable.values)
        assert all(p > 0 for p in state[1: 1 + n])


def test_finrl_frame_of_the_walk_forward_columns(exported, tmp_path):
    frame = finrl_frame(write_parquet(exported, tmp_path / "rl.parquet"), source="oos")
    kw = finrl_env_kwargs(frame)
    assert kw["tech_indicator_list"][1:] == observation_columns(exported.columns, "oos")
    assert frame["date"].min() == exported.filter(pl.col("oos_fold").is_not_null())["date"].min()


# ------------------------------------------------------------ schema


def test_schema_names_every_column_which_rows_to_fit_on_and_the_checkpoint(exported, checkpoint, tiny):
    s = schema(exported, PARAMS, tiny.fold, checkpoint / "best.pt")
    assert [c["name"] for c in s["columns"]] == exported.columns
    assert all(c["meaning"] for c in s["columns"])
    assert s["embedding_size"] == PARAMS.train.hidden and s["horizons"] == HORIZONS
    assert s["in_sample"]["first_out_of_sample_date"] == str(tiny.fold.test[0])
    assert "in_sample == false" in s["usage"]["fit_on"] and "in_sample == true" in s["usage"]["never_trust"]
    assert s["usage"]["oos_columns"] == observation_columns(exported.columns, "oos")
    assert s["oos"]["folds"]["0"]["first"] == str(exported.filter(pl.col("split") == "test")["date"].min())
    assert set(s["diagnostics"]["rank_ic_pred_1d_vs_ret_1d"]) == {"train", "val", "test"}
    assert len(s["checkpoint"]["sha256"]) == 64
    assert s["params"]["train"]["lr"] == PARAMS.train.lr
    json.dumps(s)  # serializable
    assert os.path.basename(s["checkpoint"]["path"]) == "best.pt"
