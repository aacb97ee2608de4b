"""Validation of price, universe and relations frames against the contract.

Rules (DESIGN.md, "Artifacts and schemas"): prices > 0, low <= open, close <=
high, volume >= 0, (date, code) unique, no nulls. Structural problems (missing
columns, empty input, unparseable dates, a column with no numeric value) are
always a :class:`DataError`. Row-level problems raise with
``invalid_rows="error"`` and are dropped and counted per reason with
``invalid_rows="drop"``; every row is counted under the first reason it fails,
in the order of :data:`PRICE_REASONS`, so the counts add up to the rows dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from alphagraph.errors import UserError

KEYS = ("date", "code")
PRICE_COLUMNS = ("open", "high", "low", "close")
NUMERIC_COLUMNS = (*PRICE_COLUMNS, "volume")
CANONICAL = (*KEYS, *NUMERIC_COLUMNS)

# Helper columns a loader may attach: the source file of each row (directory
# layouts) and the row's 0-based index within that file, for error messages.
FILE_COL = "__file"
ROW_COL = "__row"
_BAD_NUMERIC = "__bad_numeric"
_REASON = "__reason"

PRICE_REASONS = (
    "non_numeric",
    "null_value",
    "non_finite",
    "non_positive_price",
    "high_below_low",
    "ohlc_outside_range",
    "negative_volume",
    "duplicate_key",
)
UNIVERSE_REASONS = ("universe_null_value", "universe_duplicate_code", "universe_unknown_code")
RELATION_REASONS = (
    "relations_null_value",
    "relations_invalid_weight",
    "relations_self_loop",
    "relations_duplicate",
    "relations_unknown_code",
)
ALL_REASONS = (*PRICE_REASONS, *UNIVERSE_REASONS, *RELATION_REASONS)
RELATION_NAMES = ("competitor", "supply_chain", "fund_similarity")

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
MAX_SHOWN = 5


class DataError(UserError):
    """Invalid user data; the message names the file, the column and the first bad rows."""


@dataclass(frozen=True)
class Check:
    """One row-level rule: rows where ``mask`` is true fail with ``reason``."""

    reason: str
    columns: tuple[str, ...]
    mask: pl.Expr
    rule: str
    show: pl.Expr | None = None  # rows to display, when not the failing rows themselves


# ----------------------------------------------------------------------- messages


def _label(column: str, names: Mapping[str, str] | None) -> str:
    """``'Adj Close' (close)`` when the file's name differs from the canonical one."""
    actual = (names or {}).get(column, column)
    return repr(actual) if actual == column else f"{actual!r} ({column})"


def _columns_label(columns: Sequence[str], names: Mapping[str, str] | None) -> str:
    word = "column" if len(columns) == 1 else "columns"
    return f"{word} {', '.join(_label(c, names) for c in columns)}"


def _where(row: Mapping[str, object], source: str) -> str:
    """'AAPL.csv line 7' / 'line 7' (CSV: header is line 1) / 'row 6' (others)."""
    file = row.get(FILE_COL)
    index = row.get(ROW_COL)
    name = str(file) if file is not None else Path(source).name
    prefix = f"{file} " if file is not None else ""
    if index is None:
        return f"{prefix}row ?"
    if name.lower().endswith(".csv"):
        return f"{prefix}line {int(index) + 2}"
    return f"{prefix}row {int(index) + 1}"


def _value(v: object) -> str:
    return repr(v) if isinstance(v, str) else str(v)


def format_rows(rows: pl.DataFrame, columns: Sequence[str], source: str) -> str:
    """Render up to :data:`MAX_SHOWN` offending rows, one per line."""
    shown = [c for c in columns if c in rows.columns]
    lines = []
    for row in rows.head(MAX_SHOWN).iter_rows(named=True):  # at most 5 rows
        values = ", ".join(f"{c}={_value(row[c])}" for c in shown)
        lines.append(f"  {_where(row, source)}: {values}")
    return "\n".join(lines)


