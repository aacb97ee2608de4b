"""Validation of price, universe and relations frames against the contract.

Rules (DESIGN.md, "Artifacts and schemas"): prices > 0, low <= open, close <=
high, volume >= 0, (date, code) unique, no nulls; optionally prices <=
``data.max_price``. Structural problems (missing columns, empty input,
unparseable dates, a column with no numeric value) are always a
:class:`DataError`. Row-level problems raise with ``invalid_rows="error"`` and
are dropped and counted per reason with ``invalid_rows="drop"``; every row is
counted under the first reason it fails, in the order of :data:`PRICE_REASONS`,
so the counts add up to the rows dropped. With ``invalid_rows="error"`` a
repeated (date, code) is reported before the row checks: the rows of a key
given twice often disagree (a restated close), and a range error on one of
them would hide the cause.

Prices are checked in steps: :func:`prepare_prices` (parse and cast),
:func:`fix_zero_open` (vendor placeholders, ``data.zero_open``) and
:func:`check_prices` (``data.adjust``, the row checks, duplicates);
:func:`validate_prices` runs the first and the last.

The generic machinery (:class:`Check`, :func:`apply_checks`, the messages) is
:mod:`alphagraph.data.rows`, the cell parsing :mod:`alphagraph.data.parse`; their
public names are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

from alphagraph.data.parse import (
    _BAD_NUMERIC,
    ISO_FORMATS,
    NULL_SPELLINGS,
    _blank_to_null,
    coerce_numeric,
    parse_dates,
)
from alphagraph.data.rows import (
    FILE_COL,
    KEYS,
    MAX_SHOWN,
    ROW_COL,
    Check,
    DataError,
    _columns_label,
    apply_checks,
    duplicate_check,
    format_rows,
    null_checks,
    require_columns,
    require_rows,
)
from alphagraph.runtime.config import RELATION_NAMES

__all__ = [
    "ADJ_CLOSE",
    "ALL_REASONS",
    "CANONICAL",
    "FILE_COL",
    "ISO_FORMATS",
    "KEYS",
    "MAX_SHOWN",
    "NULL_SPELLINGS",
    "NUMERIC_COLUMNS",
    "PRICE_COLUMNS",
    "PRICE_REASONS",
    "RELATION_REASONS",
    "ROW_COL",
    "UNIVERSE_REASONS",
    "VALIDITY",
    "Check",
    "DataError",
    "apply_checks",
    "check_prices",
    "coerce_numeric",
    "detect_splits",
    "duplicate_check",
    "fix_zero_open",
    "format_rows",
    "null_checks",
    "parse_dates",
    "prepare_prices",
    "require_columns",
    "require_rows",
    "validate_prices",
    "validate_relations",
    "validate_universe",
]

PRICE_COLUMNS = ("open", "high", "low", "close")
NUMERIC_COLUMNS = (*PRICE_COLUMNS, "volume")
CANONICAL = (*KEYS, *NUMERIC_COLUMNS)
_RATIO = "__adj_ratio"
_NAN = "__nan"

PRICE_REASONS = (
    "non_numeric",
    "null_value",
    "non_finite",
    "zero_open",  # only with data.zero_open: drop (handled before the row checks)
    "non_positive_price",
    "invalid_adj_close",  # only with data.adjust: adj_close
    "implausible_price",
    "high_below_low",
    "ohlc_outside_range",
    "negative_volume",
    "duplicate_key",
)
UNIVERSE_REASONS = (
    "universe_null_value",
    "universe_invalid_interval",
    "universe_duplicate_code",
    "universe_unknown_code",
)
RELATION_REASONS = (
    "relations_null_value",
    "relations_invalid_weight",
    "relations_invalid_interval",
    "relations_self_loop",
    "relations_duplicate",
    "relations_unknown_code",
)
ALL_REASONS = (*PRICE_REASONS, *UNIVERSE_REASONS, *RELATION_REASONS)
# wikidata: RSR's Wikidata company links (alphagraph.data.rsr_relations), undirected and
# static, collected once after the sample: look-ahead like a static industry map.
ADJ_CLOSE = "adj_close"
# Optional validity columns of point-in-time side files (inclusive; null = unbounded).
VALIDITY = ("start", "end")


# ------------------------------------------------------------------------- prices


def _price_checks(max_price: float | None, adjust: bool) -> list[Check]:
    col = pl.col
    numeric = (*NUMERIC_COLUMNS, ADJ_CLOSE) if adjust else NUMERIC_COLUMNS
    checks = [Check("non_numeric", numeric, col(_BAD_NUMERIC), "must be a number")]
    checks += null_checks((*CANONICAL, ADJ_CLOSE) if adjust else CANONICAL, "null_value")
    checks += [Check("non_finite", (c,), col(c).is_infinite(), "must be finite") for c in numeric]
    checks += [Check("non_positive_price", (c,), col(c) <= 0, "must be > 0") for c in PRICE_COLUMNS]
    if adjust:
        ratio_ok = col(_RATIO).is_finite() & (col(_RATIO) > 0)
        rule = "adj_close / close must be finite and > 0 (data.adjust: adj_close)"
        checks.append(Check("invalid_adj_close", (ADJ_CLOSE, "close"), ~ratio_ok, rule))
    if max_price is not None:
        rule, hint = f"must be <= {max_price:g}, data.max_price", "If such prices are real, raise data.max_price."
        checks += [Check("implausible_price", (c,), col(c) > max_price, rule, hint=hint) for c in PRICE_COLUMNS]
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


def prepare_prices(
    df: pl.DataFrame,
    source: str,
    invalid_rows: str,
    names: Mapping[str, str] | None = None,
    adjust: bool = False,
) -> pl.DataFrame:
    """Parse dates, strip codes, cast OHLCV (and ``adj_close`` when ``adjust``) to Float64.

    Structural problems raise; bad cells raise (``invalid_rows="error"``) or are
    flagged for :func:`check_prices`.
    """
    numeric = (*NUMERIC_COLUMNS, ADJ_CLOSE) if adjust else NUMERIC_COLUMNS
    require_columns(df, (*KEYS, *numeric), source)
    require_rows(df, source)
    if ROW_COL not in df.columns:
        df = df.with_row_index(ROW_COL)
    df = parse_dates(df, "date", None, source, names)
    df = df.with_columns(_blank_to_null(pl.col("code").cast(pl.Utf8)).alias("code"))
    return coerce_numeric(df, numeric, source, invalid_rows, names)


def fix_zero_open(
    df: pl.DataFrame,
    mode: str,
    source: str,
    names: Mapping[str, str] | None = None,
    max_price: float | None = None,
) -> tuple[pl.DataFrame, int]:
    """Vendor placeholder rows (open == 0, a usable close): fill, drop or raise per ``data.zero_open``.

    ``fill_close`` sets open to the close clipped into [low, high]: the open is
    unknown, and the close leaves the day's candle body neutral instead of
    inventing an overnight gap. A high or low that is 0 in such a row is a
    placeholder too (no-trade days written as 0, 0, 0, close) and becomes the
    close. Returns the frame and the number of such rows (whatever the mode).

    A close that is no usable price (infinite, or above ``max_price``) makes no
    placeholder: the row is left as it is, for the row checks to report the
    close as written (filled, the open would carry the bad value and be blamed).
    """
    col = pl.col
    usable = col("close").is_finite() & (col("close") > 0)
    if max_price is not None:
        usable = usable & (col("close") <= max_price)
    placeholder = ((col("open") == 0) & usable).fill_null(False)
    n_rows = int(df.select(placeholder.sum()).item())
    if n_rows == 0:
        return df, 0
    if mode == "error":
        rows = df.filter(placeholder)
        raise DataError(
            f"{source}: {_columns_label(['open'], names)}: {n_rows} row(s) have open = 0 with a"
            f" positive close (a vendor placeholder); first offending rows:\n"
            f"{format_rows(rows, (*KEYS, *PRICE_COLUMNS), source)}\n"
            "Set data.zero_open: fill_close (open := close, clipped into [low, high]) or"
            " data.zero_open: drop (remove such rows)."
        )
    if mode == "drop":
        return df.filter(~placeholder), n_rows
    if mode != "fill_close":
        raise ValueError(f"zero_open must be 'fill_close', 'drop' or 'error', got {mode!r}")
    zero_bound = [placeholder & (col(c) == 0) for c in ("high", "low")]
    df = df.with_columns(
        pl.when(zero).then(col("close")).otherwise(col(c)).alias(c) for c, zero in zip(("high", "low"), zero_bound)
    )
    clipped = pl.min_horizontal(pl.max_horizontal(col("close"), col("low")), col("high"))
    return df.with_columns(pl.when(placeholder).then(clipped).otherwise(col("open")).alias("open")), n_rows


def _adjusted(df: pl.DataFrame) -> pl.DataFrame:
    """Scale OHLC by adj_close / close and volume inversely (same traded value).

    Every price is multiplied by the same ratio, so float rounding keeps
    low <= open, close <= high. Rows whose ratio is unusable keep their values
    and fail the ``invalid_adj_close`` check.
    """
    col = pl.col
    df = df.with_columns((col(ADJ_CLOSE) / col("close")).alias(_RATIO))
    ok = (col(_RATIO).is_finite() & (col(_RATIO) > 0)).fill_null(False)
    scaled = [pl.when(ok).then(col(c) * col(_RATIO)).otherwise(col(c)).alias(c) for c in PRICE_COLUMNS]
    volume = pl.when(ok).then(col("volume") / col(_RATIO)).otherwise(col("volume")).alias("volume")
    return df.with_columns(*scaled, volume)


def check_prices(
    df: pl.DataFrame,
    source: str,
    invalid_rows: str,
    names: Mapping[str, str] | None = None,
    max_price: float | None = None,
    adjust: bool = False,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Row checks and duplicates on a :func:`prepare_prices` frame; the clean canonical frame.

    ``adjust`` applies the adjusted close first (``data.adjust: adj_close``);
    ``max_price`` adds the ``implausible_price`` check. Returns the frame (sorted
    by (date, code)) and rows dropped per reason. With ``invalid_rows="error"`` a
    repeated key is reported first, with the values of its rows as written
    (before ``adjust``).
    """
    df = df.sort(KEYS, maintain_order=True)  # stable: the first row of a duplicated key stays first
    shown = [c for c in (*NUMERIC_COLUMNS, ADJ_CLOSE) if c in df.columns]
    hint = "Keep one row per date and code (data.invalid_rows: drop keeps the first in file order)."
    duplicates = [duplicate_check(KEYS, "duplicate_key", shown, null_keys=False, hint=hint)]
    error = invalid_rows == "error"
    if error:
        apply_checks(df, duplicates, source, invalid_rows, names)
    if adjust:
        df = _adjusted(df)
    # drop: the rows that fail a row check go first, so a key's valid row outlives its bad twin
    df, dropped = apply_checks(df, _price_checks(max_price, adjust), source, invalid_rows, names)
    df, dup = (df, {}) if error else apply_checks(df, duplicates, source, invalid_rows, names)
    counts = {reason: int(dropped.get(reason, 0) + dup.get(reason, 0)) for reason in PRICE_REASONS}
    return df.select(CANONICAL), counts


