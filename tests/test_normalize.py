import datetime as dt

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagraph.runtime.config import NormalizeConfig
from alphagraph.features.normalize import MISSING_SHARE, normalize_panel


def random_panel(seed: int, n_dates=30, n_stocks=40, n_feats=5, missing=0.1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_dates * n_stocks
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in np.repeat(np.arange(n_dates), n_stocks)]
    codes = [f"S{c:03d}" for c in np.tile(np.arange(n_stocks), n_dates)]
    X = rng.standard_t(3, size=(n, n_feats)) * rng.uniform(0.1, 100, size=n_feats)
    X[rng.random(X.shape) < missing] = np.nan
    X[0, 0] = np.inf
    ret = rng.normal(0, 0.02, n)
    ret[rng.random(n) < 0.05] = np.nan
    cols = {f"f_{i}": pl.Series(X[:, i]).fill_nan(None) for i in range(n_feats)}
    return pl.DataFrame({"date": dates, "code": codes, **cols, "ret_1d": pl.Series(ret).fill_nan(None)})


def test_robust_zscore_per_date():
    panel = random_panel(0)
    out, stats = normalize_panel(panel, NormalizeConfig(clip=5.0, min_stocks=10), [1])
    assert stats["rows"] == panel.height and stats["dates_dropped_min_stocks"] == 0
    for c in ["f_1", "f_2", "f_3"]:
        raw = panel.with_columns(pl.col(c).fill_nan(None))
        for (d,), grp in raw.group_by("date"):
            x = grp[c].drop_nulls().to_numpy()
            med = np.median(x)
            mad = 1.4826 * np.median(np.abs(x - med))
            got = out.filter(pl.col("date") == d).join(grp.select("code", c), on="code", suffix="_raw")
            got = got.filter(pl.col(f"{c}_raw").is_not_null())
            expect = np.clip((got[f"{c}_raw"].to_numpy() - med) / mad, -5, 5)
            np.testing.assert_allclose(got[c].to_numpy(), expect, rtol=1e-5, atol=1e-5)
    assert out["f_0"].dtype == pl.Float32 and out["y_1d"].dtype == pl.Float32
    assert out[MISSING_SHARE].max() > 0


def test_labels_zscore_and_rankgauss():
    panel = random_panel(1)
    z, _ = normalize_panel(panel, NormalizeConfig(label="zscore"), [1])
    g, _ = normalize_panel(panel, NormalizeConfig(label="rankgauss"), [1])
    per_date = z.group_by("date").agg(m=pl.col("y_1d").mean(), s=pl.col("y_1d").std())
    assert per_date["m"].abs().max() < 1e-5
    assert (per_date["s"] - 1).abs().max() < 1e-4
    # Rank-gauss keeps order within a date and is symmetric around 0.
    for (_, grp) in list(g.group_by("date"))[:5]:
        grp = grp.drop_nulls("y_1d").sort("ret_1d")
        assert np.all(np.diff(grp["y_1d"].to_numpy()) > 0)
        assert abs(grp["y_1d"].median()) < 0.1
    # Labels are null exactly where the raw return is.
    assert (z["y_1d"].is_null() == z["ret_1d"].is_null()).all()
    assert (g["y_1d"].is_null() == g["ret_1d"].is_null()).all()


def test_small_dates_dropped_and_counted():
    panel = random_panel(2, n_stocks=40)
    thin_day = panel["date"].unique().sort()[3]
    panel = panel.filter((pl.col("date") != thin_day) | (pl.col("code") < "S005"))
    out, stats = normalize_panel(panel, NormalizeConfig(min_stocks=10), [1])
    assert thin_day not in out["date"].to_list()
    assert stats["dates_dropped_min_stocks"] == 1 and stats["rows_dropped_min_stocks"] == 5


