"""A user's own data, as met in the wild: each bad input stops with the real cause, or is counted.

Long CSVs, a Yahoo-style folder of per-ticker CSVs with Adj Close, relation and
benchmark files: every error names the file, the column or rows and the fix,
and is a :class:`DataError` (one ``error:`` message from a stage, no traceback).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from alphagraph.runtime.config import params_from_dict
from alphagraph.data import file_source
from alphagraph.data.file_source import load_file_source, read_tickers
from alphagraph.data.ingest import ingest, ingest_metrics
from alphagraph.data.validate import DataError
from tests.conftest import ROOT
from tests.test_file_source import cfg, make_prices, write_csv


def error_of(config) -> str:
    with pytest.raises(DataError) as info:
        load_file_source(config)
    return str(info.value)


def set_cells(frame: pl.DataFrame, row: int, **cells: str) -> pl.DataFrame:
    """``frame`` with the given columns of one row replaced by text, as a CSV would hold them."""
    at = pl.int_range(pl.len()) == row
    return frame.with_columns(
        pl.when(at).then(pl.lit(text)).otherwise(pl.col(c).cast(pl.Utf8)).alias(c) for c, text in cells.items()
    )


def prices_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "prices.parquet"
    make_prices().write_parquet(path)
    return path


# ------------------------------------------------------------- relation weights


def test_a_nan_relation_weight_is_an_invalid_weight(tmp_path: Path) -> None:
    rel = pl.DataFrame({"src": ["AAA", "BBB", "CCC"], "dst": ["BBB", "CCC", "AAA"],
                        "relation": ["competitor"] * 3, "weight": ["nan", "0.5", ""]})
    path = write_csv(rel, tmp_path / "relations.csv")
    prices = prices_parquet(tmp_path)
    message = error_of(cfg(prices, relations_path=str(path)))
    assert "relations.csv" in message and "'weight'" in message and "'relations_invalid_weight'" in message
    assert "line 2: src='AAA', dst='BBB', relation='competitor', weight=nan" in message
    assert "data.invalid_rows: drop" in message
    out = load_file_source(cfg(prices, relations_path=str(path), invalid_rows="drop"))
    assert out.relations is not None
    # the empty cell still means weight 1
    assert out.relations.select("src", "dst", "weight").rows() == [("BBB", "CCC", 0.5), ("CCC", "AAA", 1.0)]
    assert out.dropped["relations_invalid_weight"] == 1


def test_a_nan_weight_in_parquet_is_counted_in_the_ingest_metrics(tmp_path: Path, caplog) -> None:
    rel = pl.DataFrame({"src": ["AAA", "BBB"], "dst": ["BBB", "CCC"], "relation": ["competitor"] * 2,
                        "weight": [float("nan"), None]})
    rel.write_parquet(tmp_path / "relations.parquet")
    params = params_from_dict({"data": {"source": "file", "path": str(prices_parquet(tmp_path)),
                                        "relations_path": str(tmp_path / "relations.parquet"),
                                        "invalid_rows": "drop"}})
    with caplog.at_level(logging.WARNING):
        raw = ingest(params)
    metrics = ingest_metrics(raw, "file")
    assert metrics["dropped.relations_invalid_weight"] == 1 and metrics["dropped_rows"] == 1
    assert raw.relations.select("src", "weight").rows() == [("BBB", 1.0)]
    assert "relations_invalid_weight" in caplog.text  # the dropped-rows warning


# ------------------------------------------------------------------ duplicates


def test_a_duplicate_key_with_another_close_is_reported_as_a_duplicate(tmp_path: Path) -> None:
    prices = make_prices()
    restated = prices.slice(4, 1).with_columns(pl.col("close") + 1.0)  # outside its own [low, high]
    path = write_csv(pl.concat([prices, restated]), tmp_path / "dups.csv")
    message = error_of(cfg(path))
    assert "'duplicate_key'" in message and "ohlc_outside_range" not in message
    assert "dups.csv" in message and "'date', 'code'" in message
    assert "line 6: date=2021-03-02, code='BBB'" in message and "close=20.25" in message
    assert "line 20: date=2021-03-02, code='BBB'" in message and "close=21.25" in message
    # drop: the twin that fails a row check goes, the valid row stays
    out = load_file_source(cfg(path, invalid_rows="drop"))
    assert out.dropped["ohlc_outside_range"] == 1 and out.dropped["duplicate_key"] == 0
    assert out.prices.height == prices.height


def test_a_duplicate_in_a_yahoo_folder_shows_the_values_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "yahoo"
    folder.mkdir()
    for code in ("AAA", "BBB"):
        one = make_prices(codes=(code,)).drop("code").with_columns((pl.col("close") / 2).alias("adj close"))
        if code == "BBB":
            one = pl.concat([one, one.slice(2, 1).with_columns(pl.col("close") * 3, pl.col("adj close") * 3)])
        one.rename(str.title).write_csv(folder / f"{code}.csv")
    message = error_of(cfg(folder, adjust="adj_close"))
    assert "'duplicate_key'" in message
    assert "BBB.csv line 4: date=2021-03-03, code='BBB'" in message and "BBB.csv line 8" in message
    assert ", close=10.5," in message and ", close=31.5," in message  # as written, not scaled by adj close
    assert "adj_close=5.25" in message and "adj_close=15.75" in message


# ------------------------------------------------------------------ zero opens


@pytest.mark.parametrize("mode", ["fill_close", "error"])
def test_an_infinite_close_on_a_zero_open_row_names_the_close(tmp_path: Path, mode: str) -> None:
    bad = set_cells(make_prices(), 4, open="0", high="0", low="0", close="inf")  # a no-trade row, close inf
    path = write_csv(bad, tmp_path / "inf.csv")
    message = error_of(cfg(path, zero_open=mode))
    assert "column 'close'" in message and "'non_finite'" in message
    assert "line 6: date=2021-03-02, code='BBB', close=inf" in message
    assert "open=inf" not in message and "placeholder" not in message
    out = load_file_source(cfg(path, zero_open=mode, invalid_rows="drop"))
    assert out.dropped["non_finite"] == 1 and out.zero_open_rows == 0


# -------------------------------------------------------------------- encoding


def test_a_latin1_long_csv_names_the_line_and_how_to_convert(tmp_path: Path) -> None:
    text = set_cells(make_prices(), 7, code="BÉB").write_csv()
    path = tmp_path / "latin.csv"
    path.write_bytes(text.encode("latin1"))
    message = error_of(cfg(path))
    offset = text.encode("latin1").index(b"\xc9")
    assert str(path) in message and "line 9 " in message and f"byte offset {offset}" in message
    assert "0xC9" in message and "not UTF-8" in message and "iconv -f latin1 -t utf-8 latin.csv" in message
    assert "\n" not in message


def test_a_latin1_header_in_a_ticker_folder_is_an_encoding_error(tmp_path: Path) -> None:
    folder = tmp_path / "tickers"
    folder.mkdir()
    for code in ("AAA", "BBB"):
        text = make_prices(codes=(code,)).drop("code").rename(str.capitalize).write_csv()
        if code == "BBB":
            text = text.replace("Volume", "Volumé")
        (folder / f"{code}.csv").write_bytes(text.encode("latin1"))
    message = error_of(cfg(folder))
    assert "BBB.csv: line 1 " in message and "not UTF-8" in message and "iconv" in message
    assert "missing column" not in message


def test_latin1_side_files_and_ticker_lists_name_the_line(tmp_path: Path) -> None:
    rel = tmp_path / "relations.csv"
    rel.write_bytes("src,dst,relation\nAAA,BBB,competitor\nBÉB,AAA,competitor\n".encode("latin1"))
    message = error_of(cfg(prices_parquet(tmp_path), relations_path=str(rel)))
    assert "relations.csv: line 3 " in message and "iconv" in message
    tickers = tmp_path / "tickers.txt"
    tickers.write_bytes("AAA\nBÉB\n".encode("latin1"))
    with pytest.raises(DataError, match=r"tickers.txt: line 2 \(byte offset 5\) is not UTF-8 \(data.tickers_path\).*iconv"):
        read_tickers(str(tickers))


def test_a_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(make_prices().write_csv().encode("utf-16"))
    message = error_of(cfg(path))
    assert "excel.csv" in message and "UTF-16" in message and "iconv -f utf-16 -t utf-8" in message


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
def test_the_first_bad_byte_is_found_across_chunks(tmp_path: Path, monkeypatch, chunk: int) -> None:
    data = "a,b\nç,€\n".encode() + b"x,\xff\n"  # multi-byte characters split between chunks
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    monkeypatch.setattr(file_source, "CHUNK_BYTES", chunk)
    assert file_source._first_non_utf8(path) == (data.index(b"\xff"), 3)
    path.write_bytes(data[:-3] + "é".encode()[:1])  # truncated at the end
    assert file_source._first_non_utf8(path) == (len(data) - 3, 3)
    path.write_bytes(data[:-4])
    assert file_source._first_non_utf8(path) is None


# ------------------------------------------------------------------- benchmark


def _bench_params(tmp_path: Path, days: list[dt.date]) -> dict:
    index = tmp_path / "index.csv"
    pl.DataFrame({"date": days, "close": [100.0 + i for i in range(len(days))]}).write_csv(index)
    return {"data": {"source": "file", "path": str(prices_parquet(tmp_path)), "benchmark_path": str(index)}}


DAYS = make_prices()["date"].unique().sort().to_list()  # 2021-03-01 .. 2021-03-06


def test_a_benchmark_that_stops_before_the_data_is_an_ingest_error(tmp_path: Path) -> None:
    params = params_from_dict(_bench_params(tmp_path, DAYS[:4]))
    with pytest.raises(DataError) as info:
        ingest(params)
    message = str(info.value)
    assert "index.csv" in message and "data.benchmark_path" in message
    assert "ends on 2021-03-04, before the prices' last day 2021-03-06" in message
    assert "data.end: 2021-03-04" in message and "\n" not in message


def test_a_benchmark_that_starts_late_is_a_warning(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        raw = ingest(params_from_dict(_bench_params(tmp_path, DAYS[2:])))
    assert raw.benchmark is not None and raw.benchmark.height == 4
    assert "starts on 2021-03-03, after the prices' first day 2021-03-01" in caplog.text
    raw = ingest(params_from_dict(_bench_params(tmp_path, DAYS)))  # the whole span: quiet, fine
    assert raw.benchmark.height == len(DAYS)


def test_the_ingest_stage_reports_a_short_benchmark_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(json.dumps(_bench_params(tmp_path, DAYS[:4])))
    proc = subprocess.run([sys.executable, str(ROOT / "stages/ingest.py")], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "index.csv" in line and "2021-03-04" in line and "2021-03-06" in line
    assert not (tmp_path / "data").exists()


# ------------------------------------------------------------------ self-loops


def test_a_relation_self_loop_is_an_invalid_row(tmp_path: Path) -> None:
    rel = pl.DataFrame({"src": ["AAA", "BBB", "CCC"], "dst": ["BBB", "BBB", "AAA"], "relation": ["competitor"] * 3})
    path = write_csv(rel, tmp_path / "relations.csv")
    prices = prices_parquet(tmp_path)
    message = error_of(cfg(prices, relations_path=str(path)))
    assert "relations.csv" in message and "'relations_self_loop'" in message and "columns 'src', 'dst'" in message
    assert "line 3: src='BBB', dst='BBB', relation='competitor'" in message
    assert "data.invalid_rows: drop" in message
    out = load_file_source(cfg(prices, relations_path=str(path), invalid_rows="drop"))
    assert out.relations is not None and out.relations.height == 2
    assert out.dropped["relations_self_loop"] == 1


# ------------------------------------------------------ codes spelled by case


def _folder(tmp_path: Path, names: dict[str, str]) -> Path:
    """Per-ticker files ``name -> code whose prices it holds``."""
    folder = tmp_path / "tickers"
    folder.mkdir()
    for name, code in names.items():
        make_prices(codes=(code,)).drop("code").write_csv(folder / name)
    return folder


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        ({"AAPL.csv": "AAA", "aapl.CSV": "BBB", "CCC.csv": "CCC"}, "AAPL.csv (code 'AAPL') and aapl.CSV (code 'aapl')"),
        ({"AAPL.csv": "AAA", "AAPL.CSV": "BBB"}, "AAPL.CSV (code 'AAPL') and AAPL.csv (code 'AAPL')"),
    ],
)
def test_codes_that_differ_only_in_case_are_an_error(tmp_path: Path, names: dict, shown: str) -> None:
    folder = _folder(tmp_path, names)
    message = error_of(cfg(folder))
    assert str(folder) in message and shown in message and "Keep one file per stock" in message


def test_one_code_from_two_files_by_the_pattern_is_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"NASDAQ_AAPL_30Y.csv": "AAA", "NYSE_aapl_30Y.csv": "BBB", "NYSE_CCC_30Y.csv": "CCC"})
    message = error_of(cfg(folder, code_pattern="(?:NASDAQ|NYSE)_(.+)_30Y"))
    assert "NASDAQ_AAPL_30Y.csv (code 'AAPL') and NYSE_aapl_30Y.csv (code 'aapl')" in message
    assert "data.code_pattern" in message


def test_a_case_clash_outside_the_ticker_list_is_not_read(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"AAPL.csv": "AAA", "aapl.CSV": "BBB", "CCC.csv": "CCC"})
    tickers = tmp_path / "tickers.txt"
    tickers.write_text("CCC\n")
    out = load_file_source(cfg(folder, tickers_path=str(tickers)))
    assert out.prices["code"].unique().to_list() == ["CCC"]
