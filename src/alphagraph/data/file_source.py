"""The user-file data source (``data.source: file``).

``data.path`` is either one long-format CSV/Parquet file (columns named per
``data.columns``) or a directory of per-ticker CSVs (``AAPL.csv`` -> code
``"AAPL"``; headers such as ``Date, Open, High, Low, Close, Volume`` matched to
``data.columns`` case-insensitively). Optional side files: ``data.universe_path``
(code, sector, industry) and ``data.relations_path`` (src, dst, relation, weight).

Universe and relations rows that name a code absent from the prices are always
dropped and counted (``universe_unknown_code``, ``relations_unknown_code``):
side files usually describe a wider market than the price file. Self-loops in
relations are always dropped (``relations_self_loop``); the graph stage adds
its own. An unknown relation name is always an error (a typo would silently
remove a relation type).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from alphagraph.config import DataConfig
from alphagraph.data.validate import (
    ALL_REASONS,
    CANONICAL,
    FILE_COL,
    NUMERIC_COLUMNS,
    ROW_COL,
    DataError,
    detect_splits,
    parse_dates,
    require_rows,
    validate_prices,
    validate_relations,
    validate_universe,
)
from alphagraph.log import get_logger

log = get_logger("data.file_source")

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
UNIVERSE_COLUMNS = ("code", "sector", "industry", "listed", "delisted")
RELATION_COLUMNS = ("src", "dst", "relation", "weight")


@dataclass(frozen=True)
class FileSource:
    """Validated user data in the canonical schemas of DESIGN.md."""

    prices: pl.DataFrame
    universe: pl.DataFrame | None
    relations: pl.DataFrame | None
    dropped: dict[str, int]
    split_suspects: pl.DataFrame


# ------------------------------------------------------------------------ reading


def _scan(path: Path) -> pl.LazyFrame:
    """Lazy reader; CSV cells stay text so types are checked (and codes keep leading zeros)."""
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return pl.scan_parquet(path).with_row_index(ROW_COL)
    if suffix in CSV_SUFFIXES:
        return pl.scan_csv(path, infer_schema=False, row_index_name=ROW_COL)
    raise DataError(f"{path}: unsupported file type {suffix!r} (expected .csv or .parquet)")


def _schema_names(lf: pl.LazyFrame, path: Path) -> list[str]:
    try:
        names = lf.collect_schema().names()
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot read the file: {_first_line(exc)}") from None
    return [n for n in names if n != ROW_COL]


def _collect(lf: pl.LazyFrame, path: Path) -> pl.DataFrame:
    try:
        return lf.collect()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot parse the file: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    """Polars errors end with hints about reader options the user cannot set here."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    by_lower: dict[str, str] = {}
    for name in available:
        by_lower.setdefault(name.strip().lower(), name)
    found: dict[str, str] = {}
    missing: list[str] = []
    for canon, want in wanted.items():
        actual = want if want in available else by_lower.get(want.strip().lower())
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


def _select(lf: pl.LazyFrame, mapping: Mapping[str, str]) -> pl.LazyFrame:
    return lf.select(ROW_COL, *(pl.col(actual).alias(canon) for canon, actual in mapping.items()))


def _resolve(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path}: data file or directory not found (data.path)")
    return path


# ------------------------------------------------------------------------- prices


def _read_long(path: Path, columns: Mapping[str, str]) -> tuple[pl.DataFrame, dict[str, str]]:
    lf = _scan(path)
    mapping = match_columns(_schema_names(lf, path), columns, path, config_key="data.columns")
    df = _collect(_select(lf, mapping), path)
    require_rows(df, str(path))
    return df, mapping


def _ticker_files(directory: Path) -> list[Path]:
    files = sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and p.suffix.lower() in CSV_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{directory}: no per-ticker .csv files in the directory (data.path)")
    return files


def _read_ticker(
    path: Path, columns: Mapping[str, str], files: pl.Enum
) -> tuple[pl.DataFrame, dict[str, str]]:
    """One ticker's rows; the code is the file stem (any code column in the file is ignored)."""
    try:  # eager: concatenating thousands of lazy scans plans very slowly in polars
        df = pl.read_csv(path, infer_schema=False, row_index_name=ROW_COL)
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"{path}: cannot parse the file: {_first_line(exc)}") from None
    available = [c for c in df.columns if c != ROW_COL]
    mapping = match_columns(available, columns, path, config_key="data.columns")
    require_rows(df, str(path))
    df = df.select(ROW_COL, *(pl.col(actual).alias(canon) for canon, actual in mapping.items()))
    tags = [pl.lit(path.stem).alias("code"), pl.lit(path.name, dtype=files).alias(FILE_COL)]
    return df.with_columns(tags), mapping


