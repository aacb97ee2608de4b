"""Residual training targets (train.target) and regime-conditioned loss weights (train.regime_weighting)."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.runtime.config import ConfigError, params_from_dict
from alphagraph.runtime.errors import UserError
from alphagraph.graph.loader import GraphIndex
from alphagraph.models.core import CoreModel, core_fold_data, core_loss
from alphagraph.evaluation.regimes import REGIMES, market_state, regime_weights, row_weights
from alphagraph.features.residual import BETA_EXPOSURE, beta_neutral, sector_neutral
from alphagraph.train import TRAIN, seed_everything
from alphagraph.train.losses import MultiHorizonLoss
from tests.test_core import core_params
from tests.test_train_loop import tiny_params, tiny_pipeline

HORIZONS = [1, 5]


def label_panel(n_dates: int = 6, n_codes: int = 15, seed: int = 0) -> pl.DataFrame:
    """``date, code, y_1d, y_5d, f_beta_mkt_60``: labels loading on the exposure, a few nulls."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-01") + np.arange(n_dates)
    frame = pl.DataFrame({"date": np.repeat(dates, n_codes).astype("datetime64[D]"), "code": [f"S{i:02d}" for i in range(n_codes)] * n_dates})
    x = rng.normal(size=frame.height)
    y = 0.8 * x[:, None] + rng.normal(size=(frame.height, 2))
    y[rng.random(y.shape) < 0.1] = np.nan
    return frame.with_columns(
        y_1d=pl.Series(y[:, 0], dtype=pl.Float32).fill_nan(None), y_5d=pl.Series(y[:, 1], dtype=pl.Float32).fill_nan(None),
        f_beta_mkt_60=pl.Series(x, dtype=pl.Float32),
    )


# ------------------------------------------------------------------ residual targets


def test_sector_neutral_labels_have_zero_sector_means_per_date():
    panel = label_panel()
    codes = panel["code"].unique().sort().to_list()
    universe = pl.DataFrame({
        "code": codes + ["S00"],
        "sector": [f"sec{i % 3}" for i in range(len(codes) - 1)] + [None, "sec9"],  # S14 has no sector
        # S00 moves from its sector to sec9 on the fourth date (point-in-time rows).
        "start": [None] * len(codes) + [dt.date(2020, 1, 4)],
        "end": [dt.date(2020, 1, 3)] + [None] * len(codes),
    }, schema={"code": pl.Utf8, "sector": pl.Utf8, "start": pl.Date, "end": pl.Date})
    res = sector_neutral(panel, universe, HORIZONS)
    expected_sector = (
        panel.join(pl.DataFrame({"code": codes, "s": [f"sec{i % 3}" for i in range(len(codes) - 1)] + ["unknown"]}), on="code")
        .select(pl.when((pl.col("code") == "S00") & (pl.col("date") >= dt.date(2020, 1, 4))).then(pl.lit("sec9")).otherwise("s"))
        .to_series()
    )
    out = panel.with_columns(sector=expected_sector, r1=pl.Series(res[:, 0]).fill_nan(None), r5=pl.Series(res[:, 1]).fill_nan(None))
    assert out["r1"].null_count() == panel["y_1d"].null_count()  # a null label stays null (masked in the loss)
    means = out.group_by("date", "sector").agg(pl.col("r1", "r5").mean(), pl.col("y_1d").mean().alias("y"), pl.len())
    assert means["r1"].drop_nulls().abs().max() < 1e-5 and means["r5"].drop_nulls().abs().max() < 1e-5
    assert means.filter(pl.len() > 1)["y"].drop_nulls().abs().max() > 0.1  # the raw labels did have sector means
    assert means.filter(pl.col("sector") == "sec9").height == 3  # S00's new sector, dates 4-6 only


def test_sector_neutral_without_sectors_is_a_user_error():
    panel = label_panel()
    unknown = pl.DataFrame({"code": panel["code"].unique(), "sector": "unknown"})  # ingest's universe without a file
    with pytest.raises(UserError, match="train.target: sector_neutral needs sectors"):
        sector_neutral(panel, unknown, HORIZONS)


def test_beta_neutral_residuals_are_orthogonal_to_the_exposure_per_date():
    panel = label_panel()
    res = beta_neutral(panel, HORIZONS)
    x = panel[BETA_EXPOSURE].to_numpy().astype(np.float64)
    day = panel["date"].to_physical().to_numpy()
    for j, col in enumerate(["y_1d", "y_5d"]):
        y = panel[col].to_numpy().astype(np.float64)
        ok = np.isfinite(y)
        assert np.array_equal(np.isfinite(res[:, j]), ok)
        for d in np.unique(day):
            sel = ok & (day == d)
            r = res[sel, j].astype(np.float64)
            assert abs(r.sum()) < 1e-4 and abs((r * x[sel]).sum()) < 1e-4
            assert abs(np.corrcoef(y[sel], x[sel])[0, 1]) > 0.3  # the raw labels did load on it


