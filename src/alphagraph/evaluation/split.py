"""Folds over the trading calendar, with embargo and label purging (``split.scheme``).

``walk_forward`` (default): fold k's test window is the k-th of ``n_splits``
contiguous windows that end on the last trading day. Its validation window
ends ``embargo_days`` trading days before the test window starts, and the
training window (expanding, or rolling with ``max_train_days``) ends
``embargo_days`` before validation. An embargo >= max(horizon) + label_delay
keeps every label window of a training row inside the days before
validation; rows whose own label window is longer (a suspended stock's next
h trading days span more calendar days) are purged by :func:`assign_split`.
``rolling`` is the same with the rolling window made explicit
(``max_train_days`` required).

``refit_every`` R (walk-forward / rolling; off when null): each test window is
cut into consecutive blocks of R trading days (the last may be shorter) and
each block is a fold of its own, with its validation and training windows
placed before the block by the same rules, so a block is predicted by a model
fitted on data up to ``embargo_days`` before it. Folds are numbered
consecutively; :attr:`Fold.window` / :attr:`Fold.block` say which test window
a fold cuts and where. The pooled test days are those of the folds without
refits.

``purged_kfold`` (Lopez de Prado's purged k-fold with embargo): the whole
calendar is cut into ``n_splits`` contiguous test blocks of (nearly) equal
length (``test_days`` is not used). Validation is the ``val_days`` block
ending ``embargo_days`` before the test block, or, where the calendar has no
room for it (the first block), the one starting ``embargo_days`` after it.
Training is every other day (:attr:`Fold.train_ranges`, on both sides of the
held-out span) except ``embargo_days`` after each held-out block (the
embargo: rows right after a block share its market days), and
:func:`assign_split` purges every training row whose label window
``[date, label_end]`` overlaps the validation or test window, or a label
window of the same stock's rows there. Models are then trained on data dated
AFTER their test block: the folds assess a model (less noisy than one
walk-forward path, every day tested once), they are NOT a tradable backtest,
and a model's input windows (seq_len days of features) may reach into a
held-out block. Everything downstream goes through :func:`assign_split` (and
:func:`in_train`), so it runs unchanged; the RL export's ``in_sample`` rule
widens to every date outside the exported fold's test block.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from alphagraph.runtime.config import SplitConfig
from alphagraph.runtime.errors import UserError
from alphagraph.runtime.io import read_json


class SplitError(UserError):
    """The data cannot hold the requested folds."""


DateRange = tuple[dt.date, dt.date]


@dataclass(frozen=True)
class Fold:
    """Inclusive date ranges of one fold.

    ``train_ranges`` is set by purged k-fold only: the training ranges on both
    sides of the held-out span; ``train`` is then their envelope (first to last
    training day, which contains val and test). Code that asks whether a date
    is a training date uses :attr:`ranges` / :func:`in_train`. ``window`` and
    ``block`` are set with ``split.refit_every`` only: the fold's test dates
    are block ``block`` of test window ``window``.
    """

    fold: int
    train: DateRange
    val: DateRange
    test: DateRange
    train_ranges: tuple[DateRange, ...] | None = None
    window: int | None = None
    block: int = 0

    @property
    def ranges(self) -> tuple[DateRange, ...]:
        """The training date ranges (one for walk-forward folds)."""
        return self.train_ranges if self.train_ranges is not None else (self.train,)

    @property
    def trains_after_test(self) -> bool:
        """True when the model trains on dates after its test window (purged k-fold)."""
        return self.ranges[-1][1] > self.test[1]


def in_train(fold: Fold) -> pl.Expr:
    """``date`` lies in one of the fold's training ranges (by date alone, before purging)."""
    d = pl.col("date")
    return pl.any_horizontal(*(d.is_between(*r) for r in fold.ranges))


def first_test_day(folds: Sequence[Fold]) -> dt.date:
    """The first day of any fold's test window."""
    return min(f.test[0] for f in folds)


