"""The user-file data source (``data.source: file``).

``data.path`` is either one long-format CSV/Parquet file (columns named per
``data.columns``) or a directory of per-ticker CSVs (``AAPL.csv`` -> code
``"AAPL"``, or the first group of ``data.code_pattern`` matched against the
file stem; headers such as ``Date, Open, High, Low, Close, Volume`` matched to
``data.columns`` case-insensitively; an unnamed first column holds the dates
when there is no date column). Optional side files: ``data.universe_path``
(code, sector, industry) and ``data.relations_path`` (src, dst, relation,
weight), both optionally point-in-time (``start``, ``end`` validity dates).

Before validation the prices are restricted to ``data.tickers_path`` (when
set) and to ``[data.start, data.end]``, so that junk outside the studied window
does not fail a run. Then: vendor zero opens (``data.zero_open``), the
adjusted close (``data.adjust``), the row checks (``data.max_price`` among
them).

Universe and relations rows that name a code absent from the prices are always
dropped and counted (``universe_unknown_code``, ``relations_unknown_code``):
side files usually describe a wider market than the price file. But when less
than ``data.min_code_match`` of the price codes appear in a side file, the
codes are spelled differently (``AAPL`` vs ``AAPL.O``): an error. A self-loop
in relations (src == dst; the graph stage adds its own) is an invalid row
(``relations_self_loop``), as is a weight that is not a finite number (NaN
included; an empty cell is weight 1). An unknown relation name is always an
error (a typo would silently remove a relation type).

Two per-ticker files whose codes differ only in case (``AAPL.csv``,
``aapl.CSV``) are an error: one file system holds them as two stocks,
another as one. A CSV that is not UTF-8 is an error naming the line and byte
of the first bad byte.
"""

from __future__ import annotations

import codecs
import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import polars as pl

from alphagraph.runtime.config import DataConfig
from alphagraph.data.validate import (
    ADJ_CLOSE,
    ALL_REASONS,
    CANONICAL,
    FILE_COL,
    MAX_SHOWN,
    NUMERIC_COLUMNS,
    ROW_COL,
    VALIDITY,
    DataError,
    check_prices,
    detect_splits,
    fix_zero_open,
    parse_dates,
    prepare_prices,
    require_rows,
    validate_relations,
    validate_universe,
)
from alphagraph.runtime.log import get_logger

log = get_logger("data.file_source")

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
UNIVERSE_COLUMNS = ("code", "sector", "industry", "listed", "delisted", *VALIDITY)
RELATION_COLUMNS = ("src", "dst", "relation", "weight", *VALIDITY)
# Names a writer gives a column it has no name for: an empty header cell (the RSR
# files, pandas' to_csv of a date index), pandas' re-read "Unnamed: 0", polars'
# "column_1", the pandas index saved in Parquet.
AUTO_NAMES = re.compile(r"|unnamed: ?0|column_?1|__index_level_0__", re.IGNORECASE)
# A first line that names the column rather than a code.
TICKER_HEADERS = ("code", "ticker", "symbol")


@dataclass(frozen=True)
class FileSource:
    """Validated user data in the canonical schemas of DESIGN.md."""

    prices: pl.DataFrame
    universe: pl.DataFrame | None
    relations: pl.DataFrame | None
    dropped: dict[str, int]
    split_suspects: pl.DataFrame
    tickers_missing: int = 0  # codes of data.tickers_path without prices
    zero_open_rows: int = 0  # rows with open == 0 and close > 0, however handled
    point_in_time_universe: bool = False  # the universe file has start/end columns
    point_in_time_relations: bool = False  # the relations file has start/end columns


# ------------------------------------------------------------------------ reading


def _scan(path: Path) -> pl.LazyFrame:
    """Lazy reader; CSV cells stay text so types are checked (and codes keep leading zeros)."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return pl.scan_parquet(path).with_row_index(ROW_COL)
    if suffix in CSV_SUFFIXES:
        return pl.scan_csv(path, infer_schema=False, row_index_name=ROW_COL)
    raise DataError(f"{path}: unsupported file type {suffix!r} (expected .csv or .parquet)")


def read_table(path: Path) -> pl.DataFrame:
    """A whole CSV (cells as text) or Parquet file, with a clear error when it cannot be read."""
    lf = _scan(path)
    _schema_names(lf, path)
    return _collect(lf, path).drop(ROW_COL)


def _schema_names(lf: pl.LazyFrame, path: Path) -> list[str]:
    try:
        names = lf.collect_schema().names()
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _encoding_error(path) or DataError(f"{path}: cannot read the file: {_first_line(exc)}") from None
    if _garbled(names) and (error := _encoding_error(path)):
        raise error
    return [n for n in names if n != ROW_COL]


def _collect(lf: pl.LazyFrame, path: Path) -> pl.DataFrame:
    try:
        return lf.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _encoding_error(path) or DataError(f"{path}: cannot parse the file: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    """Polars errors end with hints about reader options the user cannot set here."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