def test_beta_neutral_needs_its_exposure_column():
    with pytest.raises(UserError, match="f_beta_mkt_60"):
        beta_neutral(label_panel().drop(BETA_EXPOSURE), HORIZONS)


# ------------------------------------------------------------------ regimes


def synthetic_prices(n_dates: int = 160, n_codes: int = 12, seed: int = 0) -> pl.DataFrame:
    """Closes of a one-factor market whose volatility and co-movement change over time."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-01") + np.arange(n_dates)
    t = np.arange(n_dates)
    scale = np.where(t % 60 < 30, 0.005, 0.02)  # the market's volatility
    idio = np.where(t % 42 < 21, 0.5, 3.0)  # idiosyncratic / market: the stocks' co-movement
    ret = scale[:, None] * (rng.normal(size=(n_dates, 1)) + idio[:, None] * rng.normal(size=(n_dates, n_codes)))
    close = 50 * np.exp(np.cumsum(ret, axis=0))
    frame = pl.DataFrame({
        "date": np.repeat(dates, n_codes).astype("datetime64[D]"), "code": [f"S{i:02d}" for i in range(n_codes)] * n_dates, "close": close.reshape(-1),
    })
    return frame.filter(~((pl.col("code") == "S03") & pl.col("date").is_between(dates[30].item(), dates[33].item())))  # a suspension


def test_regime_weights_give_each_training_regime_equal_weight():
    prices = synthetic_prices()
    state = market_state(prices, 20)
    dates = state["date"].to_numpy()
    train = dates[:110]
    w = regime_weights(state, train, 20).with_columns(train=pl.col("date").is_in(pl.Series(train).cast(pl.Date).implode()))
    tw = w.filter(pl.col("train"))
    assert tw["weight"].mean() == pytest.approx(1.0)
    per = tw.filter(pl.col("regime").is_not_null()).group_by("regime").agg(pl.col("weight").sum(), pl.len())
    assert per.height == len(REGIMES) and per["len"].n_unique() > 1  # unbalanced to start with
    np.testing.assert_allclose(per["weight"].to_numpy(), per["weight"][0])
    assert (w.filter(~pl.col("train") | pl.col("regime").is_null())["weight"] == 1.0).all()
    assert tw.filter(pl.col("regime").is_null()).height == 20  # the first window: no statistics yet


def test_regime_weights_of_training_dates_ignore_later_prices():
    """Leakage: prices after the training window (changed, dropped, new stocks) do not move a training date's regime or weight."""
    prices = synthetic_prices()
    dates = prices["date"].unique().sort()
    train, cutoff = dates[:110].to_numpy(), dates[109]
    later = pl.col("date") > cutoff
    rng = np.random.default_rng(1)
    shocked = prices.with_columns(
        pl.when(later).then(pl.col("close") * pl.Series(np.exp(rng.normal(0, 0.05, prices.height)))).otherwise("close")
    ).filter(~(later & (pl.col("code") == "S05")))
    shocked = pl.concat([shocked, prices.filter(later & (pl.col("code") == "S01")).with_columns(code=pl.lit("A99"))])  # sorts first
    a, b = market_state(prices, 20), market_state(shocked, 20)
    past = pl.col("date") <= cutoff
    assert a.filter(past).equals(b.filter(past))
    assert not a.filter(~past).equals(b.filter(~past))  # the change did reach the later statistics
    wa, wb = regime_weights(a, train, 20).filter(past), regime_weights(b, train, 20).filter(past)
    assert wa.equals(wb)


def test_regime_window_is_checked():
    with pytest.raises(ConfigError, match="train.regime_window"):
        params_from_dict({"train": {"regime_window": 1}})
    with pytest.raises(ConfigError, match="train.target"):
        params_from_dict({"train": {"target": "industry_neutral"}})


# ------------------------------------------------------------------ the loss