def validation_before_test(frame: pl.DataFrame) -> pl.DataFrame:
    """The ``split == "val"`` rows dated before the first ``split == "test"`` row of ``frame``.

    A choice pooled over walk-forward folds must not read later folds' validation windows: they
    are earlier folds' test days (on the default split 480 of 750 pooled validation days are).
    """
    test = frame.filter(pl.col("split") == "test")["date"]
    val = frame.filter(pl.col("split") == "val")
    return val if test.is_empty() else val.filter(pl.col("date") < test.min())


def make_folds(calendar: list[dt.date], cfg: SplitConfig) -> list[Fold]:
    """Folds over a sorted calendar of unique trading days."""
    if cfg.refit_every is not None:
        if cfg.refit_every < 1:
            raise SplitError(f"split.refit_every: must be >= 1 trading days (null = no refits), got {cfg.refit_every}")
        if cfg.scheme == "purged_kfold":
            raise SplitError(
                "split.refit_every: refits cut walk-forward test windows into blocks; purged_kfold trains on both"
                " sides of its test blocks, so there is nothing to refit: set split.refit_every to null"
            )
        if cfg.val_start is not None and cfg.test_start is not None:
            raise SplitError("split.refit_every: not available with a fixed split.val_start / split.test_start; set it to null")
    if cfg.val_start is not None and cfg.test_start is not None:
        return [fixed_fold(calendar, cfg)]
    if cfg.scheme == "purged_kfold":
        return purged_kfold(calendar, cfg)
    if cfg.scheme == "rolling" and cfg.max_train_days is None:
        raise SplitError("split: scheme rolling needs split.max_train_days (the rolling training window), got null")
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
    step = cfg.refit_every or t  # no refits: one block, the whole window
    folds = []
    for k in range(cfg.n_splits):
        window_start = first_test + k * t
        for b, test_start in enumerate(range(window_start, window_start + t, step)):
            # Later blocks only move val and train forward: the first block is the binding one for the length check.
            val_end = test_start - e - 1
            val_start = val_end - v + 1
            train_end = val_start - e - 1
            train_start = 0 if cfg.max_train_days is None else max(0, train_end - cfg.max_train_days + 1)
            folds.append(
                Fold(
                    fold=len(folds),
                    train=(calendar[train_start], calendar[train_end]),
                    val=(calendar[val_start], calendar[val_end]),
                    test=(calendar[test_start], calendar[min(test_start + step, window_start + t) - 1]),
                    window=k if cfg.refit_every is not None else None,
                    block=b,
                )
            )
    return folds


