import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from alphagraph.runtime import paths
from alphagraph.runtime.config import params_from_dict
from alphagraph.data.ingest import RELATIONS_SCHEMA, UNIVERSE_SCHEMA, ingest, ingest_metrics, write_raw
from alphagraph.data.validate import DataError
from tests.conftest import ROOT

TINY = {"data": {"synthetic": {"n_stocks": 30, "n_days": 120, "n_sectors": 3, "n_funds": 8}}}


@pytest.fixture(scope="module")
def synthetic_raw():
    return ingest(params_from_dict(TINY))


def test_synthetic_ingest_tables(synthetic_raw):
    raw = synthetic_raw
    assert raw.prices.columns == ["date", "code", "open", "high", "low", "close", "volume"]
    assert raw.oracle.height == raw.prices.height
    assert set(raw.relations["relation"].unique()) == {"competitor", "supply_chain", "fund_similarity"}
    m = ingest_metrics(raw, "synthetic")
    assert m["rows"] == raw.prices.height and m["stocks"] == 30 and m["days"] == 120
    # the validity columns are always there; the synthetic universe is static, its supply links
    # and fund co-holdings change over time (validity dates), and the truth is kept apart
    assert raw.universe.schema == pl.Schema(UNIVERSE_SCHEMA)
    assert raw.relations.schema == pl.Schema(RELATIONS_SCHEMA)
    assert raw.relations_true.schema == pl.Schema(RELATIONS_SCHEMA)
    assert raw.universe["start"].null_count() == raw.universe.height
    assert raw.relations.filter(pl.col("relation") == "supply_chain")["end"].null_count() < raw.relations.height
    assert raw.universe["listed"].null_count() == 0  # the generator's listing dates are kept
    assert m["point_in_time_universe"] is False and m["point_in_time_relations"] is True
    assert m["zero_open_rows"] == 0 and m["tickers_missing"] == 0


