"""The core model's data: its graph index, the fold's day batches (targets, weights, the linear path's inputs) and its loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from alphagraph.evaluation.split import Fold
from alphagraph.evaluation.walkforward import label_reach
from alphagraph.features.normalize import feature_columns
from alphagraph.runtime import paths
from alphagraph.runtime.config import Params, TrainConfig
from alphagraph.runtime.errors import UserError
from alphagraph.runtime.log import get_logger
from alphagraph.train import MultiHorizonLoss, split_codes
from alphagraph.train.core_data import CoreDayData


def core_index(edges: pl.DataFrame, panel: pl.DataFrame, params: Params) -> Any:
    """The GraphIndex of the core model: one edge type per relation of ``train.relations`` (else all)."""
    from alphagraph.graph.loader import model_index

    wanted = params.train.relations if params.train.relations is not None else params.graph.relations
    present = set(edges.get_column("relation").unique().to_list())
    # A relation with no edge in the user's data would train an attention that never sees a message.
    empty = [r for r in dict.fromkeys(wanted) if r not in present]
    if empty:
        get_logger("core").warning("relations with no edges are left out of the model: %s", ", ".join(empty))
    kept = [r for r in dict.fromkeys(wanted) if r in present]
    if not kept and params.train.use_edges:
        raise UserError(
            f"core: none of the relations {list(wanted)} (train.relations, else graph.relations) has an edge"
            f" in {paths.EDGES}; set train.use_edges: false for the no-graph model"
        )
    return model_index(edges, panel, kept or list(wanted), params.graph.relations, "train.relations")


def wide_index(panel: pl.DataFrame, params: Params, edges: pl.DataFrame | None = None, prices: pl.DataFrame | None = None) -> Any:
    """The linear path's inputs (``train.wide``): ``panel`` plus lgbm_graph's relational columns, as
    :class:`~alphagraph.models.linear.LinearIndex` of ``linear_graph``; None when the path is off.

    ``edges`` and ``prices`` are read from the graph and ingest stages' outputs when not given."""
    if params.train.wide == "none":
        return None
    from alphagraph.runtime.io import read_parquet
    from alphagraph.models.linear import linear_index

    edges = read_parquet(paths.EDGES) if edges is None else edges
    prices = read_parquet(paths.PRICES, columns=["date", "code", "close"]) if prices is None else prices
    return linear_index("linear_graph", panel, params, edges, prices)


def wide_columns(wide: Any, panel: pl.DataFrame) -> list[str]:
    """The columns of the linear path beyond the panel's own features (the relational ones), in order."""
    own = set(feature_columns(panel))
    return [c for c in wide.features if c not in own]


def wide_matrix(wide: Any, panel: pl.DataFrame) -> np.ndarray:
    """Float32 [panel rows, W]: the linear path's relational inputs (:func:`wide_columns`), nulls as 0."""
    return wide.panel.select(pl.col(wide_columns(wide, panel)).cast(pl.Float32).fill_null(0.0)).to_numpy()


def core_fold_data(
    panel: pl.DataFrame,
    index: Any,
    fold: Fold,
    params: Params,
    universe: pl.DataFrame | None = None,
    prices: pl.DataFrame | None = None,
    wide: Any = None,
) -> CoreDayData:
    """The fold's day batches; with ``train.target`` / ``train.regime_weighting`` on, residual loss targets / date weights.

    ``universe`` (sector_neutral) and ``prices`` (regime weighting) are read from
    ``data/raw`` when needed and not given; so is ``wide`` (:func:`wide_index`) with ``train.wide``.
    """
    from alphagraph.runtime.io import read_parquet
    from alphagraph.evaluation.regimes import row_weights
    from alphagraph.features.residual import residual_targets
    from alphagraph.train.data import dates_with

    cfg = params.train
    codes = split_codes(panel, fold, label_reach(params))
    horizons = params.features.horizons
    targets = weights = None
    if cfg.target != "raw":
        if cfg.target == "sector_neutral" and universe is None:
            universe = read_parquet(paths.UNIVERSE)
        targets = residual_targets(panel, cfg.target, horizons, universe)
    if cfg.regime_weighting:
        train_dates = dates_with(panel["date"].to_numpy().astype("datetime64[D]"), codes, "train")
        if prices is None:
            prices = read_parquet(paths.PRICES, columns=["date", "code", "close"])
        weights = row_weights(panel, prices, train_dates, cfg.regime_window)
    wide_inputs = None
    if cfg.wide != "none":
        wide_inputs = wide_matrix(wide if wide is not None else wide_index(panel, params), panel)
    return CoreDayData(
        index, panel, codes, feature_columns(panel), horizons, cfg.seq_len,
        use_edges=cfg.use_edges, sampling=cfg.sampling, fanouts=cfg.fanouts, seed=params.seed,
        targets=targets, row_weights=weights, wide_inputs=wide_inputs,
    )


def core_loss(cfg: TrainConfig, data: CoreDayData) -> MultiHorizonLoss:
    sig = data.signal_balance("train")
    return MultiHorizonLoss.from_balance(
        cfg.horizon_weights, data.class_balance("train"), cfg.cls_weight, rank_weight=cfg.rank_weight, rank="soft",
        sig_weight=cfg.cls_weight if sig is not None else 0.0, sig_pos_weight=None if sig is None else sig.pos_weight(),
    )