def purged_kfold(calendar: list[dt.date], cfg: SplitConfig) -> list[Fold]:
    """Purged k-fold with embargo over the whole calendar (module docstring); the purge is :func:`assign_split`'s."""
    n, k, e, v = len(calendar), cfg.n_splits, cfg.embargo_days, cfg.val_days
    if k < 2 or min(v, cfg.min_train_days) < 1:
        raise SplitError("split: purged_kfold needs n_splits >= 2 and min_train_days, val_days >= 1")
    cuts = [i * n // k for i in range(k + 1)]  # block sizes differ by at most one day
    folds = []
    for i in range(k):
        ts, te = cuts[i], cuts[i + 1] - 1
        if ts - e - v >= 0:  # validation before the test block, as in walk-forward
            vs, ve, lo, hi = ts - e - v, ts - e - 1, ts - e - v, te
        elif te + e + v <= n - 1:  # no room before (the first block): after it, past the embargo
            vs, ve, lo, hi = te + e + 1, te + e + v, ts, te + e + v
        else:
            raise SplitError(
                f"split: purged_kfold test block {i} ({te - ts + 1} of {n} trading days) leaves no room for"
                f" val_days {v} + embargo_days {e} on either side; lower split.val_days or split.n_splits"
            )
        spans = [(0, lo - 1), (hi + e + 1, n - 1)]
        spans = [(a, b) for a, b in spans if a <= b]
        days = sum(b - a + 1 for a, b in spans)
        if days < cfg.min_train_days:
            raise SplitError(
                f"split: purged_kfold fold {i} keeps {days} training days (calendar {n} minus test {te - ts + 1},"
                f" val {v} and embargoes), below split.min_train_days {cfg.min_train_days}"
            )
        ranges = tuple((calendar[a], calendar[b]) for a, b in spans)
        folds.append(
            Fold(
                fold=i,
                train=(ranges[0][0], ranges[-1][1]),
                val=(calendar[vs], calendar[ve]),
                test=(calendar[ts], calendar[te]),
                train_ranges=ranges,
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

    def iso(rng: DateRange) -> list[str]:
        return [rng[0].isoformat(), rng[1].isoformat()]

    def fold_doc(f: Fold) -> dict[str, Any]:
        doc = {"fold": f.fold, "train": iso(f.train), "val": iso(f.val), "test": iso(f.test)}
        # With refits only (files without them stay as they were): reports group the blocks by window.
        doc |= {"window": f.window, "block": f.block} if f.window is not None else {}
        # Purged k-fold only (walk-forward files stay as they were): "train" is then the envelope.
        return doc | ({"train_ranges": [iso(r) for r in f.train_ranges]} if f.train_ranges is not None else {})

    scheme = {"scheme": cfg.scheme} if cfg.scheme != "walk_forward" else {}
    refit = {"refit_every": cfg.refit_every} if cfg.refit_every is not None else {}
    return {"embargo_days": cfg.embargo_days, **scheme, **refit, "folds": [fold_doc(f) for f in folds]}


def load_folds(path: str | Path) -> list[Fold]:
    """Read ``folds.json`` back into :class:`Fold` objects."""
    doc = read_json(path)

    def rng(pair: list[str]) -> tuple[dt.date, dt.date]:
        return dt.date.fromisoformat(pair[0]), dt.date.fromisoformat(pair[1])

    def ranges(f: dict[str, Any]) -> tuple[DateRange, ...] | None:
        return tuple(rng(r) for r in f["train_ranges"]) if "train_ranges" in f else None

    return [
        Fold(f["fold"], rng(f["train"]), rng(f["val"]), rng(f["test"]), ranges(f), f.get("window"), f.get("block", 0))
        for f in doc["folds"]
    ]


def label_end(reach: int) -> pl.Expr:
    """The date of a row's last label day: its stock's row ``reach`` trading days later."""
    return pl.col("date").shift(-reach).over("code", order_by="date")


def assign_split(panel: pl.DataFrame, fold: Fold, reach: int) -> pl.DataFrame:
    """Rows of ``panel`` in the fold with a ``split`` column (train / val / test).

    ``reach`` = max(horizons) + label_delay. A train row whose label window
    ends on or after the first validation day, or a val row whose window
    reaches the test window, is purged; a row with no label end (end of the
    stock's data) keeps its place, its labels are null anyway. Purged k-fold
    folds (``train_ranges``) go through :func:`_assign_purged`.
    """
    if fold.train_ranges is not None:
        return _assign_purged(panel, fold, reach)
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



def _assign_purged(panel: pl.DataFrame, fold: Fold, reach: int) -> pl.DataFrame:
    """:func:`assign_split` for a fold with training on both sides of its held-out windows.

    A row's label window is ``[date, label_end]``; with no label end (fewer than
    ``reach`` rows left) it runs to the stock's last row, whose shorter labels
    may still be set. For stock c a held-out window spans from its first day to
    the later of its last day and the last label end of c's rows in it. A train
    row is purged when its label window overlaps the val or test span; a val row
    when its label window overlaps the test span.
    """
    d, end = pl.col("date"), pl.col("__label_end")
    framed = panel.with_columns(label_end(reach).alias("__label_end"))
    framed = framed.with_columns(end.fill_null(d.max().over("code")))  # window expressions do not nest

    def overlaps(window: DateRange) -> pl.Expr:
        # max_horizontal skips the null of a stock with no row in the window
        span_end = pl.max_horizontal(pl.lit(window[1]), end.filter(d.is_between(*window)).max().over("code"))
        return (d <= span_end) & (end >= pl.lit(window[0]))

    split = (
        pl.when(in_train(fold) & ~overlaps(fold.val) & ~overlaps(fold.test))
        .then(pl.lit("train"))
        .when(d.is_between(*fold.val) & ~overlaps(fold.test))
        .then(pl.lit("val"))
        .when(d.is_between(*fold.test))
        .then(pl.lit("test"))
        .otherwise(None)
    )
    return framed.with_columns(split=split).filter(pl.col("split").is_not_null()).drop("__label_end")
