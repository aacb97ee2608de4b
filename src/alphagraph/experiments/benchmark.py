"""The RSR benchmarks (NASDAQ, NYSE): the published protocol as params, and our models next to the published ones.

Panels of Feng et al., "Temporal Relational Ranking for Stock Prediction" (ACM TOIS
2019; data in the GitHub repository fulifeng/Temporal_Relational_Stock_Ranking):
1,026 NASDAQ or 1,737 NYSE stocks, train 2013-2015, validation 2016, test 2017,
next-day return. Published figures: StockMixer (Fan & Shen, AAAI 2024), Table 2.

    python -m alphagraph.experiments.benchmark [--market NASDAQ|NYSE] --prices PATH --tickers PATH \\
        --universe PATH [--relations PATH]

copies the user's files under ``inputs/rsr_<market>/`` (git-ignored, tracked by
DVC as a dependency of ingest), runs ``dvc exp run -n rsr-<market>`` with the
protocol's params, and writes ``reports/rsr_<market>.md``; ``--market`` is
NASDAQ (the default) or NYSE, in any case. ``--relations`` is RSR's Wikidata
relations converted by ``python -m alphagraph.data.rsr_relations``; it adds the
``wikidata`` relation to the graph (static, collected after the sample:
look-ahead like the industry map). The report shows every model of
``zoo.models`` (params.yaml) that has a ``metrics/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alphagraph.runtime.config import ZooConfig, load_params
from alphagraph.runtime.errors import UserError, run_main
from alphagraph.graph.build import WIKIDATA
from alphagraph.reporting.report import markdown_table

PARAMS = Path("params.yaml")

# Per model: IC, their "RIC" (not a daily Spearman), prec@N, Sharpe.
Published = dict[str, tuple[float, float, float, float]]


@dataclass(frozen=True)
class Market:
    """One market of the RSR repository: its files, where the benchmark puts things, the published figures."""

    name: str  # the prefix of the source's files: <name>_<TIC>_30Y.csv, <name>_tickers_qualify_...csv
    stocks: int
    published: Published = field(default_factory=dict)  # empty: not bundled
    source: str = ""  # where ``published`` comes from
    note: str = ""  # a caveat on the published figures, printed under the table

    @property
    def slug(self) -> str:
        return self.name.lower()

    @property
    def code_pattern(self) -> str:
        """``data.code_pattern`` of the source's price folder (``google_finance/<name>_<TIC>_30Y.csv``)."""
        return f"{self.name}_(.+)_30Y"

    @property
    def tickers_file(self) -> str:
        return f"{self.name}_tickers_qualify_dr-0.98_min-5_smooth.csv"

    @property
    def industry_file(self) -> str:
        return f"{self.name}_industry_ticker.json"

    @property
    def wiki_file(self) -> str:
        return f"{self.name}_wiki_relation.npy"

    @property
    def inputs(self) -> Path:
        return Path(f"inputs/rsr_{self.slug}")

    @property
    def experiment(self) -> str:
        return f"rsr-{self.slug}"

    @property
    def report(self) -> Path:
        return Path(f"reports/rsr_{self.slug}.md")


STOCKMIXER = "StockMixer (Fan & Shen, AAAI 2024), Table 2, {} column"
MARKETS: dict[str, Market] = {
    "NASDAQ": Market(
        "NASDAQ",
        1026,
        {
            "LSTM": (0.032, 0.354, 0.514, 0.892),
            "ALSTM": (0.035, 0.371, 0.522, 0.941),
            "RGCN": (0.034, 0.382, 0.516, 1.054),
            "GAT": (0.035, 0.377, 0.530, 1.233),
            "RSR-I": (0.038, 0.398, 0.531, 1.238),
            "STHAN-SR": (0.039, 0.451, 0.543, 1.416),
            "ESTIMATE": (0.037, 0.444, 0.539, 1.307),
            "StockMixer": (0.043, 0.501, 0.545, 1.465),
        },
        STOCKMIXER.format("NASDAQ"),
    ),
    # From the paper's PDF in the authors' repository SJTU-DMTai/StockMixer
    # (paper+slide+poster/StockMixer.pdf, commit cce1359), whose NASDAQ column is the one above.
    "NYSE": Market(
        "NYSE",
        1737,
        {
            "LSTM": (0.024, 0.256, 0.512, 0.857),
            "ALSTM": (0.023, 0.276, 0.519, 0.764),
            "RGCN": (0.025, 0.275, 0.517, 0.932),
            "GAT": (0.025, 0.297, 0.521, 1.070),
            "RSR-I": (0.026, 0.284, 0.519, 0.098),
            "STHAN-SR": (0.029, 0.344, 0.542, 1.228),
            "ESTIMATE": (0.030, 0.327, 0.536, 1.115),
            "StockMixer": (0.029, 0.351, 0.539, 1.454),
        },
        STOCKMIXER.format("NYSE"),
        "RSR-I's published SR on NYSE, 0.098, is as printed (an order of magnitude below every other"
        " model's; possibly a typo)",
    ),
}
DEFAULT_MARKET = "NASDAQ"
NASDAQ = MARKETS["NASDAQ"]
PUBLISHED = NASDAQ.published  # the NASDAQ column, as before


