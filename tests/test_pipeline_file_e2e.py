"""End to end on a file source: raw per-ticker files as a user meets them, through report.

The prices are the tiny synthetic market written out in the layout of the RSR
NASDAQ raw files (``NASDAQ_<TIC>_30Y.csv``, an unnamed first column of
timestamps with a UTC offset, vendor zero-open rows, years of history before
``data.start``), with a ticker list, a universe and a point-in-time relations
file. There is no planted truth, so the oracle stage writes empty outs.
"""

import json

import polars as pl
import pytest

from tests.conftest import TINY_PARAMS, deep_merge, make_dvc_repo, run

pytestmark = pytest.mark.slow

STAGES = ("ingest", "features", "normalize", "split", "graph", "oracle", "feasible", "pretrain", "model@lgbm", "model@gat",
          "model@core", "ensemble", "export", "report")
ZERO_OPENS = 7
LEFT_OUT = "S0005"  # in the prices folder, not in the ticker list
PIT_START = "2015-09-01"  # supply-chain rows of the file are valid from this date only

FILE_PARAMS = deep_merge(
    TINY_PARAMS,
    {
        "data": {
            "source": "file",
            "path": "inputs/prices",
            "code_pattern": "NASDAQ_(.+)_30Y",
            "tickers_path": "inputs/tickers.csv",
            "universe_path": "inputs/universe.csv",
            "relations_path": "inputs/relations.csv",
            "start": "2015-01-01",
            "benchmark_path": "inputs/index.csv",
        }
    },
)


def write_user_files(repo) -> None:
    """The tiny synthetic market, written as a user's raw files."""
    from alphagraph.runtime.config import params_from_dict
    from alphagraph.data.synthetic import generate_market

    market = generate_market(params_from_dict(TINY_PARAMS).data.synthetic, 0)
    kept = pl.col("code") != LEFT_OUT
    prices = market.prices.sort("code", "date").with_columns(kept.cum_sum().alias("i"))
    # Vendor placeholders: open = 0 with a real close, spread over the stocks that are read.
    zero = kept & pl.col("i").is_in(list(range(500, 500 + 997 * ZERO_OPENS, 997)))
    prices = prices.with_columns(pl.when(zero).then(0.0).otherwise(pl.col("open")).alias("open")).drop("i")
    folder = repo / "inputs/prices"
    folder.mkdir(parents=True)
    stamp = pl.col("date").dt.strftime("%Y-%m-%d") + pl.lit(" 16:00:00-05:00")
    junk = pl.DataFrame({"": ["1990-01-02 16:00:00-05:00"], "Open": [0.0], "High": [1.0], "Low": [2.0], "Close": [1.5], "Volume": [10.0]})
    for (code,), rows in prices.group_by("code"):
        frame = rows.select(
            stamp.alias(""), pl.col("open").alias("Open"), pl.col("high").alias("High"),
            pl.col("low").alias("Low"), pl.col("close").alias("Close"), pl.col("volume").alias("Volume"),
        )
        # decades of history before data.start, with a broken row that must never be read
        pl.concat([junk, frame]).write_csv(folder / f"NASDAQ_{code}_30Y.csv")
    # An index of the whole market (equal-weight daily returns, compounded), as levels.
    daily = prices.sort("code", "date").with_columns(r=pl.col("close") / pl.col("close").shift(1).over("code") - 1)
    daily = daily.group_by("date").agg(pl.col("r").mean()).sort("date")
    index = daily.select(pl.col("date").dt.strftime("%Y-%m-%d").alias("Date"), Close=100 * (1 + pl.col("r").fill_null(0)).cum_prod())
    index.write_csv(repo / "inputs/index.csv")
    codes = sorted(set(prices["code"].to_list()) - {LEFT_OUT})
    (repo / "inputs/tickers.csv").write_text("\n".join([*codes, "NOTLISTED"]) + "\n")
    market.universe.select("code", "sector", "industry").write_csv(repo / "inputs/universe.csv")
    # The market's own validity dates, with every supply link starting no earlier than PIT_START.
    pit = pl.lit(PIT_START).str.to_date()
    supply = pl.col("relation") == "supply_chain"
    rel = market.relations.filter(~supply | pl.col("end").is_null() | (pl.col("end") >= pit)).with_columns(
        pl.when(supply & (pl.col("start").is_null() | (pl.col("start") < pit))).then(pit).otherwise(pl.col("start")).alias("start")
    )
    rel.unique(["src", "dst", "relation", "start"], keep="first", maintain_order=True).write_csv(repo / "inputs/relations.csv")