CHUNK_BYTES = 1 << 24
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _first_non_utf8(path: Path) -> tuple[int, int] | None:
    """(byte offset, line number) of the first byte of ``path`` that is not UTF-8; None if all is.

    Read in chunks, so a large file is not held twice; only called once a read has failed.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    read = newlines = 0
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CHUNK_BYTES)
            pending = len(decoder.getstate()[0])  # the tail of a character split between chunks
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                offset = read - pending + exc.start
                return offset, newlines + chunk.count(b"\n", 0, max(offset - read, 0)) + 1
            if not chunk:
                return None
            read += len(chunk)
            newlines += chunk.count(b"\n")


def _encoding_error(path: Path, where: str | None = None) -> DataError | None:
    """A DataError when the text file ``path`` is not UTF-8 (how to convert it included), else None.

    ``where`` names the param that gave the path, when the caller's messages do not.
    """
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return None
    fix = "Re-save it as UTF-8 (CSV UTF-8 in Excel), e.g."
    param = f" ({where})" if where else ""
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
        if head.startswith(UTF16_BOMS) or b"\x00" in head.split(b"\n", 1)[0]:
            return DataError(
                f"{path}: the file is UTF-16 (as Excel's Unicode Text export writes it), not UTF-8{param}."
                f" {fix} iconv -f utf-16 -t utf-8 {path.name} > utf8_{path.name}, and use the new file"
            )
        found = _first_non_utf8(path)
        if found is None:
            return None
        offset, line = found
        start = max(offset - 40, 0)
        with path.open("rb") as fh:
            fh.seek(start)
            around = fh.read(80)
    except OSError:
        return None
    bad = offset - start
    text = around[:bad].rsplit(b"\n", 1)[-1] + around[bad:].split(b"\n", 1)[0]  # the line, near the byte
    return DataError(
        f"{path}: line {line} (byte offset {offset}) is not UTF-8{param}: byte 0x{around[bad]:02X} in"
        f" {text!r}; the file is probably Latin-1 or Windows-1252. {fix} iconv -f latin1 -t utf-8"
        f" {path.name} > utf8_{path.name} (-f cp1252 for a Windows export), and use the new file"
    )


def _garbled(names: Sequence[str]) -> bool:
    """Column names that a lossy decoding produced: a header that is not UTF-8."""
    return any("\ufffd" in name or "\x00" in name for name in names)


def _find(available: Sequence[str], want: str) -> str | None:
    """The file's column for ``want``: the exact name, else a case-insensitive match."""
    if want in available:
        return want
    by_lower: dict[str, str] = {}
    for name in available:
        by_lower.setdefault(name.strip().lower(), name)
    return by_lower.get(want.strip().lower())


