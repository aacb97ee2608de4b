"""The user-file data source: layouts, parsing, validation, drop counts, splits, side files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from alphagraph.config import ColumnsConfig, DataConfig
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
    out = load_file_source(cfg(kw.pop("path"), **kw))
    assert out.universe is not None and out.relations is not None
    assert out.universe.schema == pl.Schema(
        {"code": pl.Utf8, "sector": pl.Utf8, "industry": pl.Utf8, "listed": pl.Date}
    )
    assert out.universe["code"].to_list() == ["AAA", "BBB", "CCC"]
    assert out.universe["listed"].to_list() == [dt.date(2020, 1, 2), None, dt.date(2019, 5, 1)]
    assert out.relations.schema == pl.Schema(
        {"src": pl.Utf8, "dst": pl.Utf8, "relation": pl.Utf8, "weight": pl.Float64}
    )
    assert out.relations.rows() == [
        ("BBB", "CCC", "competitor", 1.0),
        ("CCC", "AAA", "fund_similarity", 1.0),
        ("AAA", "BBB", "supply_chain", 1.0),
    ]
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
    assert out.relations.rows() == expected
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
