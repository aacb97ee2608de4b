"""Rules a field's type alone cannot express: ranges, and fields that must agree with each other.

:func:`check_params` runs them all on a coerced :class:`Params`; the loader
(:func:`alphagraph.runtime.config.params_from_dict`) calls it last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alphagraph.runtime.params import (
    KINDS,
    RELATION_NAMES,
    ZOO_MODULES,
    BacktestConfig,
    ConfigError,
    LinearConfig,
    Params,
)


def check_params(p: Params, source: str) -> None:
    """Cross-field rules that a type alone cannot express."""

    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{source}: {key}: {msg}")

    syn = p.data.synthetic
    _check_training(p, fail)
    if p.distributed.nproc_per_node < 1:
        fail("distributed.nproc_per_node", f"must be >= 1, got {p.distributed.nproc_per_node}")
    if p.distributed.fold_workers < 1:
        fail("distributed.fold_workers", f"must be >= 1, got {p.distributed.fold_workers}")
    if syn.n_stocks < 2:
        fail("data.synthetic.n_stocks", f"needs at least 2 stocks, got {syn.n_stocks}")
    if syn.n_days < 30:
        fail("data.synthetic.n_days", f"needs at least 30 days, got {syn.n_days}")
    if syn.n_sectors < 1 or syn.industries_per_sector < 1:
        fail("data.synthetic.n_sectors", "sectors and industries per sector must be >= 1")
    for key in ("missing_share", "spurious_share"):
        if not 0 <= getattr(syn.observed, key) < 1:
            fail(f"data.synthetic.observed.{key}", f"must be in [0, 1), got {getattr(syn.observed, key)}")
    if syn.observed.weight_noise < 0 or syn.strength_variation < 0 or syn.supply_nonlinearity < 0:
        fail("data.synthetic", "weight_noise, strength_variation and supply_nonlinearity must be >= 0")
    if not 0 <= syn.strength_persistence < 1:
        fail("data.synthetic.strength_persistence", f"must be in [0, 1), got {syn.strength_persistence}")
    if syn.supply_life_days < 0 or syn.fund_rebalance_days < 0:
        fail("data.synthetic.supply_life_days", "supply_life_days and fund_rebalance_days must be >= 0")
    if not p.features.horizons or any(h < 1 for h in p.features.horizons):
        fail("features.horizons", f"must be a non-empty list of positive ints, got {p.features.horizons}")
    if len(set(p.features.horizons)) != len(p.features.horizons):
        fail("features.horizons", f"has duplicates: {p.features.horizons}")
    if any(w < 2 for w in p.features.windows):
        fail("features.windows", f"windows must be >= 2, got {p.features.windows}")
    if p.features.label_delay < 0:
        fail("features.label_delay", f"must be >= 0, got {p.features.label_delay}")
    min_embargo = max(p.features.horizons) + p.features.label_delay
    if p.split.embargo_days < min_embargo:
        fail(
            "split.embargo_days",
            f"{p.split.embargo_days} is below max(features.horizons) + features.label_delay"
            f" = {min_embargo}: label windows would cross fold boundaries",
        )
    if not 0 < p.eval.quantile <= 0.5:
        fail("eval.quantile", f"must be in (0, 0.5], got {p.eval.quantile}")
    if p.eval.psi_alert <= 0:
        fail("eval.psi_alert", f"must be > 0 (0.1: moderate, 0.25: large shift), got {p.eval.psi_alert}")
    _check_backtest(p.eval.backtest, fail)
    if not 0 <= p.eval.execution_lag <= 20:
        fail("eval.execution_lag", f"must be 0 (same close, idealized) to 20 market days, got {p.eval.execution_lag}")
    if p.normalize.clip <= 0:
        fail("normalize.clip", f"must be > 0, got {p.normalize.clip}")
    groups = (("gat", p.gat), ("train", p.train), ("temporal", p.temporal), ("tgcn", p.tgcn))
    for group, weights in ((g, cfg.horizon_weights) for g, cfg in groups):
        if len(weights) != len(p.features.horizons):
            fail(
                f"{group}.horizon_weights",
                f"has {len(weights)} weights for {len(p.features.horizons)} horizons",
            )
    for group, cfg in groups[1:]:
        if cfg.select_horizon not in p.features.horizons:
            fail(f"{group}.select_horizon", f"{cfg.select_horizon} is not in features.horizons")
    _check_pretrain(p, fail)
    if p.train.regime_window < 2:
        fail("train.regime_window", f"a volatility and a correlation need at least 2 returns, got {p.train.regime_window}")
    _check_zoo(p, fail)
    _check_relations(p, fail)
    _check_lgbm_graph(p, fail)
    _check_linear(p.linear, fail)
    _check_core_refinements(p, fail)
    if not 1 <= p.feasible.halflife <= 10_000:
        fail("feasible.halflife", f"must be in [1, 10000] sessions, got {p.feasible.halflife}")
    if not 0 <= p.feasible.vol_prior_days <= 10_000:
        fail("feasible.vol_prior_days", f"must be in [0, 10000] pseudo-days, got {p.feasible.vol_prior_days}")
    _check_dates(p, fail)
    if not 0 <= p.data.min_code_match <= 1:
        fail("data.min_code_match", f"must be in [0, 1], got {p.data.min_code_match}")
    if p.data.max_price <= 0:
        fail("data.max_price", f"must be > 0, got {p.data.max_price}")
    if p.normalize.min_stocks < 2:
        fail("normalize.min_stocks", f"a cross-section needs at least 2 stocks, got {p.normalize.min_stocks}")


@dataclass(frozen=True)
class Bound:
    """The range of a numeric param: ``low <= value <= high`` (``>`` / ``<`` where open), and what it means."""

    name: str
    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    meaning: str = ""

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below and not math.isnan(value)

    def describe(self) -> str:
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


# The settings of the shared training loop (alphagraph.train.loop.LoopConfig) in every group that trains with
# it: the core model (train), gat and the zoo's torch modules (temporal, tgcn: LoopParams).
LOOP_BOUNDS = (
    Bound("epochs", 1, meaning="training epochs per fold"),
    Bound("batch_days", 1, meaning="trading days per optimizer step"),
    Bound("days_per_epoch", 0, meaning="training days sampled per epoch, 0 = all"),
    Bound("patience", 0, meaning="epochs without improvement before stopping early, 0 = never stop early"),
    Bound("refit_epochs", 1, meaning="epochs of a warm-started refit fold"),
    Bound("num_threads", 0, meaning="torch threads, 0 = torch's default"),
    Bound("lr", 0, low_open=True, meaning="the peak learning rate"),
    Bound("weight_decay", 0, meaning="AdamW's decoupled weight decay"),
    Bound("warmup_epochs", 0, meaning="epochs of linear warmup, 0 = none"),
    Bound("min_lr_ratio", 0, 1, meaning="the cosine's floor as a share of lr"),
    Bound("grad_clip", 0, meaning="max gradient norm, 0 = no clipping"),
    Bound("select_smoothing", 0, 1, high_open=True, meaning="EMA weight of the past val metric, 0 = raw"),
    Bound("restart_epochs", 0, meaning="0 = one cosine, no restarts"),
    Bound("restart_mult", 1, meaning="each cycle at least as long as the previous"),
)
SEQ_LEN = Bound("seq_len", 1, meaning="days of history per stock")
TRAINING_BOUNDS: dict[str, tuple[Bound, ...]] = {
    "train": (*LOOP_BOUNDS, SEQ_LEN),
    "gat": LOOP_BOUNDS,
    "temporal": (*LOOP_BOUNDS, SEQ_LEN),
    "tgcn": (*LOOP_BOUNDS, SEQ_LEN),
    "pretrain": (
        Bound("epochs", 1, meaning="pretraining epochs per fold"),
        Bound("batch_days", 1, meaning="anchor days per optimizer step"),
        Bound("days_per_epoch", 0, meaning="anchor days sampled per epoch, 0 = all"),
        Bound("num_threads", 0, meaning="torch threads, 0 = torch's default"),
        Bound("lr", 0, low_open=True, meaning="the learning rate"),
        Bound("offset_days", 1, meaning="trading days between a contrastive pair's views"),
    ),
    "lgbm": (
        Bound("n_estimators", 1, meaning="boosting rounds"),
        Bound("early_stopping_rounds", 1, meaning="rounds without a better validation l2 before stopping"),
        Bound("num_leaves", 2, meaning="leaves per tree"),
        Bound("min_data_in_leaf", 1, meaning="training rows per leaf"),
        Bound("bagging_freq", 0, meaning="rounds between row resamplings, 0 = no bagging"),
        Bound("num_threads", 0, meaning="LightGBM threads, 0 = OpenMP's default"),
        Bound("learning_rate", 0, low_open=True, meaning="shrinkage per round"),
        Bound("feature_fraction", 0, 1, low_open=True, meaning="share of features per tree"),
        Bound("bagging_fraction", 0, 1, low_open=True, meaning="share of rows per bagging round"),
        Bound("lambda_l2", 0, meaning="L2 penalty"),
    ),
    "export": (Bound("batch_days", 1, meaning="trading days per inference batch"),),
}


def _check_bounds(group: str, cfg: Any, bounds: Sequence[Bound], fail: Any) -> None:
    """Each bounded param of a group in its range; the message names the range, its meaning and the default."""
    default = type(cfg)()
    for b in bounds:
        value = getattr(cfg, b.name)
        if not b.holds(value):
            fail(
                f"{group}.{b.name}",
                f"must be {b.describe()} ({b.meaning}), got {value}; e.g. {getattr(default, b.name)!r}, the default",
            )


def _check_training(p: Params, fail: Any) -> None:
    """Epochs, batch sizes, patience, rounds, learning rates of every model group, before any stage trains."""
    for group, bounds in TRAINING_BOUNDS.items():
        _check_bounds(group, getattr(p, group), bounds, fail)


def check_device(device: str, source: str = "params") -> None:
    """``device: cuda`` on a machine where torch sees no GPU: a :class:`ConfigError` naming ``device``.

    Not part of :func:`params_from_dict`, which checks the file: this checks the machine, and a
    machine without a GPU may still read the params of a GPU run (a report, a comparison). The
    check_params stage calls it, so a run fails before its first stage; the training loop too
    (:func:`alphagraph.train.loop.resolve_device`), for a stage that DVC reruns on another machine.
    """
    if device != "cuda":
        return
    import torch  # only here: reading params never needs torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"{source}: device: cuda, but torch.cuda.is_available() is False on this machine (no GPU, no driver,"
            " or a CPU-only torch build): set device: auto (the GPU when there is one, else the CPU) or cpu"
        )


def _check_backtest(bt: BacktestConfig, fail: Any) -> None:
    if bt.topk < 1 or bt.n_drop < 0:
        fail("eval.backtest.topk", f"topk must be >= 1 and n_drop >= 0, got {bt.topk} and {bt.n_drop}")
    for key in ("open_cost", "close_cost", "min_cost"):
        if getattr(bt, key) < 0:
            fail(f"eval.backtest.{key}", f"must be >= 0, got {getattr(bt, key)}")
    if bt.account <= 0:
        fail("eval.backtest.account", f"must be > 0, got {bt.account}")
    if not 0 < bt.risk_degree <= 1:
        fail("eval.backtest.risk_degree", f"must be in (0, 1], got {bt.risk_degree}")
    if bt.limit_threshold is not None and bt.limit_threshold <= 0:
        fail("eval.backtest.limit_threshold", f"must be > 0 or null, got {bt.limit_threshold}")
    if not 1 <= bt.annualization <= 366:
        fail("eval.backtest.annualization", f"must be the periods of a year, 1 to 366 (e.g. 252), got {bt.annualization}")


def _check_pretrain(p: Params, fail: Any) -> None:
    pre = p.pretrain  # its epochs, batch_days, days_per_epoch, lr, offset_days: _check_training
    if pre.temperature <= 0:
        fail("pretrain.temperature", f"must be > 0, got {pre.temperature}")
    if not 0 < pre.mask_share < 1:
        fail("pretrain.mask_share", f"must be in (0, 1), got {pre.mask_share}")
    if p.train.init_from == "pretrain" and pre.objective == "none":
        fail("train.init_from", "pretrain needs a pretrained encoder: set pretrain.objective to masked, contrastive or both")


def _check_zoo(p: Params, fail: Any) -> None:
    for name, module in p.zoo.models.items():
        if module not in ZOO_MODULES:
            fail(f"zoo.models.{name}", f"module must be one of {', '.join(ZOO_MODULES)}, got {module!r}")
        if name not in KINDS[module]:
            fail(f"zoo.models.{name}", f"the {module} module trains {', '.join(KINDS[module])}, not {name!r}")
    known = set(p.zoo.models)
    if unknown := [m for m in p.ensemble.members if m not in known]:
        fail(
            "ensemble.members",
            f"{unknown} are not in zoo.models ({', '.join(p.zoo.models)}); every model is an entry there"
            " (a params file from before: add lgbm: lgbm, lgbm_graph: lgbm, gat: gat, core: core)",
        )
    if len(p.ensemble.members) < 2:
        fail("ensemble.members", f"an ensemble needs at least 2 models, got {p.ensemble.members}")
    if p.tgcn.relations is not None and (bad := sorted(set(p.tgcn.relations) - set(p.graph.relations))):
        fail("tgcn.relations", f"{bad} are not in graph.relations")
    if p.temporal.hidden % p.temporal.heads:
        fail("temporal.hidden", f"{p.temporal.hidden} must be divisible by temporal.heads ({p.temporal.heads})")
    if p.tgcn.conv == "gat" and p.tgcn.hidden % p.tgcn.heads:
        fail("tgcn.hidden", f"{p.tgcn.hidden} must be divisible by tgcn.heads ({p.tgcn.heads})")


def relation_names() -> tuple[str, ...]:
    """Every relation type the graph stage can build."""
    return ("rolling_correlation", "sector_industry", *RELATION_NAMES)


def _check_relations(p: Params, fail: Any) -> None:
    """A misspelt relation would silently vanish downstream: every name must be known."""
    known = relation_names()
    for name in p.graph.relations:
        if name not in known:
            fail("graph.relations", f"unknown relation {name!r}; known: {', '.join(known)}")
    for group, chosen in (("gat", p.gat.relations), ("train", p.train.relations)):
        for name in chosen or ():
            if name not in p.graph.relations:
                where = "known" if name in known else "unknown"
                fail(f"{group}.relations", f"{where} relation {name!r} is not in graph.relations {p.graph.relations}")


def _check_lgbm_graph(p: Params, fail: Any) -> None:
    """Relations must be built by the graph stage; feature names must be panel features (``f_*``).

    Whether a feature exists depends on features.families / windows: the lgbm_graph
    stage checks the names against the normalized panel.
    """
    cfg = p.lgbm_graph
    if cfg.relations is not None:
        if not cfg.relations:
            fail("lgbm_graph.relations", "is empty: name at least one relation (null = all of graph.relations)")
        if len(set(cfg.relations)) != len(cfg.relations):
            fail("lgbm_graph.relations", f"has duplicates: {cfg.relations}")
        known = relation_names()
        for name in cfg.relations:
            if name not in p.graph.relations:
                where = "known" if name in known else "unknown"
                fail("lgbm_graph.relations", f"{where} relation {name!r} is not in graph.relations {p.graph.relations}")
    feats = cfg.neighbour_features
    if len(set(feats)) != len(feats):
        fail("lgbm_graph.neighbour_features", f"has duplicates: {feats}")
    for name in feats:
        if not name.startswith("f_") or name.startswith("f_rel_"):
            fail(
                "lgbm_graph.neighbour_features",
                f"{name!r} is not a feature column of the normalized panel (f_*, e.g. f_rvol_20; not f_rel_*)",
            )


def _check_linear(cfg: LinearConfig, fail: Any) -> None:
    if not cfg.alphas:
        fail("linear.alphas", "is empty: name at least one ridge penalty (e.g. [0.01, 0.1, 1.0])")
    if bad := [a for a in cfg.alphas if not (math.isfinite(a) and a > 0)]:
        fail("linear.alphas", f"every penalty must be a finite number > 0, got {bad}")
    if len(set(cfg.alphas)) != len(cfg.alphas):
        fail("linear.alphas", f"has duplicates: {cfg.alphas}")
    if cfg.num_threads < 0:
        fail("linear.num_threads", f"must be >= 0 (0 = the BLAS library's default), got {cfg.num_threads}")


def _check_core_refinements(p: Params, fail: Any) -> None:
    """The core model's architecture switches (window_norm, stochastic_depth, edge_features)."""
    t = p.train
    if t.fan_top_k < 1:
        fail("train.fan_top_k", f"must be >= 1, got {t.fan_top_k}")
    if not 0 <= t.stochastic_depth < 1:
        fail("train.stochastic_depth", f"must be in [0, 1), got {t.stochastic_depth}")
    if len(set(t.edge_features)) != len(t.edge_features):
        fail("train.edge_features", f"has duplicates: {t.edge_features}")
    if not t.vol_similarity_scale > 0:
        fail("train.vol_similarity_scale", f"must be > 0, got {t.vol_similarity_scale}")
    if t.wide != "none" and t.init_from == "pretrain":
        fail("train.wide", f"{t.wide!r} does not combine with train.init_from: pretrain (the encoder is pretrained without it); set one to none")