def match_columns(
    available: Sequence[str],
    wanted: Mapping[str, str],
    source: Path | str,
    optional: Sequence[str] = (),
    config_key: str | None = None,
) -> dict[str, str]:
    """Map canonical name -> the file's column: exact name first, else case-insensitive.

    Missing required columns raise a DataError listing them and the file's columns.
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    for canon, want in wanted.items():
        actual = _find(available, want)
        if actual is not None:
            found[canon] = actual
        elif canon not in optional:
            hint = f" ({config_key}.{canon})" if config_key else ""
            missing.append(f"{want!r}{hint}")
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)};"
            f" the file has columns: {', '.join(map(repr, available)) or '(none)'}"
        )
    return found


def _price_columns(
    available: Sequence[str], columns: Mapping[str, str], source: Path, adjust: bool
) -> dict[str, str]:
    """``match_columns`` for prices, plus the unnamed date column and the adjusted close.

    The result holds ``adj_close`` whenever the file has that column (the caller
    reads it only with ``data.adjust: adj_close``).
    """
    wanted = {k: v for k, v in columns.items() if k != ADJ_CLOSE}
    if "date" in wanted and _find(available, wanted["date"]) is None and available:
        if AUTO_NAMES.fullmatch(available[0].strip()):
            # RSR / pandas exports: the date index is written as a first column without a name.
            wanted["date"] = available[0]
    mapping = match_columns(available, wanted, source, config_key="data.columns")
    adj = _find(available, columns[ADJ_CLOSE])
    if adj is not None and adj != mapping.get("close"):
        mapping[ADJ_CLOSE] = adj
    elif adjust and adj is None:
        raise DataError(
            f"{source}: data.adjust: adj_close needs an adjusted-close column"
            f" {columns[ADJ_CLOSE]!r} (data.columns.adj_close); the file has columns:"
            f" {', '.join(map(repr, available)) or '(none)'}. Set data.adjust: none to use the"
            " prices as they are."
        )
    return mapping


def _select(lf: pl.LazyFrame, mapping: Mapping[str, str]) -> pl.LazyFrame:
    return lf.select(ROW_COL, *(pl.col(actual).alias(canon) for canon, actual in mapping.items()))


def _resolve(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path}: data file or directory not found (data.path)")
    return path


def _examples(values: Sequence[str]) -> str:
    return ", ".join(map(repr, list(values)[:MAX_SHOWN])) or "(none)"


# ------------------------------------------------------------------------ tickers


def ticker_lines(path: Path, where: str) -> list[str]:
    """The non-blank lines of a one-code-per-line file, in order; a first line code/ticker/symbol is a header.

    ``where`` names the param or option that gave the path, for the error messages."""
    if not path.is_file():
        what = "is a directory, expected a text file" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {what} ({where})")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError as exc:
        error = _encoding_error(path, where)
        raise error or DataError(f"{path}: cannot read the tickers file ({where}): {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the tickers file ({where}): {exc}") from None
    lines = [line for line in lines if line]
    if lines and lines[0].lower() in TICKER_HEADERS:
        lines = lines[1:]
    if not lines:
        raise DataError(f"{path}: the tickers file lists no code ({where})")
    return lines


def read_tickers(path_str: str) -> list[str]:
    """The codes of ``data.tickers_path``: one per line; a first line code/ticker/symbol is a header."""
    return list(dict.fromkeys(ticker_lines(Path(path_str), "data.tickers_path")))  # file order, duplicates once


def _no_listed_code(tickers_path: str, tickers: Sequence[str], found: Sequence[str], where: str) -> DataError:
    return DataError(
        f"{tickers_path}: none of the {len(tickers)} codes listed in data.tickers_path has prices in"
        f" {where}; listed: {_examples(tickers)}; codes in the prices: {_examples(sorted(found))}."
        " Fix the list (codes must be spelled as in the prices), or set data.tickers_path: null."
    )


# ------------------------------------------------------------------------- prices


def _read_long(
    path: Path, columns: Mapping[str, str], adjust: bool, cfg: DataConfig, tickers: Sequence[str] | None
) -> tuple[pl.DataFrame, dict[str, str]]:
    lf = _scan(path)
    mapping = _price_columns(_schema_names(lf, path), columns, path, adjust)
    if not adjust and mapping.pop(ADJ_CLOSE, None) is not None:
        _log_ignored_adj(path)
    df = _collect(_select(lf, mapping), path)
    require_rows(df, str(path))
    if tickers is not None:
        code = pl.col("code").cast(pl.Utf8).str.strip_chars()
        kept = df.filter(code.is_in(list(tickers)))
        if kept.height == 0:
            found = df.select(code.unique().drop_nulls().sort().head(MAX_SHOWN)).to_series().to_list()
            raise _no_listed_code(str(cfg.tickers_path), tickers, found, str(path))
        df = kept
    return df, mapping


def _log_ignored_adj(where: Path | str) -> None:
    log.info("%s: the adjusted-close column is ignored (data.adjust: none): prices are used as they are",
             where)


def _code_pattern(pattern: str) -> re.Pattern[str]:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"data.code_pattern: {pattern!r} is not a valid regular expression: {exc}") from None
    if compiled.groups < 1:
        raise DataError(
            f"data.code_pattern: {pattern!r} has no capture group; the code is the first group,"
            " e.g. NASDAQ_(.+)_30Y for NASDAQ_AAPL_30Y.csv"
        )
    return compiled


def _ticker_files(directory: Path, pattern: str | None) -> dict[Path, str]:
    """Per-ticker files and their codes: the stem, or the first group of ``data.code_pattern``."""
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in CSV_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{directory}: no per-ticker .csv files in the directory (data.path)")
    if pattern is None:
        return {f: f.stem for f in files}
    regex = _code_pattern(pattern)
    codes = {f: (m.group(1) if (m := regex.fullmatch(f.stem)) else None) for f in files}
    unmatched = [f.name for f, code in codes.items() if not code]
    if len(unmatched) == len(files):
        raise DataError(
            f"{directory}: none of the {len(files)} file name(s) match data.code_pattern {pattern!r}"
            f" (matched against the name without .csv; the code is the first group, which must not be"
            f" empty): {_examples(unmatched)}"
        )
    if unmatched:  # the pattern also selects: RSR's folder holds NASDAQ_ and NYSE_ files side by side
        log.info("%d of %d files do not match data.code_pattern %r and are not read: %s",
                 len(unmatched), len(files), pattern, _examples(unmatched))
    return {f: code for f, code in codes.items() if code}


def _check_case_collisions(directory: Path, coded: Mapping[Path, str], pattern: str | None) -> None:
    """Structural: two files give one code, or codes equal but for case (``AAPL.csv``, ``aapl.CSV``).

    Codes that differ in case would be two stocks here and one file on a
    case-insensitive file system (macOS, Windows); one code from two files
    (``AAPL.csv`` beside ``AAPL.CSV``, two names ``data.code_pattern`` maps to one
    code) would be one stock's rows twice.
    """
    files = pl.DataFrame(
        {"file": [f.name for f in coded], "code": list(coded.values())}, schema={"file": pl.Utf8, "code": pl.Utf8}
    )
    clashes = (
        files.group_by(pl.col("code").str.to_lowercase().alias("key"), maintain_order=True)
        .agg("file", "code")
        .filter(pl.col("file").list.len() > 1)
    )
    if clashes.height == 0:
        return
    shown = "; ".join(
        " and ".join(f"{file} (code {code!r})" for file, code in zip(row["file"], row["code"]))
        for row in clashes.head(MAX_SHOWN).iter_rows(named=True)
    )
    how = f"the first group of data.code_pattern {pattern!r}" if pattern else "the file name without .csv"
    raise DataError(
        f"{directory}: {clashes.height} code(s) come from more than one file (the code is {how},"
        f" compared ignoring case): {shown}. Keep one file per stock and remove or merge the others"
        " (a case-insensitive file system, as on macOS or Windows, cannot even hold both)"
    )


def _read_ticker(
    path: Path, code: str, columns: Mapping[str, str], adjust: bool, files: pl.Enum
) -> tuple[pl.DataFrame, dict[str, str]]:
    """One ticker's rows; the code comes from the file name (any code column in the file is ignored)."""
    try:  # eager: concatenating thousands of lazy scans plans very slowly in polars
        df = pl.read_csv(path, infer_schema=False, row_index_name=ROW_COL)
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _encoding_error(path) or DataError(f"{path}: cannot parse the file: {_first_line(exc)}") from None
    available = [c for c in df.columns if c != ROW_COL]
    if _garbled(available) and (error := _encoding_error(path)):
        raise error
    mapping = _price_columns(available, columns, path, adjust)
    require_rows(df, str(path))
    read = {k: v for k, v in mapping.items() if adjust or k != ADJ_CLOSE}
    df = df.select(ROW_COL, *(pl.col(actual).alias(canon) for canon, actual in read.items()))
    tags = [pl.lit(code).alias("code"), pl.lit(path.name, dtype=files).alias(FILE_COL)]
    return df.with_columns(tags), mapping