def market_by_name(name: str) -> Market:
    """The market of ``--market`` (any case); an unknown name is a UserError naming the allowed ones."""
    found = MARKETS.get(name.strip().upper())
    if found is None:
        raise UserError(f"--market: unknown market {name!r}; allowed: {', '.join(MARKETS)} (any case)")
    return found


# The protocol: one fixed split, next-day return, the industry relation (sector = industry in
# the source), price correlations; the raw files' defects are dropped and counted. The same for
# every market (same dates); only the price files' names differ (Market.code_pattern).
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
    # One fold: no fold workers to share the cores with, so each torch model takes both threads.
    "gat.num_threads": 2,
    "train.num_threads": 2,
    "temporal.num_threads": 2,
}


def protocol_params(
    prices: str,
    tickers: str | None,
    universe: str | None,
    raw_dir: bool,
    relations: str | None = None,
    market: Market = NASDAQ,
) -> dict[str, Any]:
    """The ``-S`` overrides of the benchmark run for files at these (repo-relative) paths.

    ``relations``: the converted Wikidata relations file; its ``wikidata`` links join the graph.
    ``raw_dir``: ``prices`` is the source's folder of ``<market>_<TIC>_30Y.csv`` files.
    """
    out = dict(PROTOCOL) | {"data.path": prices, "data.tickers_path": tickers, "data.universe_path": universe}
    if relations is not None:
        out["data.relations_path"] = relations
        out["graph.relations"] = [*PROTOCOL["graph.relations"], WIKIDATA]
    if raw_dir:  # the source repository's layout: data/google_finance/<MARKET>_<TIC>_30Y.csv
        out["data.code_pattern"] = market.code_pattern
    return out


def set_args(overrides: dict[str, Any]) -> list[str]:
    """``dvc exp run`` arguments; values in YAML flow style (lists, null)."""
    args = []
    for key, value in overrides.items():
        text = "null" if value is None else json.dumps(value) if isinstance(value, list) else str(value)
        args += ["-S", f"{key}={text}"]
    return args


def _copy(src: str | None, name: str, folder: Path) -> str | None:
    if src is None:
        return None
    path = Path(src)
    if not path.exists():
        raise UserError(f"{path}: not found")
    target = folder / (name if path.is_dir() else name + path.suffix.lower())
    if target.exists() and target.resolve() == path.resolve():  # already there (e.g. converted into inputs/)
        return str(target)
    if path.is_dir():
        shutil.copytree(path, target, dirs_exist_ok=True)
    else:
        shutil.copy2(path, target)
    return str(target)


def _git_ignore(folder: Path) -> None:
    """Keep git off the copied data: a ``.gitignore`` of ``*`` in ``folder`` unless git ignores it already."""
    try:
        ignored = subprocess.run(["git", "check-ignore", "-q", str(folder)], capture_output=True).returncode
    except OSError:  # no git: nothing to keep off
        return
    if ignored == 1 and not (folder / ".gitignore").exists():  # 1: not ignored; 128: not a git repository
        (folder / ".gitignore").write_text("*\n")


def uses_wikidata(metrics_dir: Path = Path("metrics")) -> bool:
    """Whether the graph stage built ``wikidata`` edges (``graph.json``: a built relation)."""
    path = metrics_dir / "graph.json"
    if not path.exists():
        return False
    return WIKIDATA in json.loads(path.read_text()).get("relations", {})


