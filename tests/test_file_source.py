"""The user-file data source: layouts, parsing, validation, drop counts, splits, side files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from alphagraph.runtime.config import ColumnsConfig, DataConfig
from alphagraph.data.file_source import FileSource, load_file_source
from alphagraph.data.validate import (
    ALL_REASONS,
    PRICE_REASONS,
    DataError,
    detect_splits,
    validate_prices,
)

CODES = ("AAA", "BBB", "CCC")
N_DAYS = 6
SCHEMA = {
    "date": pl.Date,
    "code": pl.Utf8,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,
}


def make_prices(codes: tuple[str, ...] = CODES, n_days: int = N_DAYS) -> pl.DataFrame:
    """A small valid canonical panel, sorted by (date, code)."""
    start = dt.date(2021, 3, 1)
    dates = [start + dt.timedelta(days=d) for d in range(n_days)]
    rows = []
    for d, day in enumerate(dates):
        for i, code in enumerate(codes):
            close = 10.0 * (i + 1) + 0.25 * d
            rows.append((day, code, close - 0.1, close + 0.5, close - 0.5, close, 1000.0 * (i + 1) + d))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def cfg(path: Path, **kwargs: object) -> DataConfig:
    return DataConfig(source="file", path=str(path), **kwargs)


def write_csv(df: pl.DataFrame, path: Path) -> Path:
    df.write_csv(path)
    return path


def error_message(path: Path, **kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_file_source(cfg(path, **kwargs))
    return str(info.value)


# ----------------------------------------------------------------------- layouts


def test_long_csv_round_trip(tmp_path: Path) -> None:
    prices = make_prices()
    shuffled = prices.sample(fraction=1.0, shuffle=True, seed=3)
    source = load_file_source(cfg(write_csv(shuffled, tmp_path / "prices.csv")))
    assert isinstance(source, FileSource)
    assert_frame_equal(source.prices, prices)
    assert source.prices.schema == pl.Schema(SCHEMA)
    assert source.universe is None and source.relations is None
    assert source.dropped == dict.fromkeys(ALL_REASONS, 0)
    assert source.split_suspects.height == 0


def test_long_parquet_round_trip(tmp_path: Path) -> None:
    prices = make_prices()
    path = tmp_path / "prices.parquet"
    prices.reverse().write_parquet(path)
    assert_frame_equal(load_file_source(cfg(path)).prices, prices)


def test_parquet_datetime_and_integer_columns_are_canonicalized(tmp_path: Path) -> None:
    prices = make_prices()
    odd = prices.with_columns(
        pl.col("date").cast(pl.Datetime("us")),
        pl.col("volume").cast(pl.Int64),
        pl.col("open").cast(pl.Float32),
    )
    path = tmp_path / "prices.parquet"
    odd.write_parquet(path)
    out = load_file_source(cfg(path)).prices
    assert out.schema == pl.Schema(SCHEMA)
    assert_frame_equal(out, prices.with_columns(pl.col("open").cast(pl.Float32).cast(pl.Float64)))


def test_csv_keeps_leading_zeros_in_codes(tmp_path: Path) -> None:
    prices = make_prices(codes=("000001", "600519"))
    out = load_file_source(cfg(write_csv(prices, tmp_path / "p.csv"))).prices
    assert sorted(out["code"].unique().to_list()) == ["000001", "600519"]


def test_per_ticker_directory_with_capitalized_headers(tmp_path: Path) -> None:
    prices = make_prices()
    folder = tmp_path / "tickers"
    folder.mkdir()
    for code in CODES:
        one = prices.filter(pl.col("code") == code).drop("code").rename(str.capitalize)
        one.reverse().write_csv(folder / f"{code}.csv")
    (folder / "README.txt").write_text("not a price file")
    assert_frame_equal(load_file_source(cfg(folder)).prices, prices)


def test_custom_column_names(tmp_path: Path) -> None:
    prices = make_prices()
    names = dict(
        date="trade_dt", code="ticker", open="o", high="h", low="l", close="adj_close", volume="vol"
    )
    custom = prices.rename(names).with_columns(pl.lit("x").alias("extra"))
    path = write_csv(custom, tmp_path / "custom.csv")
    out = load_file_source(cfg(path, columns=ColumnsConfig(**names))).prices
    assert_frame_equal(out, prices)


def test_date_format(tmp_path: Path) -> None:
    prices = make_prices()
    text = prices.with_columns(pl.col("date").dt.strftime("%d/%m/%Y"))
    path = write_csv(text, tmp_path / "eu.csv")
    assert_frame_equal(load_file_source(cfg(path, date_format="%d/%m/%Y")).prices, prices)
    # without the format, the same file is an error naming the column and a value
    message = error_message(path)
    assert "eu.csv" in message and "'date'" in message and "01/03/2021" in message


def test_iso_timestamps_and_padded_cells_are_accepted(tmp_path: Path) -> None:
    prices = make_prices()
    text = prices.with_columns(
        (pl.col("date").dt.strftime("%Y-%m-%d") + " 00:00:00").alias("date"),
        (pl.lit(" ") + pl.col("close").cast(pl.Utf8) + pl.lit(" ")).alias("close"),
    )
    assert_frame_equal(load_file_source(cfg(write_csv(text, tmp_path / "ts.csv"))).prices, prices)


def test_validate_prices_accepts_canonical_frame() -> None:
    prices = make_prices()
    out, dropped = validate_prices(prices.reverse(), "synthetic", "error")
    assert_frame_equal(out, prices)
    assert dropped == dict.fromkeys(PRICE_REASONS, 0)


# ------------------------------------------------------------ structural errors


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    message = error_message(tmp_path / "nope.parquet")
    assert "nope.parquet" in message and "not found" in message


def test_missing_columns_lists_missing_and_existing(tmp_path: Path) -> None:
    path = write_csv(make_prices().drop("volume", "low"), tmp_path / "short.csv")
    message = error_message(path, invalid_rows="drop")  # structural: drop mode does not help
    assert "short.csv" in message
    assert "'low'" in message and "'volume'" in message
    assert "'close'" in message.split("the file has columns:")[1]


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    path = write_csv(make_prices().clear(), tmp_path / "empty.csv")
    message = error_message(path, invalid_rows="drop")
    assert "empty.csv" in message and "empty" in message


def test_zero_byte_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("")
    message = error_message(path)
    assert "blank.csv" in message and "empty" in message


def test_empty_ticker_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "tickers"
    folder.mkdir()
    make_prices(codes=("AAA",)).drop("code").write_csv(folder / "AAA.csv")
    make_prices(codes=("BBB",)).drop("code").clear().write_csv(folder / "BBB.csv")
    message = error_message(folder)
    assert "BBB.csv" in message and "empty" in message


def test_unparseable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("date,code,open,high,low,close,volume\n2021-03-01,AAA,1,2,1,1,5,EXTRA,MORE\n")
    message = error_message(path)
    assert "ragged.csv" in message and "cannot parse" in message


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "prices.xlsx"
    path.write_bytes(b"PK")
    assert "unsupported file type '.xlsx'" in error_message(path)


def test_unparseable_dates_always_raise(tmp_path: Path) -> None:
    text = make_prices().with_columns(_plant("date", "2021-02-30"))
    path = write_csv(text, tmp_path / "dates.csv")
    message = error_message(path, invalid_rows="drop")
    assert "dates.csv" in message and "'date'" in message and "2021-02-30" in message
    assert "line 6" in message  # header is line 1, row index 4 is line 6


def test_wholly_non_numeric_column_is_structural(tmp_path: Path) -> None:
    path = write_csv(make_prices().with_columns(pl.lit("n/a?").alias("close")), tmp_path / "words.csv")
    message = error_message(path, invalid_rows="drop")
    assert "words.csv" in message and "'close'" in message
    assert "not numeric" in message and "'n/a?'" in message


# ------------------------------------------------------------- row-level errors


def _plant(column: str, value: object, row: int = 4) -> pl.Expr:
    """Replace ``column`` at one row with ``value`` (as text, as in a CSV)."""
    base = pl.col(column).cast(pl.Utf8)
    new = pl.lit(None, dtype=pl.Utf8) if value is None else pl.lit(str(value))
    return pl.when(pl.int_range(pl.len()) == row).then(new).otherwise(base).alias(column)


ROW_CASES = {
    "non_numeric": ("volume", "12x4", "'12x4'"),
    "null_value": ("close", None, "close=None"),
    "non_positive_price": ("low", -3.0, "low=-3.0"),
    "high_below_low": ("high", 1.0, "high=1.0"),
    "ohlc_outside_range": ("open", 99.0, "open=99.0"),
    "negative_volume": ("volume", -5.0, "volume=-5.0"),
}


@pytest.mark.parametrize("reason", list(ROW_CASES))
def test_row_level_error_names_file_column_and_value(tmp_path: Path, reason: str) -> None:
    column, value, shown = ROW_CASES[reason]
    path = write_csv(make_prices().with_columns(_plant(column, value)), tmp_path / f"{reason}.csv")
    message = error_message(path)
    assert f"{reason}.csv" in message
    assert f"'{column}'" in message
    assert repr(reason) in message
    assert shown in message
    assert "line 6" in message and "code='BBB'" in message


def test_mistyped_parquet_column_reports_row_number(tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    make_prices().with_columns(_plant("open", "ten")).write_parquet(path)
    message = error_message(path)
    assert "typed.parquet" in message and "'open'" in message and "open='ten'" in message
    assert "row 5:" in message  # parquet rows are numbered from 1


def test_null_code_is_a_null_value(tmp_path: Path) -> None:
    path = write_csv(make_prices().with_columns(_plant("code", "  ")), tmp_path / "nocode.csv")
    message = error_message(path)
    assert "nocode.csv" in message and "'code'" in message and "code=None" in message


def test_duplicate_key_shows_all_occurrences(tmp_path: Path) -> None:
    prices = make_prices()
    dup = pl.concat([prices, prices.slice(4, 1).with_columns(pl.col("close") + 0.01)])
    path = write_csv(dup, tmp_path / "dups.csv")
    message = error_message(path)
    assert "dups.csv" in message and "'date'" in message and "'code'" in message
    assert "'duplicate_key'" in message and "1 row(s)" in message
    assert "line 6" in message and f"line {dup.height + 1}" in message


def test_error_in_ticker_directory_names_the_ticker_file(tmp_path: Path) -> None:
    folder = tmp_path / "tickers"
    folder.mkdir()
    for code in CODES:
        one = make_prices(codes=(code,)).drop("code").rename(str.capitalize)
        if code == "BBB":
            one = one.with_columns(_plant("Volume", -7.0, row=2))
        one.write_csv(folder / f"{code}.csv")
    message = error_message(folder)
    assert "BBB.csv line 4" in message and "'Volume' (volume)" in message and "volume=-7.0" in message


def test_custom_names_appear_in_messages(tmp_path: Path) -> None:
    prices = make_prices().rename({"close": "Adj Close"}).with_columns(_plant("Adj Close", 0.0))
    path = write_csv(prices, tmp_path / "adj.csv")
    message = error_message(path, columns=ColumnsConfig(close="Adj Close"))
    assert "'Adj Close' (close)" in message and "close=0.0" in message


# --------------------------------------------------------------------- drop mode


def test_drop_mode_counts_reasons_and_keeps_clean_rows(tmp_path: Path) -> None:
    prices = make_prices()  # 18 rows; rows 1..7 get one problem each, row 0 is duplicated
    planted = prices.with_columns(_plant("volume", "abc", 1)).with_columns(_plant("close", None, 2))
    planted = planted.with_columns(_plant("close", -1.0, 3)).with_columns(_plant("high", 1.0, 4))
    planted = planted.with_columns(_plant("close", 500.0, 5)).with_columns(_plant("volume", -1.0, 6))
    planted = planted.with_columns(_plant("low", "null", 7))  # Yahoo-style missing value
    planted = pl.concat([planted, planted.slice(0, 1), planted.slice(0, 1)])
    path = write_csv(planted, tmp_path / "dirty.csv")

    out = load_file_source(cfg(path, invalid_rows="drop"))
    expected = {reason: 0 for reason in ALL_REASONS} | {
        "non_numeric": 1,
        "null_value": 2,
        "non_positive_price": 1,
        "high_below_low": 1,
        "ohlc_outside_range": 1,
        "negative_volume": 1,
        "duplicate_key": 2,
    }
    assert out.dropped == expected
    clean = prices.with_row_index("i").filter(~pl.col("i").is_between(1, 7)).drop("i")
    assert_frame_equal(out.prices, clean)


def test_drop_mode_duplicates_keep_the_first(tmp_path: Path) -> None:
    prices = make_prices()
    later = prices.slice(0, 1).with_columns(pl.col("close") + 0.2)
    path = write_csv(pl.concat([prices, later]), tmp_path / "d.csv")
    out = load_file_source(cfg(path, invalid_rows="drop"))
    assert out.dropped["duplicate_key"] == 1
    assert_frame_equal(out.prices, prices)


# ------------------------------------------------------------------------ splits


def test_split_detection_finds_planted_split(tmp_path: Path) -> None:
    prices = make_prices(n_days=10)
    split_day = dt.date(2021, 3, 7)
    halved = pl.when((pl.col("code") == "BBB") & (pl.col("date") >= split_day))
    prices = prices.with_columns(
        halved.then(pl.col(c) / 2).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")
    )
    path = tmp_path / "split.parquet"
    prices.write_parquet(path)
    suspects = load_file_source(cfg(path)).split_suspects
    assert suspects.columns == ["code", "date", "ratio"]
    assert suspects.select("code", "date").rows() == [("BBB", split_day)]
    assert suspects["ratio"][0] == pytest.approx((20.0 + 0.25 * 6) / 2 / (20.0 + 0.25 * 5))
    # prices are reported, not fixed
    assert_frame_equal(load_file_source(cfg(path)).prices, prices)


def test_detect_splits_threshold_is_symmetric_in_log() -> None:
    prices = make_prices(codes=("AAA",), n_days=3).with_columns(pl.Series("close", [10.0, 14.4, 10.0]))
    assert detect_splits(prices, 0.45).height == 0  # +44% and -30.6% are within log(1.45)
    flagged = detect_splits(prices, 0.40)["date"].to_list()
    assert flagged == [dt.date(2021, 3, 2), dt.date(2021, 3, 3)]


# -------------------------------------------------------------------- side files


def _write_side(
    tmp_path: Path, universe: pl.DataFrame | None = None, relations: pl.DataFrame | None = None
) -> dict:
    paths: dict[str, str] = {}
    prices_path = tmp_path / "prices.parquet"
    make_prices().write_parquet(prices_path)
    if universe is not None:
        paths["universe_path"] = str(write_csv(universe, tmp_path / "universe.csv"))
    if relations is not None:
        paths["relations_path"] = str(write_csv(relations, tmp_path / "relations.csv"))
    return {"path": prices_path, **paths}


UNIVERSE = pl.DataFrame(
    {
        "Code": ["AAA", "BBB", "CCC", "ZZZ"],
        "Sector": ["Tech", "Tech", "Energy", "Tech"],
        "Industry": ["Chips", "Software", "Oil", "Chips"],
        "listed": ["2020-01-02", None, "2019-05-01", None],
    }
)
RELATIONS = pl.DataFrame(
    {
        "src": ["AAA", "BBB", "AAA", "ZZZ", "CCC"],
        "dst": ["BBB", "CCC", "AAA", "AAA", "AAA"],
        "relation": ["supply_chain", "Competitor", "competitor", "competitor", "fund_similarity"],
    }
)


def test_universe_and_relations_are_loaded(tmp_path: Path) -> None:
    kw = _write_side(tmp_path, UNIVERSE, RELATIONS)
    # drop: RELATIONS holds a self-loop, an invalid row (an error by default)
    out = load_file_source(cfg(kw.pop("path"), invalid_rows="drop", **kw))
    assert out.universe is not None and out.relations is not None
    # static files: the validity columns are there, null (unbounded)
    assert out.universe.schema == pl.Schema(
        {"code": pl.Utf8, "sector": pl.Utf8, "industry": pl.Utf8, "listed": pl.Date,
         "start": pl.Date, "end": pl.Date}
    )
    assert out.universe["code"].to_list() == ["AAA", "BBB", "CCC"]
    assert out.universe["listed"].to_list() == [dt.date(2020, 1, 2), None, dt.date(2019, 5, 1)]
    assert out.universe["start"].null_count() == 3 and out.universe["end"].null_count() == 3
    assert out.relations.schema == pl.Schema(
        {"src": pl.Utf8, "dst": pl.Utf8, "relation": pl.Utf8, "weight": pl.Float64,
         "start": pl.Date, "end": pl.Date}
    )
    assert out.relations.drop("start", "end").rows() == [
        ("BBB", "CCC", "competitor", 1.0),
        ("CCC", "AAA", "fund_similarity", 1.0),
        ("AAA", "BBB", "supply_chain", 1.0),
    ]
    assert not out.point_in_time_universe and not out.point_in_time_relations
    assert out.dropped["universe_unknown_code"] == 1
    assert out.dropped["relations_unknown_code"] == 1
    assert out.dropped["relations_self_loop"] == 1


def test_unknown_relation_name_is_an_error_even_in_drop_mode(tmp_path: Path) -> None:
    bad = RELATIONS.with_columns(_plant("relation", "supplychain", row=0))
    kw = _write_side(tmp_path, relations=bad)
    with pytest.raises(DataError) as info:
        load_file_source(cfg(kw.pop("path"), invalid_rows="drop", **kw))
    message = str(info.value)
    assert "relations.csv" in message and "'relation'" in message and "'supplychain'" in message
    assert "supply_chain" in message  # the allowed names are listed


def test_relations_weights_validated(tmp_path: Path) -> None:
    weighted = RELATIONS.with_columns(pl.Series("weight", ["0.5", "heavy", "", "1", "2"]))
    kw = _write_side(tmp_path, relations=weighted)
    path = kw.pop("path")
    with pytest.raises(DataError) as info:
        load_file_source(cfg(path, **kw))
    message = str(info.value)
    assert "relations.csv" in message and "'weight'" in message and "'heavy'" in message
    out = load_file_source(cfg(path, invalid_rows="drop", **kw))
    assert out.relations is not None
    expected = [("CCC", "AAA", "fund_similarity", 2.0), ("AAA", "BBB", "supply_chain", 0.5)]
    assert out.relations.drop("start", "end").rows() == expected
    assert out.dropped["relations_invalid_weight"] == 1


def test_universe_missing_column_and_duplicates(tmp_path: Path) -> None:
    kw = _write_side(tmp_path, universe=UNIVERSE.drop("Industry"))
    with pytest.raises(DataError) as info:
        load_file_source(cfg(kw.pop("path"), **kw))
    assert "universe.csv" in str(info.value) and "'industry'" in str(info.value)

    dup = pl.concat([UNIVERSE, UNIVERSE.slice(1, 1).with_columns(pl.lit("Energy").alias("Sector"))])
    kw = _write_side(tmp_path, universe=dup)
    path = kw.pop("path")
    with pytest.raises(DataError) as info:
        load_file_source(cfg(path, **kw))
    message = str(info.value)
    assert "universe.csv" in message and "'code'" in message and "code='BBB'" in message
    out = load_file_source(cfg(path, invalid_rows="drop", **kw))
    assert out.universe is not None
    assert out.universe.filter(pl.col("code") == "BBB")["sector"].to_list() == ["Tech"]
    assert out.dropped["universe_duplicate_code"] == 1


def test_missing_side_file_names_the_path(tmp_path: Path) -> None:
    kw = _write_side(tmp_path)
    message = error_message(kw["path"], relations_path=str(tmp_path / "rel.csv"))
    assert "rel.csv" in message and "not found" in message


# ------------------------------------------------------- files met in the wild

# Three raw files of the RSR NASDAQ benchmark, trimmed: an unnamed first column of
# timestamps with UTC offsets, 1987 rows with the vendor's open = 0.0, 2013 rows, and
# (AAME) a 2017 no-trade day written 0.0, 0.0, 0.0, close, 0.
RSR = Path(__file__).parent / "fixtures" / "rsr"
RSR_PATTERN = "NASDAQ_(.+)_30Y"
RSR_ZERO_OPENS = 21  # AAPL 10 + AAME 10 in 1987, AAME 1 in 2017


def rsr(**kwargs: object) -> DataConfig:
    return cfg(RSR, **{"code_pattern": RSR_PATTERN, **kwargs})


def rsr_error(**kwargs: object) -> str:
    with pytest.raises(DataError) as info:
        load_file_source(rsr(**kwargs))
    return str(info.value)


def row_of(prices: pl.DataFrame, code: str, day: dt.date) -> dict:
    rows = prices.filter((pl.col("code") == code) & (pl.col("date") == day)).to_dicts()
    assert len(rows) == 1, rows
    return rows[0]


def test_rsr_directory_code_pattern_and_unnamed_timestamp_column() -> None:
    out = load_file_source(rsr())
    assert sorted(out.prices["code"].unique().to_list()) == ["AAME", "AAPL", "YY"]
    assert out.prices.schema == pl.Schema(SCHEMA)
    # local calendar dates: 16:00-05:00 (winter), 16:00-04:00 (summer), a 13:00 half day
    assert row_of(out.prices, "AAPL", dt.date(2013, 1, 2))["close"] == 78.43
    assert row_of(out.prices, "AAPL", dt.date(2013, 7, 1))["close"] == 58.46
    assert row_of(out.prices, "YY", dt.date(2012, 11, 23))["volume"] == 236917.0
    assert out.prices["date"].min() == dt.date(1987, 12, 11)
    assert out.prices["date"].max() == dt.date(2017, 11, 2)


def test_without_code_pattern_the_code_is_the_stem() -> None:
    out = load_file_source(cfg(RSR))
    assert sorted(out.prices["code"].unique().to_list()) == [
        "NASDAQ_AAME_30Y", "NASDAQ_AAPL_30Y", "NASDAQ_YY_30Y"
    ]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("NYSE_(.+)_30Y", "NASDAQ_AAME_30Y.csv"),  # a file that does not match is named
        ("NASDAQ_(.+", "not a valid regular expression"),
        ("NASDAQ_.+_30Y", "no capture group"),
        ("(X)?.*", "NASDAQ_AAME_30Y"),  # an absent (or empty) first group does not match
    ],
)
def test_code_pattern_errors_name_the_knob(pattern: str, expected: str) -> None:
    message = rsr_error(code_pattern=pattern)
    assert "data.code_pattern" in message and expected in message


def test_files_the_pattern_does_not_match_are_not_read(tmp_path: Path) -> None:
    """RSR's folder holds NASDAQ_ and NYSE_ files side by side: the pattern selects a market."""
    import shutil

    folder = tmp_path / "google_finance"
    shutil.copytree(RSR, folder, ignore=shutil.ignore_patterns("*.txt"))
    (folder / "NYSE_IBM_30Y.csv").write_text("garbage that is never parsed\n")
    out = load_file_source(cfg(folder, code_pattern=RSR_PATTERN))
    assert sorted(out.prices["code"].unique()) == ["AAME", "AAPL", "YY"]


