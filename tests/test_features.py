"""Features: names, families, a plain-loop reference for every family, and leakage."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict

import numpy as np
import polars as pl
import pytest
from numpy.lib.stride_tricks import sliding_window_view as swv
from scipy.stats import percentileofscore

from alphagraph.runtime.config import FeaturesConfig
from alphagraph.features import FAMILIES, compute_features, feature_families, feature_names
from tests.leakage import assert_unchanged_through, perturb_after, toy_prices, truncate_after

EPS = 1e-12
# windows: 2 (edge case), 7 (sorting network), 20 (np.sort), 60 (spans two 64-row blocks)
CFG = FeaturesConfig(windows=[2, 7, 20, 60])


def awkward_prices() -> tuple[pl.DataFrame, pl.DataFrame]:
    """toy_prices plus a constant-price stretch and zero-volume days (stock C05)."""
    prices, universe = toy_prices(n_stocks=8, n_days=260, seed=3)
    day = pl.col("date").rank("dense").over("code")
    flat = (pl.col("code") == "C05") & day.is_between(130, 160)
    zero = (pl.col("code") == "C05") & day.is_between(200, 207)
    prices = prices.with_columns(
        [pl.when(flat).then(pl.lit(25.0)).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")]
        + [pl.when(flat).then(pl.lit(1000.0)).when(zero).then(pl.lit(0.0)).otherwise(pl.col("volume")).alias("volume")]
    )
    return prices, universe


# ------------------------------------------------------------------ plain reference


def _ema(x: np.ndarray, alpha: float, start: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) > start:
        y = x[start]
        out[start] = y
        for i in range(start + 1, len(x)):
            y = alpha * x[i] + (1 - alpha) * y
            out[i] = y
    return out


def _corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair; NaN for a constant or non-finite row."""
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = x - x.mean(axis=1, keepdims=True)
        yc = y - y.mean(axis=1, keepdims=True)
        r = (xc * yc).sum(axis=1) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1) & (np.ptp(x, axis=1) > 0) & (np.ptp(y, axis=1) > 0)
    return np.where(ok, r, np.nan)