def _read_directory(
    directory: Path, columns: Mapping[str, str], adjust: bool, cfg: DataConfig, tickers: Sequence[str] | None
) -> tuple[pl.DataFrame, dict[str, str]]:
    coded = _ticker_files(directory, cfg.code_pattern)
    if tickers is not None:
        listed = set(tickers)
        # Only the listed files are read: a 30-year archive of 3,000 tickers is slow to parse.
        kept = {f: c for f, c in coded.items() if c in listed}
        if not kept:
            raise _no_listed_code(str(cfg.tickers_path), tickers, sorted(set(coded.values())), str(directory))
        coded = kept
    _check_case_collisions(directory, coded, cfg.code_pattern)
    enum = pl.Enum([f.name for f in coded])
    wanted = {k: v for k, v in columns.items() if k != "code"}
    # polars releases the GIL while parsing; map() re-raises the first failing file in order
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        read = list(pool.map(lambda item: _read_ticker(*item, wanted, adjust, enum), coded.items()))
    with_adj = [m for _, m in read if ADJ_CLOSE in m]
    if with_adj and not adjust:
        _log_ignored_adj(f"{directory} ({len(with_adj)} of {len(read)} files)")
    df = pl.concat([frame for frame, _ in read], how="vertical", rechunk=True)
    names = {k: v for k, v in read[0][1].items() if adjust or k != ADJ_CLOSE}
    return df, {**names, "code": "code"}