def zoo_models(params: Path = PARAMS) -> tuple[str, ...]:
    """The model stages (``zoo.models`` of ``params``, in its order; the defaults when there is no file)."""
    zoo = load_params(params).zoo if params.exists() else ZooConfig()
    return tuple(zoo.models)


def comparison(
    metrics_dir: Path = Path("metrics"),
    wiki: bool | None = None,
    market: Market = NASDAQ,
    models: Sequence[str] | None = None,
) -> str:
    """Markdown: our models' pooled test figures next to the published ones.

    ``wiki``: whether RSR's Wikidata relations were used (None: read ``graph.json``).
    ``models``: the models to show, each where ``metrics_dir/<model>.json`` exists (None: :func:`zoo_models`).
    """
    if wiki is None:
        wiki = uses_wikidata(metrics_dir)
    if models is None:
        models = zoo_models()
    relations = (
        "RSR's Wiki relations are used (relation wikidata, with industry and price correlation); like the industry"
        " map they are static, collected after the sample, so look-ahead on every snapshot"
        if wiki
        else "Wiki relations are not used (industry and price correlation only)"
    )
    header = ["model", "IC", "RankIC", "ICIR", "Sharpe (gross)", "Sharpe (net)", "published RIC", "published SR"]
    rows = []
    for model in models:
        path = metrics_dir / f"{model}.json"
        if not path.exists():
            continue
        test = json.loads(path.read_text()).get("test", {})
        cells = [test.get(k) for k in ("ic_1d", "rank_ic_1d", "icir_1d", "sharpe_1d", "sharpe_net_1d")]
        rows.append([f"alphagraph {model}", *("—" if v is None else f"{v:.4f}" if i < 3 else f"{v:.2f}" for i, v in enumerate(cells)), "", ""])
    for name, (ic, ric, _, sr) in market.published.items():
        rows.append([f"{name} (published)", f"{ic:.3f}", "", "", "", "", f"{ric:.3f}", f"{sr:.3f}"])
    if market.published:
        source = f"Published figures: {market.source}." + (f" {market.note}." if market.note else "")
    else:
        source = f"Published figures not bundled for {market.name}: only our models are shown."
    lines = [
        f"# RSR {market.name} benchmark",
        "",
        f"Test year 2017 (2017-01-03 .. 2017-12-08), next-day return, {market.stocks:,} {market.name} stocks."
        " IC: mean daily Pearson correlation of prediction and realized return (the published IC is the same"
        " quantity).",
        "",
        *markdown_table(header, ["---"] + ["---:"] * (len(header) - 1), rows),
        "",
        source,
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--market", default=DEFAULT_MARKET,
        help=f"the RSR market: {' or '.join(MARKETS)}, any case (default {DEFAULT_MARKET})",
    )
    parser.add_argument("--prices", help="long CSV/Parquet, or the folder of <MARKET>_<TIC>_30Y.csv files")
    parser.add_argument("--tickers", help="<MARKET>_tickers_qualify_dr-0.98_min-5_smooth.csv (one ticker per line)")
    parser.add_argument("--universe", help="code,sector,industry file (from <MARKET>_industry_ticker.json)")
    parser.add_argument(
        "--relations", help="RSR's Wikidata relations converted by python -m alphagraph.data.rsr_relations"
    )
    parser.add_argument("--name", help="experiment name (default rsr-<market>)")
    parser.add_argument("--report-only", action="store_true", help="only write the table from metrics/")
    args = parser.parse_args(argv)
    mkt = market_by_name(args.market)
    if not args.report_only:
        if args.prices is None:
            raise UserError("--prices: required (the price file or folder), unless --report-only")
        mkt.inputs.mkdir(parents=True, exist_ok=True)
        _git_ignore(mkt.inputs)
        prices = _copy(args.prices, "prices", mkt.inputs)
        overrides = protocol_params(
            prices, _copy(args.tickers, "tickers", mkt.inputs), _copy(args.universe, "universe", mkt.inputs),
            Path(args.prices).is_dir(), _copy(args.relations, "relations", mkt.inputs), market=mkt,
        )
        cmd = ["dvc", "exp", "run", "-n", args.name or mkt.experiment, *set_args(overrides)]
        print(" ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            sys.exit(1)
    text = comparison(market=mkt)
    mkt.report.parent.mkdir(parents=True, exist_ok=True)
    mkt.report.write_text(text)
    print(text)


if __name__ == "__main__":
    run_main(main)