def test_utc_offsets_keep_the_local_date_and_unnamed_column_in_a_long_file(tmp_path: Path) -> None:
    path = tmp_path / "ts.csv"
    path.write_text(
        ",code,open,high,low,close,volume\n"
        "2013-01-02 20:00:00-05:00,A,10,11,9,10,100\n"  # 01:00 UTC on the 3rd: still the 2nd
        "2013-01-03T23:30:00Z,A,10,11,9,10,100\n"
        "2013-01-04 08:00:00+09:00,A,10,11,9,10,100\n"  # 23:00 UTC on the 3rd: still the 4th
        "2013-01-07 16:00:00.250-0500,A,10,11,9,10,100\n"
    )
    out = load_file_source(cfg(path)).prices
    assert out["date"].to_list() == [dt.date(2013, 1, d) for d in (2, 3, 4, 7)]
    path.write_text(path.read_text() + "2013-13-08 16:00:00-05:00,A,10,11,9,10,100\n")
    message = error_message(path)
    assert "'' (date, the unnamed first column)" in message and "line 6" in message


def test_timezone_aware_parquet_keeps_the_local_date(tmp_path: Path) -> None:
    prices = make_prices(codes=("AAA",), n_days=2)
    local = prices.with_columns(
        (pl.col("date").cast(pl.Datetime("us")) + pl.duration(hours=20)).dt.replace_time_zone("America/New_York")
    )
    path = tmp_path / "tz.parquet"
    local.write_parquet(path)
    assert load_file_source(cfg(path)).prices["date"].to_list() == prices["date"].to_list()