def reference(prices: pl.DataFrame, universe: pl.DataFrame, windows: list[int]) -> dict[str, np.ndarray]:
    """Every feature straight from its definition: explicit windows of each stock's own rows."""
    n = prices.height
    out: dict[str, np.ndarray] = defaultdict(lambda: np.full(n, np.nan))
    pdf = prices.to_pandas()
    pdf["sector"] = pdf["code"].map(dict(zip(universe["code"], universe["sector"])))
    ks = sorted({1, *windows})
    by_stock = [np.asarray(ix) for ix in pdf.groupby("code", sort=False).indices.values()]  # rows in date order
    for k in ks:
        r = np.full(n, np.nan)
        for rows in by_stock:
            c = pdf["close"].to_numpy()[rows]
            r[rows[k:]] = c[k:] / c[:-k] - 1
        pdf[f"ret_{k}"] = r
    mkt = pdf.groupby("date")["ret_1"].transform("mean").to_numpy()  # the market's daily return
    for k in ks:
        rk = pdf[f"ret_{k}"]
        out[f"f_mkt_excess_ret_{k}"] = (rk - pdf.groupby("date")[f"ret_{k}"].transform("mean")).to_numpy()
        out[f"f_sector_excess_ret_{k}"] = (rk - pdf.groupby(["date", "sector"])[f"ret_{k}"].transform("mean")).to_numpy()

    for rows in by_stock:
        o, h, l, c, v = (pdf[x].to_numpy()[rows] for x in ("open", "high", "low", "close", "volume"))
        m = mkt[rows]
        n_rows = len(rows)
        rng_, top, bot = h - l + EPS, np.maximum(o, c), np.minimum(o, c)
        for name, val in {
            "f_kmid": (c - o) / o, "f_klen": (h - l) / o, "f_kmid2": (c - o) / rng_,
            "f_kup": (h - top) / o, "f_kup2": (h - top) / rng_, "f_klow": (bot - l) / o,
            "f_klow2": (bot - l) / rng_, "f_ksft": (2 * c - h - l) / o, "f_ksft2": (2 * c - h - l) / rng_,
            "f_open0": o / c, "f_high0": h / c, "f_low0": l / c, "f_typical0": (h + l + c) / 3 / c,
        }.items():
            out[name][rows] = val
        dc, dv = np.diff(c), np.diff(v)  # dc[j - 1] = c[j] - c[j - 1]
        r = c[1:] / c[:-1] - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            dlogv = np.log(v[1:] / v[:-1] + 1)
        for d in windows:
            if n_rows >= d:  # windows of levels: rows i-d+1..i, for i >= d-1
                at = rows[d - 1 :]
                W, Hw, Lw, Vw = (swv(x, d) for x in (c, h, l, v))
                ci, vi = c[d - 1 :], v[d - 1 :]
                k = np.arange(d, dtype=float)
                kc = k - k.mean()
                wm = W.mean(axis=1)
                slope = ((W - wm[:, None]) * kc).sum(axis=1) / (kc**2).sum()
                fitted_last = wm + slope * kc[-1]
                hmax, lmin = Hw.max(axis=1), Lw.min(axis=1)
                out[f"f_ma_{d}"][at] = wm / ci
                out[f"f_std_{d}"][at] = W.std(axis=1, ddof=1) / ci
                out[f"f_slope_{d}"][at] = slope / ci
                out[f"f_rsqr_{d}"][at] = _corr(np.broadcast_to(k, W.shape), W) ** 2
                out[f"f_resi_{d}"][at] = (ci - fitted_last) / ci
                out[f"f_max_{d}"][at] = hmax / ci
                out[f"f_min_{d}"][at] = lmin / ci
                out[f"f_qtlu_{d}"][at] = np.quantile(W, 0.8, axis=1) / ci
                out[f"f_qtld_{d}"][at] = np.quantile(W, 0.2, axis=1) / ci
                out[f"f_rank_{d}"][at] = [percentileofscore(w, w[-1], kind="rank") / 100 for w in W]
                out[f"f_rsv_{d}"][at] = (ci - lmin) / (hmax - lmin + EPS)
                imax, imin = Hw.argmax(axis=1), Lw.argmin(axis=1)
                out[f"f_imax_{d}"][at] = (imax + 1) / d
                out[f"f_imin_{d}"][at] = (imin + 1) / d
                out[f"f_imxd_{d}"][at] = (imax - imin) / d
                out[f"f_corr_close_volume_{d}"][at] = _corr(W, np.log(Vw + 1))
                out[f"f_vma_{d}"][at] = Vw.mean(axis=1) / (vi + EPS)
                out[f"f_vstd_{d}"][at] = Vw.std(axis=1, ddof=1) / (vi + EPS)
            if n_rows > d:  # windows of returns / differences j = i-d+1..i (d of them), for i >= d
                at = rows[d:]
                ci, vi = c[d:], v[d:]
                R, DC, DV = swv(r, d), swv(dc, d), swv(dv, d)
                out[f"f_roc_{d}"][at] = c[:-d] / ci
                out[f"f_corr_ret_volchg_{d}"][at] = _corr(R, swv(dlogv, d))
                up, down = (DC > 0).mean(axis=1), (DC < 0).mean(axis=1)
                out[f"f_cntp_{d}"][at], out[f"f_cntn_{d}"][at], out[f"f_cntd_{d}"][at] = up, down, up - down
                for pre, X in (("", DC), ("v", DV)):
                    gain, loss = np.maximum(X, 0).sum(axis=1), np.maximum(-X, 0).sum(axis=1)
                    tot = np.abs(X).sum(axis=1) + EPS
                    out[f"f_{pre}sump_{d}"][at] = gain / tot
                    out[f"f_{pre}sumn_{d}"][at] = loss / tot
                    out[f"f_{pre}sumd_{d}"][at] = (gain - loss) / tot
                WV = np.abs(R) * swv(v[1:], d)
                out[f"f_wvma_{d}"][at] = WV.std(axis=1, ddof=1) / (WV.mean(axis=1) + EPS)
                with np.errstate(divide="ignore", invalid="ignore"):
                    out[f"f_abvol_{d}"][at] = vi / swv(v[:-1], d).mean(axis=1)
                out[f"f_rvol_{d}"][at] = R.std(axis=1, ddof=1)
                Mw = swv(m[1:], d)
                with np.errstate(divide="ignore", invalid="ignore"):
                    beta = ((R - R.mean(1, keepdims=True)) * (Mw - Mw.mean(1, keepdims=True))).sum(1) / (
                        (Mw - Mw.mean(1, keepdims=True)) ** 2
                    ).sum(1)
                ok = np.isfinite(Mw).all(axis=1) & (np.ptp(Mw, axis=1) > 0)
                out[f"f_beta_mkt_{d}"][at] = np.where(ok, beta, np.nan)
        if n_rows > 60:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["f_vol_regime_10_60"][rows[60:]] = swv(r, 10)[50:].std(axis=1, ddof=1) / swv(r, 60).std(
                    axis=1, ddof=1
                )
        dcn = np.r_[np.nan, dc]
        eg = _ema(np.maximum(dcn, 0), 1 / 14, 1)
        el = _ema(np.maximum(-dcn, 0), 1 / 14, 1)
        line = _ema(c, 2 / 13, 0) - _ema(c, 2 / 27, 0)
        sig = _ema(line, 2 / 10, 0)
        cp = np.r_[np.nan, c[:-1]]
        tr = np.maximum(h - l, np.maximum(np.abs(h - cp), np.abs(l - cp)))
        atr = _ema(tr, 1 / 14, 1)
        pos = np.arange(n_rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            out["f_rsi_14"][rows] = np.where(pos >= 14, eg / (eg + el), np.nan)
        out["f_macd"][rows] = np.where(pos >= 25, line / c, np.nan)
        out["f_macd_signal"][rows] = np.where(pos >= 33, sig / c, np.nan)
        out["f_macd_hist"][rows] = np.where(pos >= 33, (line - sig) / c, np.nan)
        out["f_atr_14"][rows] = np.where(pos >= 14, atr / c, np.nan)
    return {name: np.where(np.isfinite(a), a, np.nan) for name, a in out.items()}


def assert_close(name: str, got: np.ndarray, want: np.ndarray, rtol: float = 1e-6, atol: float = 1e-10) -> None:
    gn, wn = np.isnan(got), np.isnan(want)
    assert np.array_equal(gn, wn), f"{name}: null positions differ at rows {np.nonzero(gn != wn)[0][:10]}"
    g, w = got[~gn], want[~wn]
    bad = np.abs(g - w) > rtol * np.maximum(np.abs(g), np.abs(w)) + atol
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(f"{name}: {int(bad.sum())} values differ, e.g. {g[i]!r} vs reference {w[i]!r}")


@pytest.fixture(scope="module")
def awkward():
    return awkward_prices()


@pytest.fixture(scope="module")
def computed(awkward):
    prices, universe = awkward
    return compute_features(prices, universe, CFG, dtype=pl.Float64)


@pytest.fixture(scope="module")
def expected(awkward):
    prices, universe = awkward
    return reference(prices, universe, CFG.windows)


# ------------------------------------------------------------------------- names


def test_names_unique_prefixed_and_grouped():
    fams = feature_families(FeaturesConfig())
    names = feature_names(FeaturesConfig())
    assert list(fams) == list(FAMILIES)
    assert len(names) == len(set(names)) == 191
    assert all(n.startswith("f_") for n in names)
    alpha158 = [n for f in ("kbar", "price", "rolling", "volume") for n in fams[f] if not n.startswith("f_abvol")]
    assert len(alpha158) == 158
    assert sum(len(v) for v in fams.values()) == len(names)


def test_output_schema_rows_and_order(awkward, computed):
    prices, universe = awkward
    assert computed.columns == ["date", "code", *feature_names(CFG)]
    assert computed.select("date", "code").equals(prices.select("date", "code"))
    assert all(computed.schema[c] == pl.Float64 for c in feature_names(CFG))
    default = compute_features(prices, universe, FeaturesConfig(families=["kbar", "technical"]))
    assert default.columns == ["date", "code", *feature_families(FeaturesConfig(families=["kbar", "technical"]))["kbar"],
                               *feature_families(FeaturesConfig(families=["kbar", "technical"]))["technical"]]
    assert all(default.schema[c] == pl.Float32 for c in default.columns[2:])
    # no NaN or inf anywhere: missing is null
    feats = computed.select(feature_names(CFG))
    assert feats.select(pl.any_horizontal(pl.all().is_nan() | pl.all().is_infinite()).any()).item() is False


def test_unknown_family_rejected():
    with pytest.raises(ValueError, match="unknown family"):
        feature_families(FeaturesConfig(families=["kbar", "sentiment"]))


# ----------------------------------------------------------------- vs reference


@pytest.mark.parametrize("family", FAMILIES)
def test_family_matches_reference(family, computed, expected):
    for name in feature_families(CFG)[family]:
        assert_close(name, computed[name].fill_null(np.nan).to_numpy(), expected[name])


def test_min_periods_full_window_of_own_rows(computed):
    """The suspended stock C03: a window counts its own rows, gaps skipped."""
    s = computed.filter(pl.col("code") == "C03")
    assert s["f_ma_20"].head(19).null_count() == 19 and s["f_ma_20"][19] is not None
    assert s["f_roc_20"].head(20).null_count() == 20 and s["f_roc_20"][20] is not None
    assert s["f_rvol_60"].head(60).null_count() == 60 and s["f_rvol_60"][60] is not None
    short = computed.filter(pl.col("code") == "C04")  # 15 rows only
    assert short["f_ma_20"].null_count() == short.height


def test_constant_prices_and_zero_volume(computed):
    s = computed.filter(pl.col("code") == "C05").with_row_index("i")
    flat = s.filter(pl.col("i").is_between(150, 159))  # windows of 20 inside the flat rows 129..159
    assert (flat["f_std_20"] == 0).all()
    assert flat["f_corr_close_volume_20"].null_count() == flat.height
    assert flat["f_rsqr_20"].null_count() == flat.height
    # volume 0 for 8 days: log(v / v_prev + 1) is inf the day after -> windows holding it are null
    after = s.filter(pl.col("i").is_between(208, 213))
    assert after["f_corr_ret_volchg_7"].null_count() == after.height


# ------------------------------------------------------------------- robustness


def test_input_order_and_threads_do_not_matter(awkward, computed):
    prices, universe = awkward
    shuffled = prices.sample(fraction=1.0, shuffle=True, seed=7)
    out = compute_features(shuffled, universe, CFG, dtype=pl.Float64, n_threads=3)
    assert out.select("date", "code").equals(shuffled.select("date", "code"))
    assert_unchanged_through(computed, out, prices["date"].max())


def test_rejects_invalid_prices(awkward):
    prices, universe = awkward
    bad = prices.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(0.0).otherwise(pl.col("close")).alias("close"))
    with pytest.raises(ValueError, match="close"):
        compute_features(bad, universe, CFG)
    with pytest.raises(ValueError, match="unique"):
        compute_features(pl.concat([prices, prices.head(3)]), universe, CFG)