def validate_prices(
    df: pl.DataFrame,
    source: str,
    invalid_rows: str,
    names: Mapping[str, str] | None = None,
    max_price: float | None = None,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Check a price frame with canonical column names; return the clean canonical frame.

    ``df`` may hold text columns (dates as ISO strings, numbers as strings) and
    the helper columns :data:`FILE_COL` / :data:`ROW_COL`. ``names`` maps a
    canonical column to the name the user's file uses, for messages. Returns the
    frame (date Date, code Utf8, OHLCV Float64, sorted by (date, code)) and
    rows dropped per reason (every key of :data:`PRICE_REASONS`, zeros included).
    Zero opens are ordinary ``non_positive_price`` rows here (see :func:`fix_zero_open`).
    """
    df = prepare_prices(df, source, invalid_rows, names)
    return check_prices(df, source, invalid_rows, names, max_price)


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


def _with_validity(df: pl.DataFrame, source: str, date_format: str | None) -> pl.DataFrame:
    """Parse the optional ``start``/``end`` columns; absent ones become null (unbounded) dates."""
    for column in VALIDITY:
        if column in df.columns:
            df = parse_dates(df, column, date_format, source)
        else:
            df = df.with_columns(pl.lit(None, dtype=pl.Date).alias(column))
    return df


def _interval_check(reason: str) -> Check:
    return Check(reason, VALIDITY, pl.col("start") > pl.col("end"), "start must be <= end")


def _check_overlaps(df: pl.DataFrame, source: str) -> None:
    """Structural: a code's validity intervals must not overlap (its sector would be ambiguous).

    ``df`` is sorted by (code, start) with null starts first, so checking each
    interval against the previous one of its code finds any overlap.
    """
    col = pl.col
    previous_end = col("end").shift(1)
    overlap = (
        (col("code") == col("code").shift(1))
        & (previous_end.is_null() | col("start").is_null() | (previous_end >= col("start")))
    ).fill_null(False)
    n_bad = int(df.select(overlap.sum()).item())
    if n_bad:
        rows = df.filter(overlap | overlap.shift(-1).fill_null(False))
        raise DataError(
            f"{source}: columns 'code', 'start', 'end': {n_bad} row(s) overlap an earlier validity"
            " interval of the same code (intervals are inclusive; a blank start or end is unbounded);"
            f" offending rows:\n{format_rows(rows, ('code', 'start', 'end', 'sector', 'industry'), source)}\n"
            "Make each code's intervals disjoint (end one day before the next start)."
        )


def _check_code_match(
    kept: pl.DataFrame,
    before: pl.DataFrame,
    columns: Sequence[str],
    codes: pl.Series | None,
    min_share: float,
    source: str,
    what: str,
) -> None:
    """Structural: too few price codes covered means the two files spell codes differently."""
    if codes is None or min_share <= 0 or codes.len() == 0:
        return
    price_codes = codes.unique().sort()
    covered = pl.concat([kept.get_column(c) for c in columns]).unique()
    hit = price_codes.is_in(covered.implode())
    share = float(hit.mean() or 0.0)
    if share >= min_share:
        return
    in_file = pl.concat([before.get_column(c) for c in columns]).drop_nulls().unique().sort()
    foreign = in_file.filter(~in_file.is_in(price_codes.implode()))
    shown_file = (foreign if foreign.len() else in_file).head(MAX_SHOWN).to_list()
    shown_prices = price_codes.filter(~hit).head(MAX_SHOWN).to_list()
    raise DataError(
        f"{source}: {_columns_label(columns, None)}: only {int(hit.sum())} of the {price_codes.len()}"
        f" price codes ({share:.1%}) {what}, below data.min_code_match = {min_share:g}; the codes"
        f" probably do not match. Price codes without a match: {', '.join(map(repr, shown_prices))};"
        f" codes in the file: {', '.join(map(repr, shown_file)) or '(none)'}"
        f"{' (none of them in the prices)' if foreign.len() else ''}.\n"
        "Spell the codes alike in both files, or lower data.min_code_match if the file is meant to"
        " cover only a few of the price codes."
    )


def validate_universe(
    df: pl.DataFrame,
    source: str,
    invalid_rows: str,
    codes: pl.Series | None = None,
    date_format: str | None = None,
    min_code_match: float = 0.0,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``code, sector, industry`` (+ optional ``listed, delisted``) + validity ``start, end``.

    One row per (code, start); a code's intervals must not overlap. ``start``
    and ``end`` are always in the result (null when the file has none).
    """
    require_columns(df, ("code", "sector", "industry"), source)
    require_rows(df, source)
    if ROW_COL not in df.columns:
        df = df.with_row_index(ROW_COL)
    df = _strings(df, ("code", "sector", "industry"))
    for column in ("listed", "delisted"):
        if column in df.columns:
            df = parse_dates(df, column, date_format, source)
    df = _with_validity(df, source, date_format)
    context = ("code",)
    checks = [*null_checks(("code", "sector", "industry"), "universe_null_value"),
              _interval_check("universe_invalid_interval")]
    df, dropped = apply_checks(df, checks, source, invalid_rows, context=context)
    df, dup = apply_checks(
        df.sort("code", "start", nulls_last=False, maintain_order=True),
        [duplicate_check(("code", "start"), "universe_duplicate_code")],
        source,
        invalid_rows,
        context=context,
    )
    before = df
    df, unknown = _drop_unknown(df, ("code",), codes)
    # Only the rows that are used: a wider-market file may be untidy where it does not matter.
    _check_overlaps(df, source)
    _check_code_match(df, before, ("code",), codes, min_code_match, source, "have a universe row")
    keep = ["code", "sector", "industry", *(c for c in ("listed", "delisted") if c in df.columns), *VALIDITY]
    counts = {**dropped, **dup, "universe_unknown_code": unknown}
    out = df.select(keep).sort("code", "start", nulls_last=False)
    return out, {r: int(counts.get(r, 0)) for r in UNIVERSE_REASONS}


def _nan_cells(df: pl.DataFrame, column: str) -> pl.Expr:
    """Cells of ``column`` that hold NaN: a float NaN, or text such as ``nan`` / ``NaN``."""
    dtype = df.schema[column]
    if dtype.is_float():
        nan = pl.col(column).is_nan()
    elif dtype == pl.Utf8 or dtype == pl.Categorical or isinstance(dtype, pl.Enum):
        nan = pl.col(column).cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False).is_nan()
    else:
        nan = pl.lit(False)
    return nan.fill_null(False)


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
    date_format: str | None = None,
    min_code_match: float = 0.0,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``src, dst, relation, weight, start, end``; a missing weight column or empty cell means 1.0.

    A weight that is not a finite number (text, inf, NaN) and a self-loop (src ==
    dst: the graph stage adds each stock's own) are invalid rows. Unique on (src,
    dst, relation, start); ``start``/``end`` are null when the file has none.
    """
    require_columns(df, ("src", "dst", "relation"), source)
    require_rows(df, source)
    if ROW_COL not in df.columns:
        df = df.with_row_index(ROW_COL)
    if "weight" not in df.columns:
        df = df.with_columns(pl.lit(1.0).alias("weight"))
    df = _strings(df, ("src", "dst", "relation"))
    df = df.with_columns(pl.col("relation").str.to_lowercase())
    _check_relation_names(df, source)
    df = _with_validity(df, source, date_format)
    context = ("src", "dst", "relation")
    # NaN (a failed computation, "nan" in a CSV) is no weight, unlike an empty cell: flag it
    # before coerce_numeric turns it into a null, and keep it NaN for the finite check.
    df = df.with_columns(_nan_cells(df, "weight").alias(_NAN))
    df = coerce_numeric(df, ("weight",), source, invalid_rows, context=context)
    weight = pl.when(pl.col(_NAN)).then(float("nan")).otherwise(pl.col("weight").fill_null(1.0))
    df = df.with_columns(weight.alias("weight"))  # bad text is flagged in _BAD_NUMERIC
    loop_rule = "src must differ from dst: the graph stage adds each stock's own self-loop"
    checks = [
        Check("relations_invalid_weight", ("weight",), pl.col(_BAD_NUMERIC), "must be a number"),
        *null_checks(("src", "dst", "relation"), "relations_null_value"),
        Check("relations_invalid_weight", ("weight",), ~pl.col("weight").is_finite(),
              "must be a finite number; leave the cell empty for weight 1"),
        _interval_check("relations_invalid_interval"),
        Check("relations_self_loop", ("src", "dst"), pl.col("src") == pl.col("dst"), loop_rule),
    ]
    df, dropped = apply_checks(df, checks, source, invalid_rows, context=context)
    key = (*context, "start")
    df, dup = apply_checks(
        df.sort(key, nulls_last=False, maintain_order=True),
        [duplicate_check(key, "relations_duplicate")],
        source,
        invalid_rows,
        context=key,
    )
    before = df
    df, unknown = _drop_unknown(df, ("src", "dst"), codes)
    what = "are an endpoint of a relation row"
    _check_code_match(df, before, ("src", "dst"), codes, min_code_match, source, what)
    counts = {**dropped, **dup, "relations_unknown_code": unknown}
    out = df.select("src", "dst", "relation", "weight", *VALIDITY)
    out = out.sort("relation", "src", "dst", "start", nulls_last=False)
    return out, {r: int(counts.get(r, 0)) for r in RELATION_REASONS}