def test_a_named_first_column_is_not_taken_for_the_date(tmp_path: Path) -> None:
    path = write_csv(make_prices().rename({"date": "when"}), tmp_path / "named.csv")
    message = error_message(path)
    assert "'date' (data.columns.date)" in message and "'when'" in message


# ------------------------------------------------------------------ zero opens


def test_zero_open_fill_close_counts_and_fills() -> None:
    out = load_file_source(rsr())
    assert out.zero_open_rows == RSR_ZERO_OPENS
    assert out.dropped["zero_open"] == 0
    assert out.prices.height == 90  # every row kept
    # close inside [low, high]: the open becomes the close
    first = row_of(out.prices, "AAPL", dt.date(1987, 12, 11))
    assert first["open"] == 1.2143 and (first["high"], first["low"]) == (1.2411, 1.1964)
    # a no-trade day 0, 0, 0, close: a flat candle at the close
    flat = row_of(out.prices, "AAME", dt.date(2017, 10, 31))
    assert flat["open"] == flat["high"] == flat["low"] == flat["close"] == 3.55
    assert flat["volume"] == 0.0
    # real opens are untouched
    assert row_of(out.prices, "AAPL", dt.date(2013, 1, 2))["open"] == 79.12


def test_zero_open_fill_clips_the_close_into_the_day_range() -> None:
    from alphagraph.data.validate import fix_zero_open, prepare_prices

    frame = pl.DataFrame(
        {"date": ["2021-03-01"] * 3, "code": ["A", "B", "C"], "open": ["0", "0.0", "5"],
         "high": ["12", "12", "12"], "low": ["10", "10", "4"], "close": ["13", "0", "6"],
         "volume": ["1", "1", "1"]}
    )
    prepared = prepare_prices(frame, "x.csv", "error")
    fixed, n = fix_zero_open(prepared, "fill_close", "x.csv")
    assert n == 1  # B has close 0: not a placeholder, the row checks report it
    assert fixed["open"].to_list() == [12.0, 0.0, 5.0]