def _read_directory(
    directory: Path, columns: Mapping[str, str]
) -> tuple[pl.DataFrame, dict[str, str]]:
    files = _ticker_files(directory)
    enum = pl.Enum([f.name for f in files])
    wanted = {k: v for k, v in columns.items() if k != "code"}
    # polars releases the GIL while parsing; map() re-raises the first failing file in order
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        read = list(pool.map(lambda f: _read_ticker(f, wanted, enum), files))
    df = pl.concat([frame for frame, _ in read], how="vertical", rechunk=True)
    return df, {**read[0][1], "code": "code"}


def read_prices(cfg: DataConfig) -> tuple[pl.DataFrame, dict[str, str], str]:
    """Raw price frame (canonical names, dates parsed), the file's column names, the source."""
    path = _resolve(Path(cfg.path))
    columns = asdict(cfg.columns)
    reader = _read_directory if path.is_dir() else _read_long
    df, names = reader(path, columns)
    source = str(path)
    df = parse_dates(df, "date", cfg.date_format, source, names)
    return df, names, source


# -------------------------------------------------------------------- side files


def _read_side(path_str: str, wanted: Sequence[str], optional: Sequence[str], key: str) -> pl.DataFrame:
    path = Path(path_str)
    if not path.exists():
        raise DataError(f"{path}: file not found ({key})")
    if path.is_dir():
        raise DataError(f"{path}: expected a CSV or Parquet file, got a directory ({key})")
    lf = _scan(path)
    mapping = match_columns(_schema_names(lf, path), {c: c for c in wanted}, path, optional)
    return _collect(_select(lf, mapping), path)


def load_universe(
    cfg: DataConfig, codes: pl.Series | None
) -> tuple[pl.DataFrame | None, dict[str, int]]:
    """The validated universe file, or None when ``data.universe_path`` is null."""
    if cfg.universe_path is None:
        return None, {}
    raw = _read_side(cfg.universe_path, UNIVERSE_COLUMNS, ("listed", "delisted"), "data.universe_path")
    return validate_universe(raw, cfg.universe_path, cfg.invalid_rows, codes, cfg.date_format)


def load_relations(
    cfg: DataConfig, codes: pl.Series | None
) -> tuple[pl.DataFrame | None, dict[str, int]]:
    """The validated relations file, or None when ``data.relations_path`` is null."""
    if cfg.relations_path is None:
        return None, {}
    raw = _read_side(cfg.relations_path, RELATION_COLUMNS, ("weight",), "data.relations_path")
    return validate_relations(raw, cfg.relations_path, cfg.invalid_rows, codes)


# -------------------------------------------------------------------------- entry


def load_file_source(cfg: DataConfig) -> FileSource:
    """Read, validate and canonicalize the user's price files and optional side files."""
    raw, names, source = read_prices(cfg)
    prices, dropped = validate_prices(raw, source, cfg.invalid_rows, names)
    codes = prices.get_column("code").unique()
    universe, universe_dropped = load_universe(cfg, codes)
    relations, relations_dropped = load_relations(cfg, codes)
    counts = {**dropped, **universe_dropped, **relations_dropped}
    splits = detect_splits(prices, cfg.split_ratio_threshold)
    _log_summary(prices, universe, counts, splits)
    return FileSource(
        prices=prices,
        universe=universe,
        relations=relations,
        dropped={reason: int(counts.get(reason, 0)) for reason in ALL_REASONS},
        split_suspects=splits,
    )


def _log_summary(
    prices: pl.DataFrame, universe: pl.DataFrame | None, dropped: Mapping[str, int], splits: pl.DataFrame
) -> None:
    n_codes = prices.get_column("code").n_unique()
    n_days = prices.get_column("date").n_unique()
    log.info("prices: %d rows, %d codes, %d days", prices.height, n_codes, n_days)
    if any(dropped.values()):
        log.warning("dropped rows: %s", {k: v for k, v in dropped.items() if v})
    if universe is not None and universe.height < n_codes:
        missing = n_codes - universe.height
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
    "match_columns",
]
