"""The planted truth as a model: the ceiling every model is measured against."""

from __future__ import annotations

import polars as pl

from alphagraph.evaluation.split import Fold, assign_split


def delayed_alpha(oracle: pl.DataFrame, label_delay: int) -> pl.DataFrame:
    """``date, code, alpha`` where alpha dated t is the planted expected return of the labelled period.

    With ``label_delay`` d the 1-day label of t is close(t+d) -> close(t+d+1),
    t+k the stock's k-th next own row (as the labels count it), so the oracle of
    t is the planted alpha of the stock's row t+d: a ceiling that knows d days
    of future information, never an attainable forecast.
    """
    frame = oracle.select("date", "code", "alpha")
    if not label_delay:
        return frame
    return frame.sort("code", "date").with_columns(pl.col("alpha").shift(-label_delay).over("code")).sort("date", "code")


def oracle_predictions(
    oracle: pl.DataFrame, panel: pl.DataFrame, folds: list[Fold], horizons: list[int], reach: int, label_delay: int = 0
) -> pl.DataFrame:
    """Val and test rows of every fold with ``pred_{h}d`` = the planted expected return of the 1-day label.

    The oracle is a 1-day quantity; it is used for every horizon, so its
    multi-day figures are a reference, not a ceiling.
    """
    keyed = panel.select("date", "code").join(delayed_alpha(oracle, label_delay), on=["date", "code"], how="left")
    return signal_predictions(keyed, "alpha", folds, horizons, reach)


def signal_predictions(keyed: pl.DataFrame, column: str, folds: list[Fold], horizons: list[int], reach: int) -> pl.DataFrame:
    """Val and test rows of every fold of ``keyed`` (``date, code, column``) with ``pred_{h}d`` = ``column``."""
    parts = []
    for fold in folds:
        rows = assign_split(keyed, fold, reach).filter(pl.col("split").is_in(["val", "test"]))
        parts.append(
            rows.select(
                "date",
                "code",
                pl.lit(fold.fold, dtype=pl.Int32).alias("fold"),
                "split",
                *[pl.col(column).cast(pl.Float32).alias(f"pred_{h}d") for h in horizons],
            )
        )
    return pl.concat(parts)


def empty_outputs(horizons: list[int]) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """Well-typed empty predictions and plot series: a file source has no planted truth.

    The stage still writes every out that dvc.yaml declares, so the DAG runs on
    to the models and the report, and a rerun finds nothing stale.
    """
    preds = pl.DataFrame(
        schema={"date": pl.Date, "code": pl.Utf8, "fold": pl.Int32, "split": pl.Utf8}
        | {f"pred_{h}d": pl.Float32 for h in horizons}
    )
    series = {
        "rank_ic": pl.DataFrame(schema={"date": pl.Date} | {f"rank_ic_{h}d": pl.Float64 for h in horizons}),
        "cum_return": pl.DataFrame(schema={"date": pl.Date} | {f"cum_return_{h}d": pl.Float64 for h in horizons}),
    }
    return preds, series