@pytest.fixture(scope="module")
def file_repo(tmp_path_factory):
    repo = make_dvc_repo(tmp_path_factory.mktemp("file_repo"), FILE_PARAMS, setup=write_user_files)
    run(["dvc", "repro", "-q"], repo)
    return repo


def test_whole_dag_runs_on_a_file_source(file_repo):
    ingest = json.loads((file_repo / "metrics/ingest.json").read_text())
    assert ingest["source"] == "file"
    assert ingest["zero_open_rows"] == ZERO_OPENS
    assert ingest["tickers_missing"] == 1
    assert ingest["first_date"] >= "2015-01-01"
    prices = pl.read_parquet(file_repo / "data/raw/prices.parquet")
    assert LEFT_OUT not in prices["code"].to_list() and prices.height == ingest["rows"]
    assert (prices["open"] > 0).all()
    assert json.loads((file_repo / "metrics/oracle.json").read_text()) == {"available": False}
    assert pl.read_parquet(file_repo / "data/predictions/oracle.parquet").height == 0
    assert json.loads((file_repo / "metrics/feasible.json").read_text()) == {"available": False}
    assert pl.read_parquet(file_repo / "data/predictions/feasible.parquet").height == 0
    assert ingest["benchmark"] == "inputs/index.csv"
    bench = pl.read_parquet(file_repo / "data/raw/benchmark.parquet")
    assert bench["return"].drop_nulls().abs().max() < 0.2 and bench.height >= prices["date"].n_unique()
    for model in ("lgbm", "gat", "core"):
        test = json.loads((file_repo / f"metrics/{model}.json").read_text())["test"]
        assert test["rank_ic_1d"] is not None and test["sharpe_1d"] is not None, model
        detail = json.loads((file_repo / f"reports/models/{model}.json").read_text())["test"]
        assert test["topk_information_ratio_1d"] is not None and detail["topk_max_drawdown_1d"] <= 0, model
    board = (file_repo / "reports/leaderboard.md").read_text()
    assert "no ceiling" in board.lower() and "| core |" in board and "| oracle" not in board
    assert "| feasible" not in board and "/ feasible" not in board
    assert pl.read_parquet(file_repo / "data/export/rl_features.parquet").height > 0


def test_the_visual_report_renders_without_an_oracle(file_repo):
    from tests.test_pipeline_e2e import browser_check, page_models

    page = (file_repo / "reports/index.html").read_text()
    models = page_models(page)
    assert {"lgbm", "gat", "core"} <= set(models) and "oracle" not in models
    assert "oracle (ceiling)" not in page and "feasible (ceiling)" not in page
    assert "inputs/index.csv" in page  # the benchmark of the top-k backtest is named
    check = browser_check(file_repo / "reports/index.html")
    assert check.ok and check.figures == page.count("<figure"), check.errors


def test_point_in_time_relations_reach_the_graph(file_repo):
    edges = pl.read_parquet(file_repo / "data/graph/edges.parquet").filter(pl.col("relation") == "supply_chain")
    assert edges.height > 0
    assert edges["snapshot"].min() >= pl.Series([PIT_START]).str.to_date()[0]


def test_status_clean_and_rerun_does_nothing(file_repo):
    assert run(["dvc", "status", "-q"], file_repo, check=False).returncode == 0
    again = run(["dvc", "repro"], file_repo)
    assert "Running stage" not in again.stdout


def test_unknown_param_key_fails_the_run(file_repo):
    params = file_repo / "params.yaml"
    original = params.read_text()
    try:
        params.write_text(original + "learning_rate: 0.1\n")
        proc = run(["dvc", "repro"], file_repo, check=False)
        assert proc.returncode != 0
        assert "unknown key learning_rate" in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
    finally:
        params.write_text(original)


def test_experiment_runs_on_a_file_source(file_repo):
    run(["git", "add", "-A"], file_repo)
    run(["git", "commit", "-qm", "file-source run"], file_repo)
    out = run(["dvc", "exp", "run", "-S", "train.lr=5e-4"], file_repo).stdout
    ran = {s for s in STAGES if f"Running stage '{s}'" in out}
    # every model stage lists every model's params (DVC cannot list them per foreach entry)
    assert ran == set(STAGES) - {"ingest", "features", "normalize", "split", "graph", "oracle", "feasible"}, out
    run(["git", "checkout", "--", "params.yaml"], file_repo)
