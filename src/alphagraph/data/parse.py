"""Text cells to typed columns: missing-value spellings, date formats, numbers.

A column that does not parse at all (a wrong format, a wrong column mapped) is
structural and always raises; one bad cell is a row problem, flagged for
:func:`alphagraph.data.rows.apply_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from alphagraph.data.rows import KEYS, Check, DataError, _columns_label, _row_error, format_rows

_BAD_NUMERIC = "__bad_numeric"  # the flag column of coerce_numeric: text that is no number

# Spellings of "missing" seen in vendor exports (Yahoo writes "null").
_NULL_WORDS = ("", "null", "na", "n/a", "nan", "none", "#n/a", "-")
_CASES = (str.lower, str.upper, str.capitalize)
NULL_SPELLINGS = tuple(sorted({case(w) for w in _NULL_WORDS for case in _CASES} | {"NaN"}))
ISO_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
)
# A UTC offset (or Z) after a time of day: stripped, so the date is the local calendar
# date written in the string (16:00-05:00 is that day's close, not the next UTC day).
_UTC_OFFSET = r"(\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?:[zZ]|(?:UTC|GMT)?[+-]\d{2}(?::?\d{2})?)$"


def _blank_to_null(text: pl.Expr) -> pl.Expr:
    """Strip spaces; missing-value spellings become null (one hash lookup per cell)."""
    return text.str.strip_chars().replace(list(NULL_SPELLINGS), None)


def _date_expr(text: pl.Expr, fmt: str | None) -> pl.Expr:
    """``fmt`` first, then ISO: both are unambiguous, and side files are often ISO.

    ``fmt`` is tried on the text as written (it may hold ``%z``), then every format
    on the text without a UTC offset after the time of day.
    """
    local = text.str.replace(_UTC_OFFSET, "${1}")
    formats = ISO_FORMATS if fmt is None else (fmt, *ISO_FORMATS)
    raw = [text.str.to_date(fmt, strict=False)] if fmt is not None else []
    return pl.coalesce([*raw, *(local.str.to_date(f, strict=False) for f in formats)])


def parse_dates(
    df: pl.DataFrame,
    column: str,
    fmt: str | None,
    source: str,
    names: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Make ``column`` a pl.Date: keep Date, truncate Datetime, parse text with ``fmt`` (else ISO).

    Blank cells become null (a row-level problem); any non-blank value that does
    not parse is structural (a wrong format would otherwise drop every row), so
    it always raises.
    """
    dtype = df.schema[column]
    if dtype == pl.Date:
        return df
    if isinstance(dtype, pl.Datetime):
        return df.with_columns(pl.col(column).dt.date())
    df = df.with_columns(_blank_to_null(pl.col(column).cast(pl.Utf8)))
    # A panel repeats each date once per stock: parse the distinct strings only.
    lookup = (
        df.select(pl.col(column).unique().drop_nulls().alias("text"))
        .with_columns(_date_expr(pl.col("text"), fmt).alias("date"))
    )
    unparsed = lookup.filter(pl.col("date").is_null()).get_column("text")
    if unparsed.len():
        bad = df.filter(pl.col(column).is_in(unparsed.implode()))
        expected = (
            f"match neither the format {fmt!r} (data.date_format) nor ISO YYYY-MM-DD"
            if fmt
            else "are not ISO dates YYYY-MM-DD (set data.date_format for other formats)"
        )
        shown = list(dict.fromkeys([column, *(c for c in KEYS if c in df.columns)]))
        raise DataError(
            f"{source}: {_columns_label([column], names)}: {bad.height} value(s) {expected};"
            f" first offending rows:\n{format_rows(bad, shown, source)}"
        )
    parsed = pl.col(column).replace_strict(
        lookup["text"], lookup["date"], default=None, return_dtype=pl.Date
    )
    return df.with_columns(parsed)


def coerce_numeric(
    df: pl.DataFrame,
    columns: Sequence[str],
    source: str,
    invalid_rows: str,
    names: Mapping[str, str] | None = None,
    context: Sequence[str] = KEYS,
) -> pl.DataFrame:
    """Cast ``columns`` to Float64 (NaN -> null), flagging text that is not a number.

    A column in which no value is a number is structural (wrong column mapped)
    and always raises; isolated bad cells raise or, in drop mode, are flagged in
    a helper column for :func:`apply_checks`.
    """
    text_columns = [c for c in columns if not df.schema[c].is_numeric()]
    for column in text_columns:
        dtype = df.schema[column]
        if dtype not in (pl.Utf8, pl.Categorical) and not isinstance(dtype, pl.Enum):
            label = _columns_label([column], names)
            raise DataError(f"{source}: {label}: has type {dtype}, expected numbers")
    # Materialize each step once: eager frames do not share common subexpressions.
    df = df.with_columns(_blank_to_null(pl.col(c).cast(pl.Utf8)) for c in text_columns)
    numbers = [f"__num_{c}" for c in text_columns]
    df = df.with_columns(
        pl.col(c).cast(pl.Float64, strict=False).alias(n) for c, n in zip(text_columns, numbers)
    )
    flags = [pl.col(c).is_not_null() & pl.col(n).is_null() for c, n in zip(text_columns, numbers)]
    for column, bad in zip(text_columns, flags):
        _raise_non_numeric(df, column, bad, source, invalid_rows, names, context)
    flag = pl.any_horizontal(flags) if flags else pl.lit(False)
    df = df.with_columns(flag.alias(_BAD_NUMERIC))
    casts = [pl.col(n).alias(c) for c, n in zip(text_columns, numbers)]
    casts += [pl.col(c).cast(pl.Float64) for c in columns if c not in text_columns]
    return df.with_columns(casts).drop(numbers).with_columns(pl.col(c).fill_nan(None) for c in columns)


def _raise_non_numeric(
    df: pl.DataFrame,
    column: str,
    bad: pl.Expr,
    source: str,
    invalid_rows: str,
    names: Mapping[str, str] | None,
    context: Sequence[str],
) -> None:
    stats = df.select(bad.sum().alias("bad"), pl.col(column).is_not_null().sum().alias("filled"))
    n_bad, n_filled = int(stats["bad"][0]), int(stats["filled"][0])
    if n_bad == 0:
        return
    check = Check("non_numeric", (column,), bad, "must be a number")
    if n_bad == n_filled:  # nothing in the column is a number: a mapping problem, never droppable
        rows = df.filter(bad)
        shown = list(dict.fromkeys([*context, column]))
        raise DataError(
            f"{source}: {_columns_label([column], names)}: is not numeric (no value parses as a"
            f" number); first rows:\n{format_rows(rows, shown, source)}"
        )
    if invalid_rows == "error":
        raise _row_error(df, check, n_bad, source, names, context)