def test_stock_missing_from_universe_has_no_sector_feature(computed):
    s = computed.filter(pl.col("code") == "C07")
    assert s["f_sector_excess_ret_1"].null_count() == s.height
    assert s["f_mkt_excess_ret_1"].null_count() == 1


# ------------------------------------------------------ point-in-time universe

REL = FeaturesConfig(families=["relative"], windows=[5, 20])
SECTOR_COLS = [f"f_sector_excess_ret_{k}" for k in (1, 5, 20)]
MOVE = dt.date(2020, 5, 20)  # C00 moves from sector S0 to S1 on this day


def _dated(universe: pl.DataFrame) -> pl.DataFrame:
    return universe.with_columns(start=pl.lit(None, dtype=pl.Date), end=pl.lit(None, dtype=pl.Date))


def _moved(universe: pl.DataFrame, code: str, sector: str, d: dt.date) -> pl.DataFrame:
    """``universe`` where ``code`` keeps its row until the day before ``d`` and is in ``sector`` from ``d``."""
    uni = _dated(universe)
    old = uni.filter(pl.col("code") == code).with_columns(end=pl.lit(d - dt.timedelta(days=1)))
    new = uni.filter(pl.col("code") == code).with_columns(sector=pl.lit(sector), start=pl.lit(d))
    return pl.concat([uni.filter(pl.col("code") != code), new, old])  # the later row first: order must not matter