def _in_window(df: pl.DataFrame, cfg: DataConfig, source: str) -> pl.DataFrame:
    """Rows dated within [data.start, data.end]; rows without a date stay for the checks to report."""
    if cfg.start is None and cfg.end is None:
        return df
    start = dt.date.fromisoformat(cfg.start) if cfg.start else None
    end = dt.date.fromisoformat(cfg.end) if cfg.end else None
    date = pl.col("date")
    inside = pl.lit(True)
    if start is not None:
        inside = inside & (date >= start)
    if end is not None:
        inside = inside & (date <= end)
    kept = df.filter(inside | date.is_null())
    if kept.select(date.is_not_null().any()).item():
        if kept.height < df.height:
            log.info("%d rows outside [%s, %s] (data.start, data.end) not used", df.height - kept.height,
                     cfg.start or "first", cfg.end or "last")
        return kept
    first, last = df.select(date.min().alias("first"), date.max().alias("last")).row(0)
    raise DataError(
        f"{source}: no rows between data.start = {cfg.start or '(none)'} and data.end ="
        f" {cfg.end or '(none)'}; the data's dates run from {first} to {last}"
    )


def _read_prices(cfg: DataConfig, tickers: Sequence[str] | None) -> tuple[pl.DataFrame, dict[str, str], str]:
    path = _resolve(Path(cfg.path))
    columns = asdict(cfg.columns)
    adjust = cfg.adjust == "adj_close"
    if path.is_dir():
        df, names = _read_directory(path, columns, adjust, cfg, tickers)
    else:
        if cfg.code_pattern is not None:
            log.warning("data.code_pattern applies to a directory of per-ticker files; ignored for %s", path)
        df, names = _read_long(path, columns, adjust, cfg, tickers)
    source = str(path)
    df = parse_dates(df, "date", cfg.date_format, source, names)
    return _in_window(df, cfg, source), names, source


def read_prices(cfg: DataConfig) -> tuple[pl.DataFrame, dict[str, str], str]:
    """Raw price frame (canonical names, dates parsed, tickers and date range applied),
    the file's column names, the source."""
    tickers = read_tickers(cfg.tickers_path) if cfg.tickers_path is not None else None
    return _read_prices(cfg, tickers)


# -------------------------------------------------------------------- side files


class Side(NamedTuple):
    """A validated side file (None when not configured), its drop counts, point-in-time or not."""

    frame: pl.DataFrame | None
    dropped: dict[str, int]
    point_in_time: bool


def _read_side(
    path_str: str, wanted: Sequence[str], optional: Sequence[str], key: str
) -> tuple[pl.DataFrame, bool]:
    path = Path(path_str)
    if not path.exists():
        raise DataError(f"{path}: file not found ({key})")
    if path.is_dir():
        raise DataError(f"{path}: expected a CSV or Parquet file, got a directory ({key})")
    lf = _scan(path)
    mapping = match_columns(_schema_names(lf, path), {c: c for c in wanted}, path, optional)
    point_in_time = any(c in mapping for c in VALIDITY)
    return _collect(_select(lf, mapping), path), point_in_time


def load_universe(cfg: DataConfig, codes: pl.Series | None) -> Side:
    """The validated universe file; frame None when ``data.universe_path`` is null."""
    if cfg.universe_path is None:
        return Side(None, {}, False)
    optional = ("listed", "delisted", *VALIDITY)
    raw, pit = _read_side(cfg.universe_path, UNIVERSE_COLUMNS, optional, "data.universe_path")
    frame, dropped = validate_universe(
        raw, cfg.universe_path, cfg.invalid_rows, codes, cfg.date_format, cfg.min_code_match
    )
    return Side(frame, dropped, pit)