def test_zero_open_drop_removes_and_counts() -> None:
    out = load_file_source(rsr(zero_open="drop"))
    assert out.zero_open_rows == RSR_ZERO_OPENS
    assert out.dropped["zero_open"] == RSR_ZERO_OPENS
    assert out.prices.height == 90 - RSR_ZERO_OPENS
    assert out.prices.filter(pl.col("date").dt.year() == 1987).height == 0
    assert (out.prices["open"] > 0).all()


def test_zero_open_error_names_column_rows_and_knob() -> None:
    message = rsr_error(zero_open="error")
    assert "data.zero_open" in message and "(open)" in message
    assert f"{RSR_ZERO_OPENS} row(s)" in message
    assert "NASDAQ_AAME_30Y.csv line 2" in message and "open=0.0" in message


def test_zero_opens_without_the_knob_are_non_positive_prices() -> None:
    """validate_prices (the synthetic path) has no placeholder rule: a zero is a zero."""
    prices = make_prices().with_columns(_plant("open", "0.0"))
    with pytest.raises(DataError, match="non_positive_price"):
        validate_prices(prices, "synthetic", "error")


# --------------------------------------------------------------- tickers list


def test_tickers_list_restricts_and_counts_missing(tmp_path: Path) -> None:
    folder = tmp_path / "rsr"
    folder.mkdir()
    for f in RSR.glob("*.csv"):
        (folder / f.name).write_bytes(f.read_bytes())
    # an unlisted file is not even read
    (folder / "NASDAQ_AAME_30Y.csv").write_text("garbage,\n1,2,3\n")
    out = load_file_source(cfg(folder, code_pattern=RSR_PATTERN, tickers_path=str(RSR / "tickers.txt")))
    assert sorted(out.prices["code"].unique().to_list()) == ["AAPL", "YY"]  # header 'Ticker' skipped
    assert out.tickers_missing == 1  # MSFT


