"""The machinery under every file check: a row rule (:class:`Check`), applying rules in error or
drop mode, and messages that name the file, the column and the first offending rows.

Knows no file's contract; :mod:`alphagraph.data.validate` holds the rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from alphagraph.runtime.errors import UserError

KEYS = ("date", "code")

# Helper columns a loader may attach: the source file of each row (directory
# layouts) and the row's 0-based index within that file, for error messages.
FILE_COL = "__file"
ROW_COL = "__row"
_REASON = "__reason"
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
    hint: str = ""  # a sentence naming the knob that governs the rule, if any
    extra: tuple[str, ...] = ()  # more columns to display (a duplicate's values)
    in_file_order: bool = True  # display rows in file order (not duplicates: they stay grouped by key)


# ----------------------------------------------------------------------- messages


def _label(column: str, names: Mapping[str, str] | None) -> str:
    """``'Adj Close' (close)`` when the file's name differs from the canonical one."""
    actual = (names or {}).get(column, column)
    if not actual.strip():  # the RSR / pandas-index layout: dates in a first column without a name
        return f"{actual!r} ({column}, the unnamed first column)"
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
    position = [c for c in (FILE_COL, ROW_COL) if c in rows.columns]
    if check.in_file_order and position:  # the frame may be sorted by (date, code) already
        rows = rows.sort(position)
    shown = list(dict.fromkeys([*context, *check.columns, *check.extra]))
    return DataError(
        f"{source}: {_columns_label(check.columns, names)}: {n_bad} row(s) fail the check"
        f" {check.reason!r} ({check.rule}); first offending rows:\n{format_rows(rows, shown, source)}\n"
        f"{check.hint + ' ' if check.hint else ''}"
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


def duplicate_check(
    keys: Sequence[str], reason: str, extra: Sequence[str] = (), null_keys: bool = True, hint: str = ""
) -> Check:
    """For a frame stably sorted by ``keys``: repeats of a key fail, the first in file order is kept.

    Comparing neighbours of a sorted frame is far cheaper than hashing struct keys. Nulls
    compare equal (two rows of a code without a ``start`` are duplicates), unless
    ``null_keys`` is false: then a key with a null is never a repeat (a null check reports it).
    ``extra``: columns shown beside the keys, so that the rows of a key can be compared.
    """
    same = pl.all_horizontal(pl.col(k).eq_missing(pl.col(k).shift(1)) for k in keys)
    if not null_keys:
        same = same & pl.all_horizontal(pl.col(k).is_not_null() for k in keys)
    repeat = (same & (pl.int_range(pl.len()) > 0)).fill_null(False)  # row 0 has no neighbour
    show = repeat | repeat.shift(-1).fill_null(False)  # every occurrence, the kept one too
    return Check(reason, tuple(keys), repeat, "must be unique", show, hint, tuple(extra), in_file_order=False)


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