def _row_error(
    df: pl.DataFrame,
    check: Check,
    n_bad: int,
    source: str,
    names: Mapping[str, str] | None,
    context: Sequence[str],
) -> DataError:
    rows = df.filter(check.show if check.show is not None else check.mask)
    shown = list(dict.fromkeys([*context, *check.columns]))
    return DataError(
        f"{source}: {_columns_label(check.columns, names)}: {n_bad} row(s) fail the check"
        f" {check.reason!r} ({check.rule}); first offending rows:\n{format_rows(rows, shown, source)}\n"
        "Fix the file, or set data.invalid_rows: drop to drop such rows and count them."
    )


# ------------------------------------------------------------------ generic checks


def apply_checks(
    df: pl.DataFrame,
    checks: Sequence[Check],
    source: str,
    invalid_rows: str,
    names: Mapping[str, str] | None = None,
    context: Sequence[str] = KEYS,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Raise on the first failing check ("error"), or drop failing rows and count them ("drop")."""
    if not checks or df.height == 0:
        return df, {}
    if invalid_rows == "error":
        sums = df.select([c.mask.fill_null(False).sum().alias(str(i)) for i, c in enumerate(checks)])
        for i, check in enumerate(checks):
            n_bad = int(sums.item(0, str(i)))
            if n_bad:
                raise _row_error(df, check, n_bad, source, names, context)
        return df, {}
    if invalid_rows != "drop":
        raise ValueError(f"invalid_rows must be 'error' or 'drop', got {invalid_rows!r}")
    reason = pl.when(checks[0].mask).then(pl.lit(checks[0].reason))
    for check in checks[1:]:
        reason = reason.when(check.mask).then(pl.lit(check.reason))
    tagged = df.with_columns(reason.otherwise(pl.lit(None, dtype=pl.Utf8)).alias(_REASON))
    counts = tagged.group_by(_REASON).len().drop_nulls(_REASON)
    dropped = dict(zip(counts[_REASON].to_list(), counts["len"].to_list()))
    return tagged.filter(pl.col(_REASON).is_null()).drop(_REASON), dropped


def duplicate_check(keys: Sequence[str], reason: str) -> Check:
    """For a frame stably sorted by ``keys``: repeats of a key fail, the first in file order is kept.

    Comparing neighbours of a sorted frame is far cheaper than hashing struct keys.
    """
    repeat = pl.all_horizontal(pl.col(k) == pl.col(k).shift(1) for k in keys).fill_null(False)
    show = repeat | repeat.shift(-1).fill_null(False)  # every occurrence, the kept one too
    return Check(reason, tuple(keys), repeat, "must be unique", show)


def null_checks(columns: Sequence[str], reason: str) -> list[Check]:
    return [Check(reason, (c,), pl.col(c).is_null(), "must not be empty") for c in columns]


def require_columns(
    df: pl.DataFrame | pl.LazyFrame, required: Sequence[str], source: str, what: str = "column"
) -> None:
    """Structural: every required column is present."""
    present = df.collect_schema().names() if isinstance(df, pl.LazyFrame) else df.columns
    missing = [c for c in required if c not in present]
    if missing:
        shown = [c for c in present if not c.startswith("__")]
        raise DataError(
            f"{source}: missing {what}(s) {', '.join(map(repr, missing))};"
            f" the file has columns: {', '.join(map(repr, shown)) or '(none)'}"
        )


def require_rows(df: pl.DataFrame, source: str) -> None:
    """Structural: an empty input is always an error (there is nothing to drop down to)."""
    if df.height == 0:
        raise DataError(f"{source}: the file is empty (0 data rows)")


# ------------------------------------------------------------------------ parsing


def _blank_to_null(text: pl.Expr) -> pl.Expr:
    """Strip spaces; missing-value spellings become null (one hash lookup per cell)."""
    return text.str.strip_chars().replace(list(NULL_SPELLINGS), None)


def _date_expr(text: pl.Expr, fmt: str | None) -> pl.Expr:
    """``fmt`` first, then ISO: both are unambiguous, and side files are often ISO."""
    formats = ISO_FORMATS if fmt is None else (fmt, *ISO_FORMATS)
    return pl.coalesce([text.str.to_date(f, strict=False) for f in formats])


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


# ------------------------------------------------------------------------- prices


def _price_checks() -> list[Check]:
    col = pl.col
    checks = [Check("non_numeric", NUMERIC_COLUMNS, col(_BAD_NUMERIC), "must be a number")]
    checks += null_checks(CANONICAL, "null_value")
    checks += [Check("non_finite", (c,), col(c).is_infinite(), "must be finite") for c in NUMERIC_COLUMNS]
    checks += [Check("non_positive_price", (c,), col(c) <= 0, "must be > 0") for c in PRICE_COLUMNS]
    below = col("high") < col("low")
    checks.append(Check("high_below_low", ("high", "low"), below, "high must be >= low"))
    checks += [
        Check(
            "ohlc_outside_range",
            (c, "low", "high"),
            (col(c) < col("low")) | (col(c) > col("high")),
            f"{c} must lie in [low, high]",
        )
        for c in ("open", "close")
    ]
    checks.append(Check("negative_volume", ("volume",), col("volume") < 0, "must be >= 0"))
    return checks


def validate_prices(
    df: pl.DataFrame,
    source: str,
    invalid_rows: str,
    names: Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Check a price frame with canonical column names; return the clean canonical frame.

    ``df`` may hold text columns (dates as ISO strings, numbers as strings) and
    the helper columns :data:`FILE_COL` / :data:`ROW_COL`. ``names`` maps a
    canonical column to the name the user's file uses, for messages. Returns the
    frame (date Date, code Utf8, OHLCV Float64, sorted by (date, code)) and
    rows dropped per reason (every key of :data:`PRICE_REASONS`, zeros included).
    """
    require_columns(df, CANONICAL, source)
    require_rows(df, source)
    if ROW_COL not in df.columns:
        df = df.with_row_index(ROW_COL)
    df = parse_dates(df, "date", None, source, names)
    df = df.with_columns(_blank_to_null(pl.col("code").cast(pl.Utf8)).alias("code"))
    df = coerce_numeric(df, NUMERIC_COLUMNS, source, invalid_rows, names)
    df, dropped = apply_checks(df, _price_checks(), source, invalid_rows, names)
    df = df.sort(KEYS, maintain_order=True)  # stable: the first row of a duplicated key stays first
    df, dup = apply_checks(df, [duplicate_check(KEYS, "duplicate_key")], source, invalid_rows, names)
    counts = {reason: int(dropped.get(reason, 0) + dup.get(reason, 0)) for reason in PRICE_REASONS}
    return df.select(CANONICAL), counts


# ------------------------------------------------------------------------- splits


def detect_splits(prices: pl.DataFrame, threshold: float) -> pl.DataFrame:
    """One-day close ratios with |log ratio| > log(1 + threshold): likely unadjusted splits.

    Reported, not fixed: a real crash looks the same, and only the user knows.
    Returns ``code, date, ratio`` (ratio = close / previous close of the stock),
    sorted by (code, date).
    """
    if threshold <= 0:
        raise ValueError(f"split_ratio_threshold must be > 0, got {threshold}")
    limit = math.log1p(threshold)
    previous = pl.col("close").shift(1).over("code", order_by="date")  # no full re-sort
    return (
        prices.lazy()
        .select("code", "date", pl.col("close").cast(pl.Float64))
        .with_columns((pl.col("close") / previous).alias("ratio"))
        .filter(pl.col("ratio").log().abs() > limit)
        .select("code", "date", "ratio")
        .sort("code", "date")
        .collect()
    )


# ------------------------------------------------------------- universe, relations


def _strings(df: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    return df.with_columns(_blank_to_null(pl.col(c).cast(pl.Utf8)).alias(c) for c in columns)


def _drop_unknown(
    df: pl.DataFrame, columns: Sequence[str], codes: pl.Series | None
) -> tuple[pl.DataFrame, int]:
    """Rows naming a code absent from the prices are always dropped (side files cover wider markets)."""
    if codes is None:
        return df, 0
    known = pl.all_horizontal(pl.col(c).is_in(codes.implode()) for c in columns)
    kept = df.filter(known)
    return kept, df.height - kept.height


def validate_universe(
    df: pl.DataFrame,
    source: str,
    invalid_rows: str,
    codes: pl.Series | None = None,
    date_format: str | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``code, sector, industry`` (+ optional ``listed, delisted`` dates), one row per code."""
    require_columns(df, ("code", "sector", "industry"), source)
    require_rows(df, source)
    if ROW_COL not in df.columns:
        df = df.with_row_index(ROW_COL)
    df = _strings(df, ("code", "sector", "industry"))
    for column in ("listed", "delisted"):
        if column in df.columns:
            df = parse_dates(df, column, date_format, source)
    context = ("code",)
    nulls = null_checks(("code", "sector", "industry"), "universe_null_value")
    df, dropped = apply_checks(df, nulls, source, invalid_rows, context=context)
    df, dup = apply_checks(
        df.sort("code", maintain_order=True),
        [duplicate_check(("code",), "universe_duplicate_code")],
        source,
        invalid_rows,
        context=context,
    )
    df, unknown = _drop_unknown(df, ("code",), codes)
    keep = ["code", "sector", "industry", *(c for c in ("listed", "delisted") if c in df.columns)]
    counts = {**dropped, **dup, "universe_unknown_code": unknown}
    return df.select(keep).sort("code"), {r: int(counts.get(r, 0)) for r in UNIVERSE_REASONS}


def _check_relation_names(df: pl.DataFrame, source: str) -> None:
    """Structural: an unknown relation name is a typo that would silently drop a relation type."""
    bad = df.filter(pl.col("relation").is_not_null() & ~pl.col("relation").is_in(list(RELATION_NAMES)))
    if bad.height:
        values = bad["relation"].unique(maintain_order=True).head(MAX_SHOWN).to_list()
        raise DataError(
            f"{source}: column 'relation': unknown relation name(s) {', '.join(map(repr, values))};"
            f" allowed: {', '.join(RELATION_NAMES)}; first offending rows:\n"
            f"{format_rows(bad, ('src', 'dst', 'relation'), source)}"
        )


def validate_relations(
    df: pl.DataFrame,
    source: str,
    invalid_rows: str,
    codes: pl.Series | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``src, dst, relation, weight``; a missing weight column or empty cell means 1.0."""
    require_columns(df, ("src", "dst", "relation"), source)
    require_rows(df, source)
    if ROW_COL not in df.columns:
        df = df.with_row_index(ROW_COL)
    if "weight" not in df.columns:
        df = df.with_columns(pl.lit(1.0).alias("weight"))
    df = _strings(df, ("src", "dst", "relation"))
    df = df.with_columns(pl.col("relation").str.to_lowercase())
    _check_relation_names(df, source)
    context = ("src", "dst", "relation")
    df = coerce_numeric(df, ("weight",), source, invalid_rows, context=context)
    df = df.with_columns(pl.col("weight").fill_null(1.0))  # bad text is flagged in _BAD_NUMERIC
    checks = [
        Check("relations_invalid_weight", ("weight",), pl.col(_BAD_NUMERIC), "must be a number"),
        *null_checks(("src", "dst", "relation"), "relations_null_value"),
        Check("relations_invalid_weight", ("weight",), ~pl.col("weight").is_finite(), "must be finite"),
    ]
    df, dropped = apply_checks(df, checks, source, invalid_rows, context=context)
    loops = pl.col("src") == pl.col("dst")
    n_loops = int(df.select(loops.sum()).item())
    df = df.filter(~loops)
    df, dup = apply_checks(
        df.sort(context, maintain_order=True),
        [duplicate_check(context, "relations_duplicate")],
        source,
        invalid_rows,
        context=context,
    )
    df, unknown = _drop_unknown(df, ("src", "dst"), codes)
    counts = {**dropped, **dup, "relations_self_loop": n_loops, "relations_unknown_code": unknown}
    out = df.select("src", "dst", "relation", "weight").sort("relation", "src", "dst")
    return out, {r: int(counts.get(r, 0)) for r in RELATION_REASONS}