def load_relations(cfg: DataConfig, codes: pl.Series | None) -> Side:
    """The validated relations file; frame None when ``data.relations_path`` is null."""
    if cfg.relations_path is None:
        return Side(None, {}, False)
    raw, pit = _read_side(cfg.relations_path, RELATION_COLUMNS, ("weight", *VALIDITY), "data.relations_path")
    frame, dropped = validate_relations(
        raw, cfg.relations_path, cfg.invalid_rows, codes, cfg.date_format, cfg.min_code_match
    )
    return Side(frame, dropped, pit)


# -------------------------------------------------------------------------- entry


def load_file_source(cfg: DataConfig) -> FileSource:
    """Read, validate and canonicalize the user's price files and optional side files."""
    tickers = read_tickers(cfg.tickers_path) if cfg.tickers_path is not None else None
    raw, names, source = _read_prices(cfg, tickers)
    adjust = cfg.adjust == "adj_close"
    df = prepare_prices(raw, source, cfg.invalid_rows, names, adjust)
    df, zero_open_rows = fix_zero_open(df, cfg.zero_open, source, names, cfg.max_price)
    if zero_open_rows:
        log.warning("%d rows with open = 0 and close > 0 (vendor placeholders): data.zero_open = %s",
                    zero_open_rows, cfg.zero_open)
    prices, dropped = check_prices(df, source, cfg.invalid_rows, names, cfg.max_price, adjust)
    dropped["zero_open"] = zero_open_rows if cfg.zero_open == "drop" else 0
    if prices.height == 0:
        reasons = {k: v for k, v in dropped.items() if v}
        raise DataError(f"{source}: every row was dropped ({reasons}); nothing is left to work with")
    codes = prices.get_column("code").unique()
    missing = _missing_tickers(tickers, codes, cfg.tickers_path)
    universe = load_universe(cfg, codes)
    relations = load_relations(cfg, codes)
    counts = {**dropped, **universe.dropped, **relations.dropped}
    splits = detect_splits(prices, cfg.split_ratio_threshold)
    _log_summary(prices, universe.frame, counts, splits)
    return FileSource(
        prices=prices,
        universe=universe.frame,
        relations=relations.frame,
        dropped={reason: int(counts.get(reason, 0)) for reason in ALL_REASONS},
        split_suspects=splits,
        tickers_missing=len(missing),
        zero_open_rows=zero_open_rows,
        point_in_time_universe=universe.point_in_time,
        point_in_time_relations=relations.point_in_time,
    )


def _missing_tickers(tickers: Sequence[str] | None, codes: pl.Series, path: str | None) -> list[str]:
    """Listed codes left without prices (no file or no row, outside the window, or every row dropped)."""
    if tickers is None:
        return []
    have = set(codes.to_list())
    missing = [t for t in tickers if t not in have]
    if len(missing) == len(tickers):
        raise _no_listed_code(str(path), tickers, sorted(have), "the price data after filtering")
    if missing:
        log.warning("%d of the %d codes in %s (data.tickers_path) have no prices: %s",
                    len(missing), len(tickers), path, _examples(missing))
    return missing


def _log_summary(
    prices: pl.DataFrame, universe: pl.DataFrame | None, dropped: Mapping[str, int], splits: pl.DataFrame
) -> None:
    n_codes = prices.get_column("code").n_unique()
    n_days = prices.get_column("date").n_unique()
    log.info("prices: %d rows, %d codes, %d days", prices.height, n_codes, n_days)
    if any(dropped.values()):
        log.warning("dropped rows: %s", {k: v for k, v in dropped.items() if v})
    if universe is not None:
        missing = n_codes - universe.get_column("code").n_unique()
        if missing > 0:
            log.warning("%d price codes have no universe row (no sector/industry)", missing)
    if splits.height:
        log.warning(
            "%d one-day close ratios look like unadjusted splits (first: %s); prices are not changed",
            splits.height,
            splits.head(3).rows(),
        )


__all__ = [
    "CANONICAL",
    "NUMERIC_COLUMNS",
    "DataError",
    "FileSource",
    "load_file_source",
    "read_prices",
    "read_tickers",
    "match_columns",
]