def test_missing_target_column_is_a_clear_error():
    with pytest.raises(KeyError, match="ret_5d"):
        normalize_panel(random_panel(3), NormalizeConfig(), [1, 5])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_stocks=st.integers(2, 30),
    missing=st.floats(0, 0.9),
    clip=st.floats(0.5, 10),
)
def test_property_finite_clipped_centered(seed, n_stocks, missing, clip):
    panel = random_panel(seed, n_dates=4, n_stocks=n_stocks, n_feats=3, missing=missing)
    out, _ = normalize_panel(panel, NormalizeConfig(clip=clip, min_stocks=1), [1])
    X = out.select("f_0", "f_1", "f_2").to_numpy()
    assert np.isfinite(X).all()
    assert np.abs(X).max() <= clip + 1e-6
    med = out.group_by("date").agg(pl.col("f_1").median())["f_1"].abs()
    # The per-date median of a robustly centred column is 0 unless fill-with-0 moved it (it can't).
    assert med.max() < 1e-6


@pytest.mark.parametrize("mode", ["perturb", "truncate"])
def test_no_leakage_through_features_and_normalize(mode):
    """Change or delete every price after t: the normalized panel dated <= t is identical."""
    from alphagraph.runtime.config import FeaturesConfig
    from alphagraph.features.panel import build_panel
    from tests.leakage import assert_unchanged_through, perturb_after, toy_prices, truncate_after

    prices, universe = toy_prices(n_stocks=12, n_days=200, seed=3)
    cfg = FeaturesConfig(windows=[5, 10, 20], horizons=[1, 5])
    norm = NormalizeConfig(min_stocks=3)
    targets = [f"{k}_{h}d" for k in ("ret", "dir", "sig", "y") for h in (1, 5)]

    def run(p):
        return normalize_panel(build_panel(p, universe, cfg)[0], norm, [1, 5])[0]

    base = run(prices)
    for t in prices["date"].unique().sort()[[60, 140]]:
        changed = perturb_after(prices, t, seed=7) if mode == "perturb" else truncate_after(prices, t)
        # Labels look forward by design (and rank-based labels move with them); features may not.
        assert_unchanged_through(base, run(changed), t, exclude=targets)


def _thin_history(n_thin: int) -> pl.DataFrame:
    """30 dates x 40 stocks whose first ``n_thin`` dates hold 5 stocks only (a short listing history)."""
    panel = random_panel(4, n_stocks=40)
    thin = panel["date"].unique().sort()[:n_thin]
    return panel.filter(~pl.col("date").is_in(thin.implode()) | (pl.col("code") < "S005"))


def test_dropping_over_a_fifth_of_the_dates_warns_once_with_counts_reason_and_param(caplog, tmp_path):
    from alphagraph.features.normalize import DROP_WARN_SHARE, normalize_file

    panel = _thin_history(24)  # 24 of 30 dates: 80%
    cfg = NormalizeConfig(min_stocks=10)
    with caplog.at_level("WARNING", logger="alphagraph.features.normalize"):
        out, stats = normalize_panel(panel, cfg, [1])
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    first, last = out["date"].min(), out["date"].max()
    assert record.getMessage() == (
        f"dropped 24 of 30 dates (80%; 120 of 360 rows, 33%) with fewer than normalize.min_stocks = 10 stocks:"
        f" the panel kept spans {first} to {last}; lower normalize.min_stocks or add stocks to keep them"
    )
    assert "\n" not in record.getMessage() and stats["dates_dropped_min_stocks"] == 24
    # The stage's streaming path says the same.
    src = tmp_path / "features.parquet"
    panel.sort("date", "code").write_parquet(src)
    caplog.clear()
    with caplog.at_level("WARNING", logger="alphagraph.features.normalize"):
        normalize_file(src, tmp_path / "normalized.parquet", cfg, [1], block_rows=100)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [record.getMessage()]
    assert DROP_WARN_SHARE == 0.2


def test_a_small_drop_is_no_warning(caplog):
    with caplog.at_level("WARNING", logger="alphagraph.features.normalize"):
        _, stats = normalize_panel(_thin_history(3), NormalizeConfig(min_stocks=10), [1])  # 10% of the dates
    assert stats["dates_dropped_min_stocks"] == 3
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