def test_tickers_list_on_a_long_file(tmp_path: Path) -> None:
    path = write_csv(make_prices(), tmp_path / "p.csv")
    listed = tmp_path / "codes.txt"
    listed.write_text("code\n  CCC \n\nAAA\nAAA\nZZZ\n")
    out = load_file_source(cfg(path, tickers_path=str(listed)))
    assert sorted(out.prices["code"].unique().to_list()) == ["AAA", "CCC"]
    assert out.tickers_missing == 1


def test_tickers_list_without_any_price_is_an_error(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text("AAPL.O\nYY.O\n")
    message = rsr_error(tickers_path=str(listed))
    assert "list.txt" in message and "data.tickers_path" in message
    assert "'AAPL.O'" in message and "'AAPL'" in message
    path = write_csv(make_prices(), tmp_path / "p.csv")
    message = error_message(path, tickers_path=str(listed))
    assert "list.txt" in message and "data.tickers_path" in message and "'AAA'" in message
    assert "not found" in error_message(path, tickers_path=str(tmp_path / "nope.txt"))


# ---------------------------------------------------------------- date window


def test_date_window_removes_rows_before_validation() -> None:
    # the 1987 zero opens and the 2017 no-trade day lie outside: even zero_open: error passes
    out = load_file_source(rsr(start="2013-01-01", end="2016-12-31", zero_open="error"))
    assert out.prices["date"].min() == dt.date(2013, 1, 2)
    assert out.prices["date"].max() == dt.date(2013, 7, 5)
    assert out.zero_open_rows == 0
    only_end = load_file_source(rsr(end="2012-12-31"))
    assert only_end.prices["date"].max() == dt.date(2012, 11, 27)


def test_empty_date_window_names_the_knobs_and_the_data_range() -> None:
    message = rsr_error(start="2020-01-01")
    assert "data.start" in message and "data.end" in message
    assert "1987-12-11" in message and "2017-11-02" in message


# ----------------------------------------------------------------- adj close

YAHOO = pl.DataFrame(
    {
        "Date": ["2021-03-01", "2021-03-02", "2021-03-03"],
        "Open": ["10.0", "11.0", "12.0"],
        "High": ["11.0", "12.0", "13.0"],
        "Low": ["9.0", "10.0", "11.0"],
        "Close": ["10.0", "12.0", "12.5"],
        "Adj Close": ["5.0", "9.0", "12.5"],
        "Volume": ["100", "300", "50"],
    }
)


def _yahoo_dir(tmp_path: Path, frame: pl.DataFrame = YAHOO) -> Path:
    folder = tmp_path / "yahoo"
    folder.mkdir(exist_ok=True)
    frame.write_csv(folder / "AAA.csv")
    return folder


def test_adj_close_scales_prices_and_volume(tmp_path: Path) -> None:
    out = load_file_source(cfg(_yahoo_dir(tmp_path), adjust="adj_close")).prices
    ratio = [0.5, 0.75, 1.0]
    assert out["open"].to_list() == pytest.approx([10.0 * 0.5, 11.0 * 0.75, 12.0])
    assert out["high"].to_list() == pytest.approx([11.0 * 0.5, 12.0 * 0.75, 13.0])
    assert out["low"].to_list() == pytest.approx([9.0 * 0.5, 10.0 * 0.75, 11.0])
    assert out["close"].to_list() == pytest.approx([5.0, 9.0, 12.5])  # the adjusted close
    assert out["volume"].to_list() == pytest.approx([100 / ratio[0], 300 / ratio[1], 50.0])


def test_adj_close_ignored_with_adjust_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="alphagraph"):
        out = load_file_source(cfg(_yahoo_dir(tmp_path))).prices
    assert out["close"].to_list() == [10.0, 12.0, 12.5]
    assert any("ignored" in r.getMessage() and "data.adjust" in r.getMessage() for r in caplog.records)