def _check_dates(p: Params, fail: Any) -> None:
    import datetime as dt

    parsed = {}
    for key, value in (("data.start", p.data.start), ("data.end", p.data.end),
                       ("split.val_start", p.split.val_start), ("split.test_start", p.split.test_start)):
        if value is None:
            continue
        try:
            parsed[key] = dt.date.fromisoformat(value)
        except ValueError:
            fail(key, f"expected an ISO date YYYY-MM-DD, got {value!r}")
    if "data.start" in parsed and "data.end" in parsed and parsed["data.start"] > parsed["data.end"]:
        fail("data.end", f"{p.data.end} is before data.start {p.data.start}: set data.end on or after data.start (null = to the last row)")
    if p.split.scheme != "walk_forward" and p.split.val_start is not None:
        fail("split.scheme", f"{p.split.scheme} cannot be combined with a fixed split (split.val_start / test_start)")
    if p.split.scheme == "rolling" and p.split.max_train_days is None:
        fail("split.max_train_days", "split.scheme rolling needs a training window length (max_train_days), got null")
    if p.split.scheme == "purged_kfold" and p.split.n_splits < 2:
        fail("split.n_splits", f"split.scheme purged_kfold needs at least 2 folds, got {p.split.n_splits}")
    if (p.split.val_start is None) != (p.split.test_start is None):
        fail("split.val_start", "set both split.val_start and split.test_start (a fixed split), or neither")
    if "split.val_start" in parsed and parsed["split.val_start"] >= parsed["split.test_start"]:
        fail("split.test_start", f"{p.split.test_start} must be after split.val_start {p.split.val_start}")