def test_static_universe_with_null_validity_columns_is_unchanged(awkward):
    prices, universe = awkward
    base = compute_features(prices, universe, REL)
    assert compute_features(prices, _dated(universe), REL).equals(base)


def test_sector_change_is_point_in_time(awkward):
    """Future perturbation of the universe: a sector change dated d leaves every row before d unchanged."""
    prices, universe = awkward
    assert universe.filter(pl.col("code") == "C00")["sector"].item() == "S0"
    base = compute_features(prices, universe, REL)
    moved = compute_features(prices, _moved(universe, "C00", "S1", MOVE), REL)
    assert_unchanged_through(base, moved, MOVE - dt.timedelta(days=1))
    # from d on, every row is what a universe with C00 in S1 all along gives (a date's
    # sector features use only that date's cross-section)
    always_s1 = compute_features(prices, universe.with_columns(
        sector=pl.when(pl.col("code") == "C00").then(pl.lit("S1")).otherwise(pl.col("sector"))), REL)
    later = pl.col("date") >= MOVE
    assert moved.filter(later).equals(always_s1.filter(later))
    # and the change is real: the sector features of C00 and of its old and new peers move
    assert not moved.filter(later).select(SECTOR_COLS).equals(base.filter(later).select(SECTOR_COLS))


def test_no_valid_universe_row_means_no_sector(awkward):
    prices, universe = awkward
    uni = _dated(universe).with_columns(
        start=pl.when(pl.col("code") == "C01").then(pl.lit(dt.date(2020, 9, 1))).otherwise(pl.col("start"))
    )
    out = compute_features(prices, uni, REL).filter(pl.col("code") == "C01")
    before, after = out.filter(pl.col("date") < dt.date(2020, 9, 1)), out.filter(pl.col("date") >= dt.date(2020, 9, 1))
    assert before.height > 0 and before["f_sector_excess_ret_1"].null_count() == before.height
    assert before["f_mkt_excess_ret_1"].null_count() < before.height  # only the sector is unknown
    assert after["f_sector_excess_ret_1"].null_count() == 0


