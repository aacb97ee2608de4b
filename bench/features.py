"""Benchmark: compute_features vs a straightforward pandas groupby/rolling reference.

    python bench/features.py                      # 800 stocks x 3,000 days (4-7 minutes, mostly pandas)
    python bench/features.py --stocks 100 --days 600
    python bench/features.py --skip-reference     # time the pipeline only

Both implementations compute the same feature set (the default FeaturesConfig:
Alpha158 + relative + technical families) on a synthetic random-walk OHLCV
panel made here with numpy (late listings, delistings and suspensions leave gaps
in stocks' histories). Each runs in its own subprocess, so its peak memory
(ru_maxrss, which also sees polars' and numpy's native allocations) is its own;
the panel is rebuilt in each from the same seed. The pipeline runs twice, with
its default thread pool and with one thread (``ALPHAGRAPH_THREADS=1``), since
pandas uses one core. Wall and CPU seconds are both printed: on a shared machine
the wall clock of either side moves with the neighbours' load. The outputs are then compared
column by column: same null/NaN positions, values equal to 1e-6 relative
(|a - b| <= 1e-6 * max(|a|, |b|) + 1e-9; the pipeline's output is Float32).

The reference is what a careful pandas user writes (Qlib's own Alpha158
operators look the same): per stock, pandas rolling/ewm operators; IdxMax/IdxMin
through ``rolling.apply(np.argmax)``; cross-sectional means with
groupby(date).transform. Its time is also reported without the rolling.apply
features, to show the ratio does not hinge on them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from alphagraph.runtime.config import FeaturesConfig  # noqa: E402

EPS = 1e-12
RTOL, ATOL = 1e-6, 1e-9


# --------------------------------------------------------------------------- panel


def make_panel(n_stocks: int, n_days: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Random-walk OHLCV panel with gaps, sorted by (date, code); plus a universe."""
    rng = np.random.default_rng(seed)
    days = np.datetime64("2010-01-04") + np.arange(n_days).astype("timedelta64[D]")
    logret = rng.normal(0.0002, 0.02, (n_days, n_stocks))
    close = 50.0 * np.exp(np.cumsum(logret, axis=0)) * rng.uniform(0.2, 5.0, n_stocks)
    open_ = close * np.exp(rng.normal(0.0, 0.005, close.shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, close.shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, close.shape)))
    volume = np.round(np.exp(rng.normal(13.0, 0.5, close.shape)))
    t = np.arange(n_days)[:, None]
    start = np.where(rng.random(n_stocks) < 0.15, rng.integers(1, max(2, n_days // 2), n_stocks), 0)
    end = np.where(rng.random(n_stocks) < 0.08, rng.integers(n_days // 2, n_days, n_stocks), n_days)
    present = (t >= start) & (t < end)
    suspended = rng.random((n_days, n_stocks)) < 0.002
    for k in range(5):  # suspensions of up to 5 days
        present &= ~np.roll(suspended, k, axis=0)
    di, si = np.nonzero(present)
    codes = np.array([f"S{i:04d}" for i in range(n_stocks)])
    prices = pl.DataFrame(
        {
            "date": days[di],
            "code": codes[si],
            "open": open_[di, si],
            "high": high[di, si],
            "low": low[di, si],
            "close": close[di, si],
            "volume": volume[di, si],
        }
    ).with_columns(pl.col("date").cast(pl.Date))
    universe = pl.DataFrame(
        {
            "code": codes,
            "sector": [f"sector{i % 10}" for i in range(n_stocks)],
            "industry": [f"industry{i % 30}" for i in range(n_stocks)],
        }
    )
    return prices.sort("date", "code"), universe


# ----------------------------------------------------------------- pandas reference


def reference_features(prices, universe, cfg: FeaturesConfig):
    """The default feature set, the straightforward pandas way. Returns (DataFrame, apply_seconds)."""
    import pandas as pd

    windows = sorted(set(cfg.windows))
    ks = sorted({1, *windows})
    df = prices.to_pandas()
    df = df.merge(universe.to_pandas()[["code", "sector"]], on="code", how="left")
    df["_row"] = np.arange(len(df))
    df = df.sort_values(["code", "date"], kind="stable").reset_index(drop=True)
    apply_seconds = 0.0

    def one_stock(s: pd.DataFrame) -> dict:
        nonlocal apply_seconds
        o, h, l, c, v = s["open"], s["high"], s["low"], s["close"], s["volume"]
        f = {}
        idx = pd.Series(np.arange(len(s), dtype=float), index=s.index)
        dc = c.diff()
        r = c / c.shift(1) - 1
        up = (dc > 0).astype(float).where(dc.notna())
        down = (dc < 0).astype(float).where(dc.notna())
        gain, loss, absd = dc.clip(lower=0), (-dc).clip(lower=0), dc.abs()
        logv = np.log(v + 1)
        dlogv = np.log(v / v.shift(1) + 1).replace([np.inf, -np.inf], np.nan)
        dv = v.diff()
        vgain, vloss, vabs = dv.clip(lower=0), (-dv).clip(lower=0), dv.abs()
        w = r.abs() * v
        rng, top, bot = h - l + EPS, np.maximum(o, c), np.minimum(o, c)
        f["f_kmid"], f["f_klen"], f["f_kmid2"] = (c - o) / o, (h - l) / o, (c - o) / rng
        f["f_kup"], f["f_kup2"] = (h - top) / o, (h - top) / rng
        f["f_klow"], f["f_klow2"] = (bot - l) / o, (bot - l) / rng
        f["f_ksft"], f["f_ksft2"] = (2 * c - h - l) / o, (2 * c - h - l) / rng
        f["f_open0"], f["f_high0"], f["f_low0"] = o / c, h / c, l / c
        f["f_typical0"] = (h + l + c) / 3 / c
        for d in windows:
            roll = c.rolling(d)
            mean = roll.mean()
            f[f"f_roc_{d}"] = c.shift(d) / c
            f[f"f_ma_{d}"] = mean / c
            f[f"f_std_{d}"] = roll.std() / c
            slope = roll.cov(idx) / idx.rolling(d).var()
            f[f"f_slope_{d}"] = slope / c
            f[f"f_rsqr_{d}"] = roll.corr(idx) ** 2
            f[f"f_resi_{d}"] = (c - (mean + slope * (d - 1) / 2)) / c
            mx, mn = h.rolling(d).max(), l.rolling(d).min()
            f[f"f_max_{d}"] = mx / c
            f[f"f_min_{d}"] = mn / c
            f[f"f_qtlu_{d}"] = roll.quantile(0.8) / c
            f[f"f_qtld_{d}"] = roll.quantile(0.2) / c
            f[f"f_rank_{d}"] = roll.rank(pct=True)
            f[f"f_rsv_{d}"] = (c - mn) / (mx - mn + EPS)
            t0 = time.perf_counter()
            imax = h.rolling(d).apply(np.argmax, raw=True)
            imin = l.rolling(d).apply(np.argmin, raw=True)
            apply_seconds += time.perf_counter() - t0
            f[f"f_imax_{d}"] = (imax + 1) / d
            f[f"f_imin_{d}"] = (imin + 1) / d
            f[f"f_imxd_{d}"] = (imax - imin) / d
            f[f"f_corr_close_volume_{d}"] = roll.corr(logv)
            f[f"f_corr_ret_volchg_{d}"] = r.rolling(d).corr(dlogv)
            cntp, cntn = up.rolling(d).mean(), down.rolling(d).mean()
            f[f"f_cntp_{d}"], f[f"f_cntn_{d}"], f[f"f_cntd_{d}"] = cntp, cntn, cntp - cntn
            sg, sl, sa = gain.rolling(d).sum(), loss.rolling(d).sum(), absd.rolling(d).sum() + EPS
            f[f"f_sump_{d}"], f[f"f_sumn_{d}"], f[f"f_sumd_{d}"] = sg / sa, sl / sa, (sg - sl) / sa
            vmean = v.rolling(d).mean()
            f[f"f_vma_{d}"] = vmean / (v + EPS)
            f[f"f_vstd_{d}"] = v.rolling(d).std() / (v + EPS)
            f[f"f_wvma_{d}"] = w.rolling(d).std() / (w.rolling(d).mean() + EPS)
            sg, sl, sa = vgain.rolling(d).sum(), vloss.rolling(d).sum(), vabs.rolling(d).sum() + EPS
            f[f"f_vsump_{d}"], f[f"f_vsumn_{d}"], f[f"f_vsumd_{d}"] = sg / sa, sl / sa, (sg - sl) / sa
            f[f"f_abvol_{d}"] = v / vmean.shift(1)
            f[f"f_rvol_{d}"] = r.rolling(d).std()
        for k in ks:
            f[f"ret_{k}"] = c / c.shift(k) - 1
        pos = idx.values
        eg = gain.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
        el = loss.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
        f["f_rsi_14"] = eg / (eg + el)
        line = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
        sig = line.ewm(span=9, adjust=False).mean()
        f["f_macd"] = (line / c).where(pos >= 25)
        f["f_macd_signal"] = (sig / c).where(pos >= 33)
        f["f_macd_hist"] = ((line - sig) / c).where(pos >= 33)
        cp = c.shift(1)
        tr = np.maximum(h - l, np.maximum((h - cp).abs(), (l - cp).abs()))
        f["f_atr_14"] = tr.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean() / c
        f["f_vol_regime_10_60"] = r.rolling(10).std() / r.rolling(60).std()
        f["_r"] = r
        return f

    parts = []
    for _, s in df.groupby("code", sort=False):
        parts.append(pd.DataFrame(one_stock(s), index=s.index))
    feats = pd.concat(parts).loc[df.index]
    feats["date"], feats["sector"], feats["_row"] = df["date"], df["sector"], df["_row"]
    # market return of each date and beta to it, over the stock's own last d returns
    feats["_m"] = feats.groupby("date")["_r"].transform("mean")
    for d in windows:
        parts = []
        for _, s in feats.groupby(df["code"], sort=False):
            parts.append(s["_r"].rolling(d).cov(s["_m"]) / s["_m"].rolling(d).var())
        feats[f"f_beta_mkt_{d}"] = pd.concat(parts)
    for k in ks:
        rk = feats[f"ret_{k}"]
        feats[f"f_mkt_excess_ret_{k}"] = rk - feats.groupby("date")[f"ret_{k}"].transform("mean")
        feats[f"f_sector_excess_ret_{k}"] = rk - feats.groupby(["date", "sector"])[f"ret_{k}"].transform("mean")
    feats = feats.sort_values("_row").replace([np.inf, -np.inf], np.nan)
    return feats, apply_seconds


# ---------------------------------------------------------------------------- workers


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _rss_gb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3


def worker(kind: str, stocks: int, days: int, seed: int, out: str) -> None:
    from alphagraph.features import compute_features, feature_names

    cfg = FeaturesConfig()
    prices, universe = make_panel(stocks, days, seed)
    base = _rss_gb()
    names = feature_names(cfg)
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    apply_s = 0.0
    if kind == "pipeline":
        result = compute_features(prices, universe, cfg)
    else:
        feats, apply_s = reference_features(prices, universe, cfg)
        result = pl.from_pandas(feats[names].reset_index(drop=True))
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    peak = _peak_gb()
    result.select(names).write_parquet(out)
    print(json.dumps({"kind": kind, "seconds": seconds, "cpu_seconds": cpu, "apply_seconds": apply_s, "peak_gb": peak,
                      "panel_rss_gb": base, "rows": prices.height, "features": len(names)}))


def run_worker(kind: str, args, out: Path, threads: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--stocks", str(args.stocks), "--days", str(args.days),
           "--seed", str(args.seed), "--out", str(out)]
    env = dict(os.environ)
    if threads:
        env["ALPHAGRAPH_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(a_path: Path, b_path: Path, names: list[str]) -> list[str]:
    """Column-by-column check (one column in memory at a time). Returns failures."""
    failures = []
    for name in names:
        a = pl.read_parquet(a_path, columns=[name])[name].cast(pl.Float64).fill_nan(None).to_numpy()
        b = pl.read_parquet(b_path, columns=[name])[name].cast(pl.Float64).fill_nan(None).to_numpy()
        na, nb = np.isnan(a), np.isnan(b)
        if not np.array_equal(na, nb):
            failures.append(f"{name}: NaN positions differ ({int(na.sum())} vs {int(nb.sum())})")
            continue
        ok = ~na
        diff = np.abs(a[ok] - b[ok])
        tol = RTOL * np.maximum(np.abs(a[ok]), np.abs(b[ok])) + ATOL
        if (diff > tol).any():
            i = int(np.argmax(diff - tol))
            failures.append(f"{name}: {int((diff > tol).sum())} values differ, worst {a[ok][i]!r} vs {b[ok][i]!r}")
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stocks", type=int, default=800)
    ap.add_argument("--days", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-reference", action="store_true", help="time the pipeline only")
    ap.add_argument("--worker", choices=["pipeline", "pandas"], help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.stocks, args.days, args.seed, args.out)
        return

    from alphagraph.features import feature_names

    names = feature_names(FeaturesConfig())
    with tempfile.TemporaryDirectory() as tmp:
        pipe = run_worker("pipeline", args, Path(tmp) / "pipeline.parquet")
        print(f"panel: {pipe['rows']:,} rows ({args.stocks} stocks x {args.days} days, with gaps), "
              f"{pipe['features']} features, {os.cpu_count()} CPUs")
        print(f"pipeline : {pipe['seconds']:8.2f} s wall, {pipe['cpu_seconds']:7.2f} s CPU   "
              f"peak RSS {pipe['peak_gb']:.2f} GB (panel alone {pipe['panel_rss_gb']:.2f} GB)", flush=True)
        one = run_worker("pipeline", args, Path(tmp) / "pipeline1.parquet", threads=1)
        print(f"  1 thread: {one['seconds']:8.2f} s wall, {one['cpu_seconds']:7.2f} s CPU   "
              f"peak RSS {one['peak_gb']:.2f} GB", flush=True)
        if args.skip_reference:
            return
        ref = run_worker("pandas", args, Path(tmp) / "pandas.parquet")
        print(f"pandas   : {ref['seconds']:8.2f} s wall, {ref['cpu_seconds']:7.2f} s CPU   "
              f"peak RSS {ref['peak_gb']:.2f} GB (rolling.apply for IMAX/IMIN: {ref['apply_seconds']:.1f} s wall)")
        print(f"speed-up : {ref['seconds'] / pipe['seconds']:.1f}x wall ({ref['seconds'] / one['seconds']:.1f}x "
              f"single-threaded), {ref['cpu_seconds'] / one['cpu_seconds']:.1f}x in CPU time; "
              f"{(ref['seconds'] - ref['apply_seconds']) / pipe['seconds']:.1f}x wall without the rolling.apply part")
        failures = compare(Path(tmp) / "pipeline.parquet", Path(tmp) / "pandas.parquet", names)
        if failures:
            print(f"MISMATCH in {len(failures)} columns:")
            for f in failures:
                print("  " + f)
            raise SystemExit(1)
        print(f"outputs equal: {len(names)} columns, NaN positions identical, values within "
              f"{RTOL:g} relative (+{ATOL:g})")


if __name__ == "__main__":
    main()
