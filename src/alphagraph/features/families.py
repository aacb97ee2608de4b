"""Feature families and the names of the columns each one produces.

Selected with ``features.families``; ``d`` runs over ``features.windows``.
Qlib's Alpha158 name is given in brackets where there is one.

kbar (9)        f_kmid [KMID], f_klen, f_kmid2, f_kup, f_kup2, f_klow, f_klow2, f_ksft, f_ksft2
price (4)       f_open0, f_high0, f_low0 [OPEN0, HIGH0, LOW0]; f_typical0 = (high+low+close)/3/close,
                a stand-in for VWAP0 (prices carry no traded amount)
rolling (23/d)  f_roc_d, f_ma_d, f_std_d, f_slope_d [BETA], f_rsqr_d, f_resi_d, f_max_d, f_min_d,
                f_qtlu_d, f_qtld_d, f_rank_d, f_rsv_d, f_imax_d, f_imin_d, f_imxd_d,
                f_corr_close_volume_d [CORR], f_corr_ret_volchg_d [CORD], f_cntp_d, f_cntn_d,
                f_cntd_d, f_sump_d, f_sumn_d, f_sumd_d
volume (7/d)    f_vma_d, f_vstd_d, f_wvma_d, f_vsump_d, f_vsumn_d, f_vsumd_d [Alpha158], and
                f_abvol_d = volume / mean volume of the previous d rows (abnormal volume)
relative        f_mkt_excess_ret_k, f_sector_excess_ret_k for k in [1] + windows: the stock's
                k-row return minus the equal-weight mean k-row return of all stocks (of its
                sector) on the same date; f_beta_mkt_d: slope of the stock's daily returns on
                the market's (equal-weight mean daily return of the date) over its last d rows
technical (6+d) f_rsi_14 (Wilder-style EMA of gains / (gains + losses), in [0, 1]),
                f_macd, f_macd_signal, f_macd_hist (EMA 12/26/9 of close, divided by close),
                f_atr_14 (EMA of true range / close), f_rvol_d (std of daily returns),
                f_vol_regime_10_60 (rvol over 10 rows / rvol over 60 rows)

With the default windows [5, 10, 20, 30, 60]: 9 + 4 + 115 + 35 + 17 + 11 = 191 columns
(158 of them are Alpha158's: all of kbar, price, rolling and volume but f_abvol_d).

Every window counts the stock's own rows (suspended days are skipped, not filled),
and a feature is null until its window is full: d rows for windows of levels, d + 1
rows for windows of returns or differences and for ROC (see
:mod:`alphagraph.features.alpha158`); RSI/ATR need 15 rows, MACD 26 and its signal 34,
the volatility regime 61. Missing values are null, never NaN or inf.
"""

from __future__ import annotations

from alphagraph.runtime.config import FeaturesConfig

ROLLING_OPS = [
    "roc", "ma", "std", "slope", "rsqr", "resi", "max", "min", "qtlu", "qtld", "rank", "rsv",
    "imax", "imin", "imxd", "corr_close_volume", "corr_ret_volchg", "cntp", "cntn", "cntd",
    "sump", "sumn", "sumd",
]  # fmt: skip
VOLUME_OPS = ["vma", "vstd", "wvma", "vsump", "vsumn", "vsumd", "abvol"]
KBAR = ["kmid", "klen", "kmid2", "kup", "kup2", "klow", "klow2", "ksft", "ksft2"]
PRICE = ["open0", "high0", "low0", "typical0"]

RSI_WINDOW = 14
ATR_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
VOL_REGIME = (10, 60)

FAMILIES = ("kbar", "price", "rolling", "volume", "relative", "technical")


def _windows(cfg: FeaturesConfig) -> list[int]:
    return sorted(set(int(w) for w in cfg.windows))


def relative_horizons(cfg: FeaturesConfig) -> list[int]:
    return sorted({1, *_windows(cfg)})


def family_columns(family: str, cfg: FeaturesConfig) -> list[str]:
    ws = _windows(cfg)
    if family == "kbar":
        return [f"f_{k}" for k in KBAR]
    if family == "price":
        return [f"f_{k}" for k in PRICE]
    if family == "rolling":
        return [f"f_{op}_{d}" for op in ROLLING_OPS for d in ws]
    if family == "volume":
        return [f"f_{op}_{d}" for op in VOLUME_OPS for d in ws]
    if family == "relative":
        ks = relative_horizons(cfg)
        return (
            [f"f_mkt_excess_ret_{k}" for k in ks]
            + [f"f_sector_excess_ret_{k}" for k in ks]
            + [f"f_beta_mkt_{d}" for d in ws]
        )
    if family == "technical":
        short, long = VOL_REGIME
        return (
            [f"f_rsi_{RSI_WINDOW}", "f_macd", "f_macd_signal", "f_macd_hist", f"f_atr_{ATR_WINDOW}"]
            + [f"f_rvol_{d}" for d in ws]
            + [f"f_vol_regime_{short}_{long}"]
        )
    raise ValueError(f"features.families: unknown family {family!r} (known: {', '.join(FAMILIES)})")


def feature_families(cfg: FeaturesConfig | None = None) -> dict[str, list[str]]:
    """Family name -> the ``f_*`` columns it produces under ``cfg`` (default config if None)."""
    cfg = cfg or FeaturesConfig()
    fams: dict[str, list[str]] = {}
    for fam in cfg.families:
        if fam not in fams:
            fams[fam] = family_columns(fam, cfg)
    return fams


def feature_names(cfg: FeaturesConfig | None = None) -> list[str]:
    """All ``f_*`` columns for ``cfg``, in output order."""
    return [c for cols in feature_families(cfg).values() for c in cols]


def family_null_shares(panel, cfg: FeaturesConfig | None = None) -> dict[str, float]:
    """Share of null cells per family in a features panel (for ``metrics/features.json``)."""
    import polars as pl

    out: dict[str, float] = {}
    n = panel.height
    for fam, cols in feature_families(cfg).items():
        cols = [c for c in cols if c in panel.columns]
        if not cols or n == 0:
            out[fam] = 0.0
            continue
        nulls = panel.select(pl.sum_horizontal([pl.col(c).null_count() for c in cols])).item()
        out[fam] = float(nulls) / (n * len(cols))
    return out