# ---------------------------------------------------------------------- leakage

CUTS = [dt.date(2020, 3, 18), dt.date(2020, 5, 20), dt.date(2020, 6, 22), dt.date(2020, 9, 30)]


@pytest.fixture(scope="module")
def base_default(awkward):
    prices, universe = awkward
    return compute_features(prices, universe, FeaturesConfig())


@pytest.mark.parametrize("t", CUTS)
def test_no_leakage_when_future_changes(t, awkward, base_default):
    prices, universe = awkward
    cfg = FeaturesConfig()
    changed = compute_features(perturb_after(prices, t, seed=t.toordinal()), universe, cfg)
    assert_unchanged_through(base_default, changed, t)
    # the perturbation is real: later rows do change
    assert not changed.filter(pl.col("date") > t).equals(base_default.filter(pl.col("date") > t))


@pytest.mark.parametrize("t", CUTS)
def test_no_leakage_when_future_deleted(t, awkward, base_default):
    prices, universe = awkward
    cut = compute_features(truncate_after(prices, t), universe, FeaturesConfig())
    assert cut.height < base_default.height
    assert_unchanged_through(base_default, cut, t)


def test_no_leakage_with_many_chunks_and_threads(awkward, monkeypatch):
    """Chunks of 2-3 stocks on 3 threads: truncation regroups stocks, values must not move."""
    import alphagraph.features.compute as compute

    monkeypatch.setattr(compute, "CELLS_PER_CHUNK", 1024)
    prices, universe = awkward
    cfg = FeaturesConfig()
    base = compute_features(prices, universe, cfg, n_threads=3)
    for t in (CUTS[0], CUTS[2]):
        assert_unchanged_through(base, compute_features(truncate_after(prices, t), universe, cfg, n_threads=3), t)
        changed = perturb_after(prices, t, seed=5)
        assert_unchanged_through(base, compute_features(changed, universe, cfg, n_threads=2), t)
    # and the chunking itself changes nothing
    monkeypatch.setattr(compute, "CELLS_PER_CHUNK", 1 << 17)
    assert_unchanged_through(base, compute_features(prices, universe, cfg, n_threads=1), prices["date"].max())


def test_leakage_harness_catches_a_leak(awkward):
    """The harness itself: a centred moving average (uses t+1) must be flagged."""
    prices, _ = awkward
    t = CUTS[1]

    def leaky(p: pl.DataFrame) -> pl.DataFrame:
        return p.select("date", "code", pl.col("close").rolling_mean(3, center=True).over("code").alias("f_leak"))

    assert_unchanged_through(leaky(prices), leaky(prices), t)
    with pytest.raises(AssertionError, match="f_leak"):
        assert_unchanged_through(leaky(prices), leaky(perturb_after(prices, t, seed=1)), t)


def test_replace_is_a_dataclass_field():
    # FeaturesConfig stays a plain dataclass: windows/families can be overridden per run
    cfg = dataclasses.replace(FeaturesConfig(), windows=[5])
    assert feature_families(cfg)["rolling"][0] == "f_roc_5"


def test_family_null_shares(computed):
    from alphagraph.features import family_null_shares

    shares = family_null_shares(computed, CFG)
    assert list(shares) == list(FAMILIES)
    assert shares["kbar"] == 0.0 and shares["price"] == 0.0
    assert all(0.0 <= v < 1.0 for v in shares.values())
    assert shares["rolling"] > 0.0  # warm-up rows of each stock