def test_adj_close_missing_column_is_an_error(tmp_path: Path) -> None:
    message = error_message(_yahoo_dir(tmp_path, YAHOO.drop("Adj Close")), adjust="adj_close")
    assert "AAA.csv" in message and "data.adjust" in message and "'adj close'" in message


def test_adj_close_invalid_ratio_is_a_row_problem(tmp_path: Path) -> None:
    bad = YAHOO.with_columns(pl.Series("Adj Close", ["5.0", "0", "12.5"]))
    folder = _yahoo_dir(tmp_path, bad)
    message = error_message(folder, adjust="adj_close")
    assert "'invalid_adj_close'" in message and "'Adj Close' (adj_close)" in message
    assert "AAA.csv line 3" in message
    out = load_file_source(cfg(folder, adjust="adj_close", invalid_rows="drop"))
    assert out.dropped["invalid_adj_close"] == 1
    assert out.prices["date"].to_list() == [dt.date(2021, 3, 1), dt.date(2021, 3, 3)]


# ---------------------------------------------------------------- max price


def test_implausible_price_is_an_error_naming_the_knob(tmp_path: Path) -> None:
    huge = make_prices().with_columns(_plant(c, 1e300) for c in ("open", "high", "low", "close"))
    path = write_csv(huge, tmp_path / "huge.csv")
    message = error_message(path)
    assert "huge.csv" in message and "'implausible_price'" in message and "data.max_price" in message
    assert "line 6" in message
    out = load_file_source(cfg(path, invalid_rows="drop"))
    assert out.dropped["implausible_price"] == 1 and out.prices.height == make_prices().height - 1
    # a higher ceiling accepts the row
    assert load_file_source(cfg(path, max_price=1e301)).prices.height == make_prices().height


