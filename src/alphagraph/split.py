"""Walk-forward folds over the trading calendar, with embargo and label purging.

Fold k's test window is the k-th of ``n_splits`` contiguous windows that end
on the last trading day. Its validation window ends ``embargo_days`` trading
days before the test window starts, and the training window (expanding, or
rolling with ``max_train_days``) ends ``embargo_days`` before validation. An
embargo >= max(horizon) + label_delay keeps every label window of a training
row inside the days before validation; rows whose own label window is longer
(a suspended stock's next h trading days span more calendar days) are purged
by :func:`assign_split`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from alphagraph.config import SplitConfig
from alphagraph.errors import UserError
from alphagraph.io import read_json


class SplitError(UserError):
    """The data cannot hold the requested folds."""


@dataclass(frozen=True)
class Fold:
    """Inclusive date ranges of one walk-forward fold."""

    fold: int
    train: tuple[dt.date, dt.date]
    val: tuple[dt.date, dt.date]
    test: tuple[dt.date, dt.date]


def make_folds(calendar: list[dt.date], cfg: SplitConfig) -> list[Fold]:
    """Folds over a sorted calendar of unique trading days."""
    if cfg.val_start is not None and cfg.test_start is not None:
        return [fixed_fold(calendar, cfg)]
    n = len(calendar)
    e, v, t = cfg.embargo_days, cfg.val_days, cfg.test_days
    if min(v, t, cfg.n_splits, cfg.min_train_days) < 1:
        raise SplitError("split: n_splits, min_train_days, val_days and test_days must all be >= 1")
    needed = cfg.min_train_days + e + v + e + cfg.n_splits * t
    if n < needed:
        raise SplitError(
            f"split: {cfg.n_splits} folds need at least {needed} trading days "
            f"(min_train_days {cfg.min_train_days} + embargo {e} + val {v} + embargo {e} "
            f"+ {cfg.n_splits} x test {t}), but the normalized panel has {n} (normalize drops dates"
            " with fewer than normalize.min_stocks stocks)"
        )
    first_test = n - cfg.n_splits * t
    folds = []
    for k in range(cfg.n_splits):
        test_start = first_test + k * t
        val_end = test_start - e - 1
        val_start = val_end - v + 1
        train_end = val_start - e - 1
        train_start = 0 if cfg.max_train_days is None else max(0, train_end - cfg.max_train_days + 1)
        folds.append(
            Fold(
                fold=k,
                train=(calendar[train_start], calendar[train_end]),
                val=(calendar[val_start], calendar[val_end]),
                test=(calendar[test_start], calendar[test_start + t - 1]),
            )
        )
    return folds


def fixed_fold(calendar: list[dt.date], cfg: SplitConfig) -> Fold:
    """One fold at fixed dates (a published protocol): train before ``val_start``, val, then test.

    No gap between the windows: :func:`assign_split` purges the rows whose
    label window crosses a boundary, which is all an embargo is for here.
    """
    val_start, test_start = dt.date.fromisoformat(cfg.val_start), dt.date.fromisoformat(cfg.test_start)
    train = [d for d in calendar if d < val_start]
    val = [d for d in calendar if val_start <= d < test_start]
    test = [d for d in calendar if d >= test_start]
    for name, days, need in (("train", train, cfg.min_train_days), ("val", val, 1), ("test", test, 1)):
        if len(days) < need:
            span = f"{calendar[0]} .. {calendar[-1]}" if calendar else "no days"
            raise SplitError(
                f"split: the fixed {name} window (split.val_start {cfg.val_start}, split.test_start"
                f" {cfg.test_start}) holds {len(days)} trading days, needs at least {need}; the normalized"
                f" panel spans {span}"
            )
    if cfg.max_train_days is not None:
        train = train[-cfg.max_train_days:]
    return Fold(fold=0, train=(train[0], train[-1]), val=(val[0], val[-1]), test=(test[0], test[-1]))


def folds_to_json(folds: list[Fold], cfg: SplitConfig) -> dict[str, Any]:
    """The ``folds.json`` document: ISO dates, inclusive ranges, the embargo used."""

    def iso(rng: tuple[dt.date, dt.date]) -> list[str]:
        return [rng[0].isoformat(), rng[1].isoformat()]

    return {
        "embargo_days": cfg.embargo_days,
        "folds": [
            {"fold": f.fold, "train": iso(f.train), "val": iso(f.val), "test": iso(f.test)} for f in folds
        ],
    }


def load_folds(path: str | Path) -> list[Fold]:
    """Read ``folds.json`` back into :class:`Fold` objects."""
    doc = read_json(path)

    def rng(pair: list[str]) -> tuple[dt.date, dt.date]:
        return dt.date.fromisoformat(pair[0]), dt.date.fromisoformat(pair[1])

    return [Fold(f["fold"], rng(f["train"]), rng(f["val"]), rng(f["test"])) for f in doc["folds"]]


def label_end(reach: int) -> pl.Expr:
    """The date of a row's last label day: its stock's row ``reach`` trading days later."""
    return pl.col("date").shift(-reach).over("code", order_by="date")


def assign_split(panel: pl.DataFrame, fold: Fold, reach: int) -> pl.DataFrame:
    """Rows of ``panel`` in the fold with a ``split`` column (train / val / test).

    ``reach`` = max(horizons) + label_delay. A train row whose label window
    ends on or after the first validation day, or a val row whose window
    reaches the test window, is purged; a row with no label end (end of the
    stock's data) keeps its place, its labels are null anyway.
    """
    end = label_end(reach)
    d = pl.col("date")
    split = (
        pl.when(d.is_between(*fold.train) & (end.is_null() | (end < fold.val[0])))
        .then(pl.lit("train"))
        .when(d.is_between(*fold.val) & (end.is_null() | (end < fold.test[0])))
        .then(pl.lit("val"))
        .when(d.is_between(*fold.test))
        .then(pl.lit("test"))
        .otherwise(None)
    )
    return panel.with_columns(split=split).filter(pl.col("split").is_not_null())

