"""Benchmark the synthetic market generator: rows/s, wall time and peak memory.

    .venv/bin/python bench/synthetic.py                      # 500 stocks x 2,500 days
    .venv/bin/python bench/synthetic.py --n-stocks 200 --n-days 1500 --report

The timed run has tracing off; a second run under tracemalloc measures the peak
of Python-visible allocations (numpy buffers included). ru_maxrss is the peak
resident size of the whole process. Targets: under 10 s and under 2 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
import tracemalloc

from alphagraph.runtime.config import SyntheticConfig
from alphagraph.data.synthetic import generate_market, signal_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-stocks", type=int, default=500)
    ap.add_argument("--n-days", type=int, default=2500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true", help="also print signal_report(market)")
    args = ap.parse_args(argv)
    cfg = dataclasses.replace(SyntheticConfig(), n_stocks=args.n_stocks, n_days=args.n_days)

    start = time.perf_counter()
    market = generate_market(cfg, args.seed)
    wall = time.perf_counter() - start
    rows = market.prices.height
    del market

    tracemalloc.start()
    market = generate_market(cfg, args.seed)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)

    result = {
        "n_stocks": args.n_stocks,
        "n_days": args.n_days,
        "price_rows": rows,
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall),
        "tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
        "ru_maxrss_mb": round(max_rss / 2**20, 1),
    }
    print(json.dumps(result))
    if args.report:
        print(json.dumps(signal_report(market), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
