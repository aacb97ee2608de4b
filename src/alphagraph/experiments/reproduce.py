"""Compare a run's metrics with a committed reference, exactly or within per-metric tolerances.

On one machine with the pinned environment (``requirements-lock.txt``) every
metrics file is byte-identical across reruns. On another machine, numpy's and
torch's CPU kernels (chosen by instruction set) differ in the last bits; the
data stages, the two ceilings, LightGBM and the ridge references absorb that
(prices on a cent grid, deterministic histogram boosting, closed-form float64
solves), while the neural models' training amplifies it. So their metrics must
match exactly and the neural models' within the tolerances below.

    python -m alphagraph.experiments.reproduce --reference DIR [--metrics metrics]

exits 1 with one line per metric that moved.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Files whose metrics must be identical; every other file (the neural models, the zoo, the
# ensembles and the summary) within NEURAL_TOLERANCES. Timings are never compared (wall time).
EXACT = ("ingest", "features", "normalize", "graph", "oracle", "feasible", "lgbm", "lgbm_graph", "linear", "linear_graph")


@dataclass(frozen=True)
class Tolerance:
    """Largest absolute difference allowed for the metrics whose key matches ``pattern``."""

    pattern: str
    abs: float | None  # None: not compared (e.g. the best epoch, which a tie can move)


# First match wins; a metric that matches no rule is reported (a new headline figure needs a derived
# bound here). Each bound is about one standard error of its metric on the tiny CI config's test
# windows (n = 119 days x 40 stocks; the default run's 750 days x 200 stocks have smaller ones),
# so numerical drift may move a figure as far as its own sampling noise already blurs it, no further:
# - mean daily IC / RankIC: daily sd about 1 / sqrt(40) = 0.16, so 0.16 / sqrt(119) = 0.015 -> 0.02;
# - their share of the oracle's RankIC (0.077 on the tiny market): 0.02 / 0.077 -> 0.25;
# - ICIR (mean / sd of daily ICs, not annualized): 1 / sqrt(119) = 0.09 -> 0.15;
# - annualized Sharpe-like ratios, the long-short Sharpe and the top-k information ratio:
#   sqrt(252 / 119) = 1.46 -> 1.0;
# - annualized top-k excess return: 1.46 x its annual volatility (about 0.09 on the tiny run,
#   0.05 on the default) = 0.13 -> 0.05;
# - the long-short book's mean daily turnover (about 2.5; it moves with the ranks at the quantile
#   edges): 0.1; the detail's annualized return and drawdown: 0.1;
# - significance t statistics (Newey-West, vs lgbm): a RankIC drift of 1e-3 moves one by about 0.3 -> 1.0.
# Measured drift is smaller (torch with 1 vs 2 threads on the default config: core RankIC 7e-4 and
# Sharpe 0.31 through one fold's early stop; another CPU: RankIC 7e-4, Sharpe 0.12, top-k information
# ratio up to 0.07).
NEURAL_TOLERANCES = (
    Tolerance(r"(^|\.)train\.", None),
    Tolerance(r"(^|\.)(n_dates|n_rows)$", 0.0),
    Tolerance(r"best_model", 0.0),
    Tolerance(r"^significance\.", 1.0),
    Tolerance(r"_vs_(oracle|feasible)$", 0.25),
    Tolerance(r"sharpe|information_ratio", 1.0),
    Tolerance(r"icir", 0.15),
    Tolerance(r"topk_excess_return", 0.05),
    Tolerance(r"turnover|ann_return|max_drawdown", 0.1),
    Tolerance(r"(^|\.)(rank_)?ic_\d+d$", 0.02),
)


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"test": {"ic_1d": 1}}`` -> ``{"test.ic_1d": 1}`` (the keys ``dvc metrics`` shows)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, name + ".")
        else:
            out[name] = value
    return out


def tolerance(stem: str, key: str) -> float | None:
    """The allowed absolute difference of one metric (0 = exact, None = not compared)."""
    if stem in EXACT:
        return 0.0
    for tol in NEURAL_TOLERANCES:
        if re.search(tol.pattern, key):
            return tol.abs
    raise KeyError(f"metrics/{stem}.json {key}: no reproduce tolerance rule (alphagraph.experiments.reproduce.NEURAL_TOLERANCES)")


def _differs(ref: Any, got: Any, tol: float) -> bool:
    if isinstance(ref, bool) or isinstance(got, bool) or not isinstance(ref, (int, float)) or not isinstance(got, (int, float)):
        return ref != got
    if tol == 0.0:
        return ref != got
    return not math.isclose(ref, got, rel_tol=0.0, abs_tol=tol)


def compare(reference: Mapping[str, Mapping[str, Any]], actual: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One readable line per metric that moved beyond its tolerance (empty: reproduced).

    Both map a metrics file's stem (``core``) to its parsed JSON.
    """
    lines = []
    for stem in sorted(reference):
        if stem not in actual:
            lines.append(f"metrics/{stem}.json: missing in the run")
            continue
        ref, got = flatten(reference[stem]), flatten(actual[stem])
        for key in sorted(ref.keys() | got.keys()):
            try:
                tol = tolerance(stem, key)
            except KeyError as exc:
                lines.append(exc.args[0])
                continue
            if tol is None:
                continue
            where = f"metrics/{stem}.json {key}"
            if key not in got:
                lines.append(f"{where}: missing in the run (reference {ref[key]!r})")
            elif key not in ref:
                lines.append(f"{where}: not in the reference (run {got[key]!r})")
            elif _differs(ref[key], got[key], tol) and not _tied_best(key, ref[key], got[key], actual):
                rule = "must be identical" if tol == 0.0 else f"tolerance {tol:g}"
                delta = ""
                if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ref[key], got[key])):
                    delta = f", diff {got[key] - ref[key]:+.6g}"
                lines.append(f"{where}: reference {ref[key]!r}, run {got[key]!r}{delta} ({rule})")
    return lines


def _tied_best(key: str, ref_best: Any, got_best: Any, actual: Mapping[str, Mapping[str, Any]]) -> bool:
    """A ``best_model_<metric>`` that names another model than the reference's still reproduces when, in
    the run, the reference's pick scores within ``<metric>``'s tolerance of the run's (the larger of the two
    models'): each figure is allowed that drift, so the arg max of near-equal ones may flip (a tie, not a
    moved result)."""
    match = re.fullmatch(r"best_model_(\w+)", key)
    if match is None or not isinstance(ref_best, str) or not isinstance(got_best, str):
        return False
    metric = match.group(1)
    scores = [actual.get(name, {}).get("test", {}).get(metric) for name in (ref_best, got_best)]
    if any(not isinstance(v, (int, float)) for v in scores):
        return False
    tols = [tolerance(name, f"test.{metric}") for name in (ref_best, got_best)]
    return None not in tols and abs(scores[0] - scores[1]) <= max(tols)


def load_dir(folder: Path) -> dict[str, dict[str, Any]]:
    """The metrics JSONs of a folder by stem (``metrics/timings`` is a subfolder: not read)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, type=Path, help="folder of reference metrics JSONs")
    parser.add_argument("--metrics", default=Path("metrics"), type=Path, help="folder of the run's metrics JSONs")
    args = parser.parse_args(argv)
    reference = load_dir(args.reference)
    if not reference:
        print(f"error: {args.reference}: no metrics JSON files", file=sys.stderr)
        return 2
    moved = compare(reference, load_dir(args.metrics))
    for line in moved:
        print(line)
    print(f"{len(reference)} metrics files compared: " + (f"{len(moved)} metric(s) moved" if moved else "reproduced"))
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