def fake_batch(n_days: int = 2, per_day: int = 6, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    n = n_days * per_day
    return SimpleNamespace(
        y=torch.randn(n, 2, generator=g), y_dir=(torch.rand(n, 2, generator=g) > 0.5).float(),
        batch=torch.arange(n_days).repeat_interleave(per_day), num_graphs=n_days,
    )


def test_node_weights_scale_every_term_and_weigh_days():
    batch = fake_batch()
    out = {"reg": torch.randn(12, 2, generator=torch.Generator().manual_seed(1)), "dir_logit": torch.randn(12, 2)}
    mask = torch.ones(12, dtype=torch.bool)
    for rank in ("pearson", "soft"):
        loss = MultiHorizonLoss([1.0, 0.5], dir_weight=0.3, rank_weight=0.5, rank=rank)
        plain = float(loss(out, batch, mask)[0])
        batch.loss_weight = torch.ones(12)
        assert float(loss(out, batch, mask)[0]) == pytest.approx(plain, rel=1e-6)
        batch.loss_weight = torch.full((12,), 2.5)
        assert float(loss(out, batch, mask)[0]) == pytest.approx(2.5 * plain, rel=1e-6)

        def rank_part(b, o, m):  # horizon 1 only: (mse + rank) - mse
            with_rank = MultiHorizonLoss([1.0, 0.0], rank_weight=1.0, rank=rank)(o, b, m)[0]
            return float(with_rank) - float(MultiHorizonLoss([1.0, 0.0])(o, b, m)[0])

        day0 = SimpleNamespace(y=batch.y[:6], batch=batch.batch[:6], num_graphs=1)
        batch.loss_weight = torch.tensor([1.0] * 6 + [0.0] * 6)  # day 1 weighs nothing: half of day 0's (1 - corr)
        assert rank_part(batch, out, mask) == pytest.approx(rank_part(day0, {"reg": out["reg"][:6]}, mask[:6]) / 2, rel=1e-5)
        del batch.loss_weight


@pytest.fixture(scope="module")
def tiny():
    return tiny_pipeline()


@pytest.fixture(scope="module")
def raw():
    from alphagraph.data.ingest import ingest

    return ingest(tiny_params())


def test_each_switch_reaches_the_loss_and_off_changes_nothing(tiny, raw):
    base = core_params()
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, base)
    days = data.dates("train")[100:102]
    b = data.batch(days)
    assert getattr(b, "y_loss", None) is None and getattr(b, "loss_weight", None) is None  # off: the batch as before
    seed_everything(0)
    model = CoreModel.from_config(base.train, data.feature_cols, tiny.index.relations, len(data.horizons))
    mask = b.split == TRAIN

    def loss_and_grad(params, d):
        model.zero_grad()
        batch = d.batch(days)
        loss = core_loss(params.train, d)(model(batch), batch, mask)[0]
        loss.backward()
        return float(loss.detach()), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]).clone()

    l0, g0 = loss_and_grad(base, data)
    panel = tiny.panel.with_columns(pl.col("f_beta_mkt_20").alias(BETA_EXPOSURE))  # the tiny market has no 60-day window
    beta_index = GraphIndex(tiny.edges, panel, relations=tiny.params.graph.relations)
    cases = {
        "sector_neutral": (core_params(target="sector_neutral"), tiny.panel, tiny.index),
        "beta_neutral": (core_params(target="beta_neutral"), panel, beta_index),
        "regime_weighting": (core_params(regime_weighting=True, regime_window=20), tiny.panel, tiny.index),
    }
    for name, (params, p, index) in cases.items():
        d = core_fold_data(p, index, tiny.fold, params, universe=raw.universe, prices=raw.prices)
        batch = d.batch(days)
        torch.testing.assert_close(batch.y, b.y, equal_nan=True)  # the metrics' labels stay raw
        if name == "regime_weighting":
            w = batch.loss_weight[mask]
            assert not torch.allclose(w, torch.ones_like(w)) and (w > 0).all()
        else:
            changed = torch.isfinite(batch.y) & ((batch.y_loss - batch.y).abs() > 1e-3)
            assert changed.float().mean() > 0.5, name
        if name == "beta_neutral":
            continue  # its panel has one more feature column: another model, so no loss comparison
        l1, g1 = loss_and_grad(params, d)
        assert l1 != pytest.approx(l0) and not torch.allclose(g1, g0), name
    with pytest.raises(UserError, match=BETA_EXPOSURE):
        core_fold_data(tiny.panel, tiny.index, tiny.fold, core_params(target="beta_neutral"))
    # Neighbor sampling rebuilds the batch: targets and weights must follow the kept nodes' rows.
    params = core_params(target="sector_neutral", regime_weighting=True, regime_window=20, sampling="neighbor", fanouts=[2, 2])
    d = core_fold_data(tiny.panel, tiny.index, tiny.fold, params, universe=raw.universe, prices=raw.prices)
    sampled = d.batch(days)
    assert sampled.edge_index.size(1) < b.edge_index.size(1)
    rows = sampled.row.numpy()
    expected = sector_neutral(tiny.panel, raw.universe, tiny.params.features.horizons)[rows]
    torch.testing.assert_close(sampled.y_loss, torch.from_numpy(expected), equal_nan=True)
    weights = row_weights(tiny.panel, raw.prices, d.dates("train"), 20)[rows]
    torch.testing.assert_close(sampled.loss_weight, torch.from_numpy(weights))