# --------------------------------------------------------- side-file code match


def test_side_files_with_other_code_spellings_are_an_error(tmp_path: Path) -> None:
    universe = pl.DataFrame(
        {"code": ["AAPL.O", "AAME.O", "YY.O", "MSFT.O"], "sector": ["Tech"] * 4, "industry": ["X"] * 4}
    )
    path = write_csv(universe, tmp_path / "universe.csv")
    message = rsr_error(universe_path=str(path))
    assert "universe.csv" in message and "'code'" in message and "data.min_code_match" in message
    assert "0.0%" in message and "'AAPL.O'" in message and "'AAPL'" in message
    # a file meant for a few codes passes with a lower threshold (unknown codes are dropped)
    out = load_file_source(rsr(universe_path=str(path), min_code_match=0.0))
    assert out.universe is not None and out.universe.height == 0

    relations = pl.DataFrame({"src": ["AAPL.O", "YY"], "dst": ["YY.O", "AAME"], "relation": ["competitor"] * 2})
    rel_path = write_csv(relations, tmp_path / "relations.csv")
    message = rsr_error(relations_path=str(rel_path), min_code_match=0.7)
    assert "relations.csv" in message and "'src', 'dst'" in message and "data.min_code_match" in message
    assert "66.7%" in message and "'AAPL.O'" in message
    out = load_file_source(rsr(relations_path=str(rel_path)))  # 2 of 3 codes: above the default
    assert out.relations is not None and out.relations["src"].to_list() == ["YY"]