def test_round_trip_through_csv_file_source(synthetic_raw, tmp_path, monkeypatch):
    """generate -> write CSV files -> ingest as a file source -> the same tables."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    synthetic_raw.prices.write_csv(inputs / "prices.csv")
    synthetic_raw.universe.select("code", "sector", "industry").write_csv(inputs / "universe.csv")
    synthetic_raw.relations.write_csv(inputs / "relations.csv")
    monkeypatch.chdir(tmp_path)
    params = params_from_dict(
        {"data": {"source": "file", "path": "inputs/prices.csv", "universe_path": "inputs/universe.csv",
                  "relations_path": "inputs/relations.csv"}}
    )
    raw = ingest(params)
    assert raw.prices.equals(synthetic_raw.prices)
    assert raw.universe.equals(synthetic_raw.universe.select(raw.universe.columns))
    key = ["relation", "src", "dst"]
    assert raw.relations.sort(key).equals(synthetic_raw.relations.sort(key))
    assert raw.oracle.is_empty() and raw.oracle.columns == synthetic_raw.oracle.columns


def run_stage(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "stages/ingest.py")], cwd=cwd, capture_output=True, text=True)


def test_stage_writes_outputs_and_metrics(tmp_path):
    (tmp_path / "params.yaml").write_text(json.dumps(TINY))
    proc = run_stage(tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("prices", "universe", "relations", "oracle"):
        assert (tmp_path / f"data/raw/{name}.parquet").exists()
    text = (tmp_path / "metrics/ingest.json").read_text()
    assert text.endswith("\n") and json.loads(text)["stocks"] == 30
    assert '"stage": "ingest"' in proc.stderr and '"seconds"' in proc.stderr


def test_stage_error_names_the_problem_and_writes_nothing(tmp_path):
    (tmp_path / "inputs").mkdir()
    bad = pl.DataFrame({"date": ["2020-01-02", "2020-01-03"], "code": ["A", "A"], "open": [1.0, 1.0],
                        "high": [1.0, 1.0], "low": [1.0, 1.0], "close": [1.0, -2.0], "volume": [10.0, 10.0]})
    bad.write_csv(tmp_path / "inputs/prices.csv")
    (tmp_path / "params.yaml").write_text(json.dumps({"data": {"source": "file", "path": "inputs/prices.csv"}}))
    proc = run_stage(tmp_path)
    assert proc.returncode != 0
    assert "prices.csv" in proc.stderr and "close" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()


def test_drop_mode_counts_reasons(tmp_path, monkeypatch):
    (tmp_path / "inputs").mkdir()
    rows = pl.DataFrame({"date": ["2020-01-02", "2020-01-03", "2020-01-06"], "code": ["A", "A", "A"],
                         "open": [1.0, 1.0, 1.0], "high": [1.0, 1.0, 1.0], "low": [1.0, 1.0, 1.0],
                         "close": [1.0, -2.0, 1.0], "volume": [10.0, 10.0, -5.0]})
    rows.write_csv(tmp_path / "inputs/prices.csv")
    monkeypatch.chdir(tmp_path)
    raw = ingest(params_from_dict({"data": {"source": "file", "path": "inputs/prices.csv", "invalid_rows": "drop"}}))
    assert raw.prices.height == 1
    m = ingest_metrics(raw, "file")
    assert m["dropped.non_positive_price"] == 1 and m["dropped.negative_volume"] == 1
    with pytest.raises(DataError, match="close"):
        ingest(params_from_dict({"data": {"source": "file", "path": "inputs/prices.csv"}}))


RSR = Path(__file__).parent / "fixtures" / "rsr"


def test_rsr_files_ingest_with_point_in_time_universe(tmp_path, monkeypatch):
    universe = pl.DataFrame(
        {"code": ["AAPL", "AAPL", "YY"], "sector": ["Tech", "Hardware", "Media"],
         "industry": ["Computers", "Phones", "Internet"],
         "start": [None, "2013-01-10", None], "end": ["2013-01-09", None, None]}
    )
    universe.write_csv(tmp_path / "universe.csv")
    monkeypatch.chdir(tmp_path)
    params = params_from_dict({"data": {
        "source": "file", "path": str(RSR), "code_pattern": "NASDAQ_(.+)_30Y",
        "tickers_path": str(RSR / "tickers.txt"), "universe_path": "universe.csv",
        "start": "2013-01-01", "end": "2013-12-31"}})
    raw = ingest(params)
    assert raw.universe.schema == pl.Schema(UNIVERSE_SCHEMA)
    assert raw.relations.schema == pl.Schema(RELATIONS_SCHEMA) and raw.relations.is_empty()
    assert raw.universe.select("code", "sector", "start").rows() == [
        ("AAPL", "Tech", None), ("AAPL", "Hardware", dt.date(2013, 1, 10)), ("YY", "Media", None)
    ]
    # listed/delisted still come from the prices, per code
    assert raw.universe["listed"].to_list() == [dt.date(2013, 1, 2)] * 3
    assert raw.universe["delisted"].to_list() == [None, None, dt.date(2013, 2, 7)]
    m = ingest_metrics(raw, "file")
    assert m["stocks"] == 2 and m["first_date"] == "2013-01-02" and m["last_date"] == "2013-07-05"
    assert m["tickers_missing"] == 1  # MSFT
    assert m["zero_open_rows"] == 0  # the 1987 placeholders lie outside the window
    assert m["point_in_time_universe"] is True and m["point_in_time_relations"] is False
    assert m["dropped.zero_open"] == 0 and m["dropped.implausible_price"] == 0


def test_rsr_zero_opens_are_counted_in_the_metrics(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for mode, dropped in (("fill_close", 0), ("drop", 21)):
        params = params_from_dict({"data": {
            "source": "file", "path": str(RSR), "code_pattern": "NASDAQ_(.+)_30Y", "zero_open": mode}})
        m = ingest_metrics(ingest(params), "file")
        assert m["zero_open_rows"] == 21 and m["dropped.zero_open"] == dropped
        assert m["dropped_rows"] == dropped and m["rows"] == 90 - dropped


def test_implausible_price_stops_ingest_and_nothing_is_written(tmp_path, monkeypatch):
    (tmp_path / "inputs").mkdir()
    rows = pl.DataFrame({"date": ["2020-01-02", "2020-01-03"], "code": ["A", "A"], "open": [1.0, 1e300],
                         "high": [1.0, 1e300], "low": [1.0, 1e300], "close": [1.0, 1e300], "volume": [10.0, 10.0]})
    rows.write_csv(tmp_path / "inputs/prices.csv")
    monkeypatch.chdir(tmp_path)
    params = params_from_dict({"data": {"source": "file", "path": "inputs/prices.csv"}})
    with pytest.raises(DataError) as info:
        raw = ingest(params)  # as stages/ingest.py: validate everything, then write
        write_raw(raw, ingest_metrics(raw, "file"), paths.METRICS / "ingest.json")
    message = str(info.value)
    assert "prices.csv" in message and "'implausible_price'" in message and "data.max_price" in message
    assert "line 3" in message
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()
