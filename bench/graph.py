"""Benchmark: the vectorized correlation-graph build vs a naive pandas reference.

The reference is what one would write first: per snapshot, ``DataFrame.corr()``
on the window, then a Python loop over stocks that sorts each stock's
correlations and keeps the top k. Both sides get the same prices (random
returns with market + sector factors, late listings and suspensions, built
here), the same rules (min observations, market residualization, top-k by
|rho|, ties to the alphabetically first code), and must give the same edges.

Run:  .venv/bin/python bench/graph.py            (about 3 minutes on 2 cores)
      .venv/bin/python bench/graph.py --quick    (small sizes, seconds)
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import pandas as pd
import polars as pl

from alphagraph.runtime.config import GraphConfig
from alphagraph.graph import build_edges
from alphagraph.graph.build import snapshot_positions
from alphagraph.graph.correlation import min_observations

NO_UNIVERSE = pl.DataFrame(schema={"code": pl.Utf8, "sector": pl.Utf8, "industry": pl.Utf8})
NO_RELATIONS = pl.DataFrame(schema={"src": pl.Utf8, "dst": pl.Utf8, "relation": pl.Utf8, "weight": pl.Float64})


def synthetic_prices(n_stocks: int, n_days: int, seed: int = 0) -> pl.DataFrame:
    """Long prices from a factor model, with late listings and short suspensions."""
    rng = np.random.default_rng(seed)
    n_sectors = 10
    sector = rng.integers(0, n_sectors, n_stocks)
    market = rng.normal(0, 0.01, (n_days, 1))
    sectors = rng.normal(0, 0.008, (n_days, n_sectors))
    beta = rng.uniform(0.5, 1.5, n_stocks)
    returns = market * beta + sectors[:, sector] * rng.uniform(0.5, 1.5, n_stocks) + rng.normal(0, 0.015, (n_days, n_stocks))
    close = 50 * np.exp(np.cumsum(returns, axis=0))
    late = rng.random(n_stocks) < 0.1
    close[np.arange(n_days)[:, None] < np.where(late, rng.integers(0, n_days // 2, n_stocks), 0)] = np.nan
    for start in np.argwhere(rng.random((n_days, n_stocks)) < 0.0005):  # suspensions: a few days each
        close[start[0] : start[0] + rng.integers(1, 10), start[1]] = np.nan
    t, n = np.nonzero(np.isfinite(close))
    dates = np.datetime64("2010-01-04") + t
    codes = np.array([f"S{i:05d}" for i in range(n_stocks)])
    c = close[t, n]
    return pl.DataFrame(
        {"date": pl.Series(dates, dtype=pl.Date), "code": codes[n], "open": c, "high": c, "low": c, "close": c, "volume": c * 0 + 1e6}
    )


# ------------------------------------------------------------------ reference


def reference_edges(prices: pl.DataFrame, cfg: GraphConfig, positions: np.ndarray) -> pl.DataFrame:
    """Naive build: pandas pivot, per-snapshot DataFrame.corr(), a Python top-k loop per stock."""
    close = prices.select("date", "code", "close").to_pandas().pivot(index="date", columns="code", values="close")
    returns = close.pct_change(fill_method=None)
    market = returns.mean(axis=1)
    min_obs = min_observations(cfg.corr_window, cfg.corr_min_obs)
    rows = []
    for i in positions:
        lo = max(0, i - cfg.corr_window + 1)
        win = returns.iloc[lo : i + 1]
        ok = close.iloc[i].notna() & (win.notna().sum() >= min_obs) & (win.max() - win.min() > 0)
        win = win.loc[:, ok]
        if cfg.residualize_market:
            m = win.notna().astype(float).mul(market.iloc[lo : i + 1], axis=0).where(win.notna() & market.iloc[lo : i + 1].notna().to_numpy()[:, None])
            win = win.where(m.notna())
            dm, dx = m - m.mean(), win - win.mean()
            win = win - m * ((dm * dx).sum() / (dm * dm).sum())
        corr = win.corr(min_periods=min_obs)
        snapshot = close.index[i].date()
        for code in corr.columns:  # the naive part: one stock at a time
            s = corr[code].drop(code).dropna()
            score = s.abs() if cfg.include_negative else s[s > 0]
            score = score[score > 0].sort_values(ascending=False, kind="stable")
            rows += [(snapshot, nb, code, float(s[nb])) for nb in score.index[: cfg.top_k]]
    return pl.DataFrame(rows, schema={"snapshot": pl.Date, "src": pl.Utf8, "dst": pl.Utf8, "rho": pl.Float64}, orient="row")


def compare(fast: pl.DataFrame, ref: pl.DataFrame) -> dict[str, float]:
    """Edge-set differences and the largest rho difference on common edges."""
    keys = ["snapshot", "src", "dst"]
    joined = fast.select(*keys, "rho").join(ref, on=keys, how="full", coalesce=True, suffix="_ref")
    both = joined.drop_nulls(["rho", "rho_ref"])
    return {
        "edges": ref.height,
        "only_fast": joined.filter(pl.col("rho_ref").is_null()).height,
        "only_ref": joined.filter(pl.col("rho").is_null()).height,
        "max_abs_rho_diff": float((both["rho"] - both["rho_ref"]).abs().max() or 0.0),
    }


# ---------------------------------------------------------------------- runs


def time_fast(prices: pl.DataFrame, cfg: GraphConfig, repeats: int = 1) -> tuple[pl.DataFrame, float]:
    """Edges and the best wall time of ``repeats`` builds (the box is shared: best-of filters noise)."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        edges, _ = build_edges(prices, NO_UNIVERSE, NO_RELATIONS, cfg)
        best = min(best, time.perf_counter() - start)
    return edges, best