# ------------------------------------------------------------- point in time

PIT_UNIVERSE = pl.DataFrame(
    {
        "code": ["AAA", "AAA", "BBB", "CCC"],
        "sector": ["Tech", "Energy", "Tech", "Energy"],
        "industry": ["Chips", "Oil", "Software", "Oil"],
        "start": [None, "2021-03-04", "2021-03-01", ""],
        "end": ["2021-03-03", None, None, ""],
    }
)


def test_point_in_time_universe_and_relations_are_parsed(tmp_path: Path) -> None:
    relations = pl.DataFrame(
        {
            "src": ["AAA", "AAA", "BBB"],
            "dst": ["BBB", "BBB", "CCC"],
            "relation": ["competitor", "competitor", "supply_chain"],
            "start": ["2021-03-01", "2021-03-05", None],
            "end": ["2021-03-04", None, "05/03/2021"],
        }
    )
    kw = _write_side(tmp_path, PIT_UNIVERSE, relations)
    out = load_file_source(cfg(kw.pop("path"), date_format="%d/%m/%Y", **kw))
    assert out.point_in_time_universe and out.point_in_time_relations
    assert out.universe is not None and out.relations is not None
    assert out.universe.select("code", "sector", "start", "end").rows() == [
        ("AAA", "Tech", None, dt.date(2021, 3, 3)),
        ("AAA", "Energy", dt.date(2021, 3, 4), None),
        ("BBB", "Tech", dt.date(2021, 3, 1), None),
        ("CCC", "Energy", None, None),
    ]
    # the same (src, dst, relation) twice with different starts: two rows
    assert out.relations.select("src", "dst", "start", "end").rows() == [
        ("AAA", "BBB", dt.date(2021, 3, 1), dt.date(2021, 3, 4)),
        ("AAA", "BBB", dt.date(2021, 3, 5), None),
        ("BBB", "CCC", None, dt.date(2021, 3, 5)),
    ]


def test_point_in_time_universe_overlap_is_rejected(tmp_path: Path) -> None:
    overlapping = PIT_UNIVERSE.with_columns(_plant("end", "2021-03-04", row=0))
    kw = _write_side(tmp_path, overlapping)
    path = kw.pop("path")
    for mode in ("error", "drop"):  # an overlap cannot be resolved by dropping a row
        with pytest.raises(DataError) as info:
            load_file_source(cfg(path, invalid_rows=mode, **kw))
        message = str(info.value)
        assert "universe.csv" in message and "overlap" in message
        assert "line 2" in message and "line 3" in message and "code='AAA'" in message
    # an open-ended interval followed by a later one overlaps too
    kw = _write_side(tmp_path, PIT_UNIVERSE.with_columns(_plant("end", None, row=0)))
    with pytest.raises(DataError, match="overlap"):
        load_file_source(cfg(kw.pop("path"), **kw))


def test_point_in_time_row_problems(tmp_path: Path) -> None:
    reversed_interval = PIT_UNIVERSE.with_columns(_plant("start", "2021-03-09", row=2))
    kw = _write_side(tmp_path, reversed_interval.with_columns(_plant("end", "2021-03-02", row=2)))
    path = kw.pop("path")
    message = str(pytest.raises(DataError, load_file_source, cfg(path, **kw)).value)
    assert "'universe_invalid_interval'" in message and "code='BBB'" in message
    out = load_file_source(cfg(path, invalid_rows="drop", **kw))
    assert out.dropped["universe_invalid_interval"] == 1
    # two rows of a code without a start are duplicates
    twice = pl.concat([PIT_UNIVERSE, PIT_UNIVERSE.slice(3, 1).with_columns(pl.lit("Tech").alias("sector"))])
    kw = _write_side(tmp_path, twice)
    path = kw.pop("path")
    message = str(pytest.raises(DataError, load_file_source, cfg(path, **kw)).value)
    assert "'universe_duplicate_code'" in message and "code='CCC'" in message
    out = load_file_source(cfg(path, invalid_rows="drop", **kw))
    assert out.dropped["universe_duplicate_code"] == 1
    assert out.universe is not None and out.universe.filter(pl.col("code") == "CCC")["sector"].to_list() == ["Energy"]
