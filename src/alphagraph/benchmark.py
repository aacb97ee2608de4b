"""The RSR NASDAQ benchmark: the published protocol as params, and our models next to the published ones.

Panel of Feng et al., "Temporal Relational Ranking for Stock Prediction" (ACM TOIS
2019; data in the GitHub repository fulifeng/Temporal_Relational_Stock_Ranking):
1,026 NASDAQ stocks, train 2013-2015, validation 2016, test 2017, next-day
return. Published figures: StockMixer (Fan & Shen, AAAI 2024), Table 2.

    python -m alphagraph.benchmark --prices PATH --tickers PATH --universe PATH [--relations PATH]

copies the user's files under ``inputs/rsr_nasdaq/`` (git-ignored, tracked by
DVC as a dependency of ingest), runs ``dvc exp run -n rsr-nasdaq`` with the
protocol's params, and writes ``reports/rsr_nasdaq.md``. ``--relations`` is
RSR's Wikidata relations converted by ``python -m alphagraph.data.rsr_relations``;
it adds the ``wikidata`` relation to the graph (static, collected after the
sample: look-ahead like the industry map).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from alphagraph.errors import UserError, run_main
from alphagraph.graph.build import WIKIDATA
from alphagraph.report import markdown_table

INPUTS = Path("inputs/rsr_nasdaq")
REPORT = Path("reports/rsr_nasdaq.md")
MODELS = ("lgbm", "lgbm_graph", "gat", "core")

# StockMixer (AAAI 2024), Table 2, NASDAQ: IC, their "RIC" (not a daily Spearman), prec@N, Sharpe.
PUBLISHED = {
    "LSTM": (0.032, 0.354, 0.514, 0.892),
    "ALSTM": (0.035, 0.371, 0.522, 0.941),
    "RGCN": (0.034, 0.382, 0.516, 1.054),
    "GAT": (0.035, 0.377, 0.530, 1.233),
    "RSR-I": (0.038, 0.398, 0.531, 1.238),
    "STHAN-SR": (0.039, 0.451, 0.543, 1.416),
    "ESTIMATE": (0.037, 0.444, 0.539, 1.307),
    "StockMixer": (0.043, 0.501, 0.545, 1.465),
}

# The protocol: one fixed split, next-day return, the industry relation (sector = industry in
# the source), price correlations; the raw files' defects are dropped and counted.
PROTOCOL: dict[str, Any] = {
    "data.source": "file",
    "data.start": "2013-01-02",
    "data.end": "2017-12-08",
    "data.invalid_rows": "drop",
    "data.zero_open": "fill_close",
    "features.horizons": [1, 5],
    "gat.horizon_weights": [1.0, 0.5],
    "train.horizon_weights": [1.0, 0.5],
    "split.val_start": "2016-01-01",
    "split.test_start": "2017-01-01",
    "split.embargo_days": 5,
    "graph.relations": ["rolling_correlation", "sector_industry"],
}


def protocol_params(
    prices: str, tickers: str | None, universe: str | None, raw_dir: bool, relations: str | None = None
) -> dict[str, Any]:
    """The ``-S`` overrides of the benchmark run for files at these (repo-relative) paths.

    ``relations``: the converted Wikidata relations file; its ``wikidata`` links join the graph.
    """
    out = dict(PROTOCOL) | {"data.path": prices, "data.tickers_path": tickers, "data.universe_path": universe}
    if relations is not None:
        out["data.relations_path"] = relations
        out["graph.relations"] = [*PROTOCOL["graph.relations"], WIKIDATA]
    if raw_dir:  # the source repository's layout: data/google_finance/NASDAQ_<TIC>_30Y.csv
        out["data.code_pattern"] = "NASDAQ_(.+)_30Y"
    return out


def set_args(overrides: dict[str, Any]) -> list[str]:
    """``dvc exp run`` arguments; values in YAML flow style (lists, null)."""
    args = []
    for key, value in overrides.items():
        text = "null" if value is None else json.dumps(value) if isinstance(value, list) else str(value)
        args += ["-S", f"{key}={text}"]
    return args


def _copy(src: str | None, name: str) -> str | None:
    if src is None:
        return None
    path = Path(src)
    if not path.exists():
        raise UserError(f"{path}: not found")
    target = INPUTS / (name if path.is_dir() else name + path.suffix.lower())
    if target.exists() and target.resolve() == path.resolve():  # already there (e.g. converted into inputs/)
        return str(target)
    if path.is_dir():
        shutil.copytree(path, target, dirs_exist_ok=True)
    else:
        shutil.copy2(path, target)
    return str(target)


def uses_wikidata(metrics_dir: Path = Path("metrics")) -> bool:
    """Whether the graph stage built ``wikidata`` edges (``graph.json``: a built relation)."""
    path = metrics_dir / "graph.json"
    if not path.exists():
        return False
    return WIKIDATA in json.loads(path.read_text()).get("relations", {})


def comparison(metrics_dir: Path = Path("metrics"), wiki: bool | None = None) -> str:
    """Markdown: our models' pooled test figures next to the published ones.

    ``wiki``: whether RSR's Wikidata relations were used (None: read ``graph.json``).
    """
    if wiki is None:
        wiki = uses_wikidata(metrics_dir)
    relations = (
        "RSR's Wiki relations are used (relation wikidata, with industry and price correlation); like the industry"
        " map they are static, collected after the sample, so look-ahead on every snapshot"
        if wiki
        else "Wiki relations are not used (industry and price correlation only)"
    )
    header = ["model", "IC", "RankIC", "ICIR", "Sharpe (gross)", "Sharpe (net)", "published RIC", "published SR"]
    rows = []
    for model in MODELS:
        path = metrics_dir / f"{model}.json"
        if not path.exists():
            continue
        test = json.loads(path.read_text()).get("test", {})
        cells = [test.get(k) for k in ("ic_1d", "rank_ic_1d", "icir_1d", "sharpe_1d", "sharpe_net_1d")]
        rows.append([f"alphagraph {model}", *("—" if v is None else f"{v:.4f}" if i < 3 else f"{v:.2f}" for i, v in enumerate(cells)), "", ""])
    for name, (ic, ric, _, sr) in PUBLISHED.items():
        rows.append([f"{name} (published)", f"{ic:.3f}", "", "", "", "", f"{ric:.3f}", f"{sr:.3f}"])
    lines = [
        "# RSR NASDAQ benchmark",
        "",
        "Test year 2017 (2017-01-03 .. 2017-12-08), next-day return, 1,026 stocks. IC: mean daily Pearson"
        " correlation of prediction and realized return (the published IC is the same quantity).",
        "",
        *markdown_table(header, ["---"] + ["---:"] * (len(header) - 1), rows),
        "",
        "Protocol differences: our features are the Alpha158-style library, not 5/10/20/30-day moving"
        " averages; rows whose label window crosses a boundary are purged; our Sharpe is a daily"
        " long-short top/bottom-decile book (annualized, costs for the net figure), not the published"
        " top-N daily portfolio; the published \"RIC\" is not a daily cross-sectional Spearman and is not"
        f" comparable; {relations}; rows with"
        " vendor defects are dropped (counted in metrics/ingest.json), zero opens set to the close.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prices", required=True, help="long CSV/Parquet, or the folder of NASDAQ_<TIC>_30Y.csv files")
    parser.add_argument("--tickers", help="NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv (one ticker per line)")
    parser.add_argument("--universe", help="code,sector,industry file")
    parser.add_argument(
        "--relations", help="RSR's Wikidata relations converted by python -m alphagraph.data.rsr_relations"
    )
    parser.add_argument("--name", default="rsr-nasdaq", help="experiment name")
    parser.add_argument("--report-only", action="store_true", help="only write the table from metrics/")
    args = parser.parse_args()
    if not args.report_only:
        INPUTS.mkdir(parents=True, exist_ok=True)
        prices = _copy(args.prices, "prices")
        overrides = protocol_params(
            prices, _copy(args.tickers, "tickers"), _copy(args.universe, "universe"), Path(args.prices).is_dir(),
            _copy(args.relations, "relations"),
        )
        cmd = ["dvc", "exp", "run", "-n", args.name, *set_args(overrides)]
        print(" ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            sys.exit(1)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    text = comparison()
    REPORT.write_text(text)
    print(text)


if __name__ == "__main__":
    run_main(main)