def run_size(n_stocks: int, n_days: int, cfg: GraphConfig, ref_snapshots: int | None, repeats: int) -> dict:
    """Fast build on everything; reference on all snapshots or an evenly spread subset."""
    prices = synthetic_prices(n_stocks, n_days)
    fast, fast_s = time_fast(prices, cfg, repeats)
    positions = snapshot_positions(prices["date"].n_unique(), cfg.rebuild_every)
    subset = positions
    if ref_snapshots is not None and ref_snapshots < positions.size:
        # skip the warm-up snapshots (no history yet), then spread evenly
        live = positions[positions >= cfg.corr_window]
        subset = live[np.linspace(0, live.size - 1, ref_snapshots).round().astype(int)]
    start = time.perf_counter()
    ref = reference_edges(prices, cfg, subset)
    ref_s = time.perf_counter() - start
    ref_full_s = ref_s if subset.size == positions.size else _extrapolate(prices, cfg, subset, ref_s, positions)
    snaps = prices["date"].unique().sort().gather(subset).to_list()
    check = compare(fast.filter(pl.col("snapshot").is_in(snaps)), ref)
    return {
        "stocks": n_stocks,
        "days": n_days,
        "snapshots": int(positions.size),
        "ref_snapshots_timed": int(subset.size),
        "fast_s": fast_s,
        "ref_s": ref_full_s,
        "ref_extrapolated": subset.size != positions.size,
        "speedup": ref_full_s / fast_s,
        **check,
    }


def _extrapolate(prices: pl.DataFrame, cfg: GraphConfig, subset: np.ndarray, ref_s: float, positions: np.ndarray) -> float:
    """Fixed cost (pivot, returns) once + the per-snapshot cost times all snapshots.

    Warm-up snapshots (less history than the window) have no edges and cost
    almost nothing, so they are counted at zero: a conservative estimate.
    """
    start = time.perf_counter()
    reference_edges(prices, cfg, positions[:0])
    fixed = time.perf_counter() - start
    live = int((positions >= cfg.corr_window).sum())
    return fixed + (ref_s - fixed) / subset.size * live


def scaling(sizes: list[int], n_days: int, cfg: GraphConfig) -> list[tuple[int, float]]:
    return [(n, time_fast(synthetic_prices(n, n_days), cfg)[1]) for n in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--days", type=int, default=2500)
    parser.add_argument("--ref-snapshots", type=int, default=15, help="reference snapshots timed above --full-ref-max stocks")
    parser.add_argument("--full-ref-max", type=int, default=500, help="largest size whose reference runs on every snapshot")
    parser.add_argument("--scaling", type=int, nargs="*", default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--repeats", type=int, default=3, help="fast build: best of this many runs")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.days, args.scaling = [100, 300], 600, [100, 200, 400]
    cfg = GraphConfig(relations=["rolling_correlation"])  # defaults: window 60, top 10, every 21 days
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f} (timings on a shared box are noisy)")
    print(f"config: window={cfg.corr_window} top_k={cfg.top_k} every={cfg.rebuild_every} "
          f"residualize={cfg.residualize_market} include_negative={cfg.include_negative} min_obs={cfg.corr_min_obs}")
    for n in args.sizes:
        r = run_size(n, args.days, cfg, None if n <= args.full_ref_max else args.ref_snapshots, args.repeats)
        how = (f"extrapolated from {r['ref_snapshots_timed']} of {r['snapshots']} snapshots"
               if r["ref_extrapolated"] else f"all {r['snapshots']} snapshots")
        print(f"\n{n} stocks x {args.days} days: fast {r['fast_s']:.2f} s (best of {args.repeats}) | reference {r['ref_s']:.1f} s ({how})"
              f" | speedup {r['speedup']:.0f}x")
        print(f"  edges checked {r['edges']}: only in fast {r['only_fast']}, only in reference {r['only_ref']},"
              f" max |rho diff| {r['max_abs_rho_diff']:.1e}")
        if r["only_fast"] or r["only_ref"]:
            print("  WARNING: edge sets differ")
    print(f"\nload average after the comparison: {os.getloadavg()[0]:.1f}")
    if args.scaling:
        print(f"\nscaling of the fast build ({args.days} days):")
        points = scaling(args.scaling, args.days, cfg)
        for (n, s), prev in zip(points, [None, *points[:-1]]):
            growth = "" if prev is None else f"  (x{s / prev[1]:.1f} for x{n / prev[0]:.1f} stocks, exponent {math.log(s / prev[1]) / math.log(n / prev[0]):.2f})"
            print(f"  {n:5d} stocks: {s:6.2f} s{growth}")


if __name__ == "__main__":
    main()
