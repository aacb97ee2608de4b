"""Typed configuration: ``params.yaml`` loaded once into frozen dataclasses.

Unknown keys and ill-typed values are rejected with a message that names the
full key (``train.lr``). Numbers are coerced the way a user means them: PyYAML's
safe_load reads a hand-written ``5e-4`` as the *string* "5e-4", while
``dvc exp run -S train.lr=5e-4`` writes ``0.0005``; both must mean 0.0005.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from alphagraph.errors import UserError


class ConfigError(UserError):
    """A params file with an unknown key, a missing section or a wrong type."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SignalConfig:
    """Strengths a_k of the planted expected-return components.

    The expected return of close(t) -> next close is
    alpha(i, t) = idio_vol(i, t) * sum_k a_k * z_k(i, t), each z_k a per-day
    cross-sectional z-score known at the close of t (see docs/synthetic_market.md).
    """

    reversal: float = 0.055
    momentum: float = 0.04
    volume_price: float = 0.04
    sector_spillover: float = 0.045
    supply_chain: float = 0.076


@dataclass(frozen=True)
class ObservedRelationsConfig:
    """How the relations file a model reads differs from the true links (all 0 = the truth)."""

    weight_noise: float = 0.3  # observed weight = true weight x lognormal(0, weight_noise)
    missing_share: float = 0.3  # share of true links absent from the file
    spurious_share: float = 0.3  # links that do not exist, added per type as a share of its true links


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and stylized facts of the built-in synthetic market."""

    # The market's draw, apart from the top-level ``seed`` (the models' seed): a seed grid
    # then retrains the models on one market instead of redrawing the market too.
    market_seed: int = 0
    n_stocks: int = 200
    n_days: int = 1500
    n_sectors: int = 10
    industries_per_sector: int = 3
    start_date: str = "2015-01-02"
    holidays_per_year: int = 9
    late_listing_share: float = 0.15
    delisting_share: float = 0.08
    suspension_rate: float = 0.0005
    suspension_max_days: int = 10
    competitors_per_stock: int = 3
    suppliers_per_stock: int = 3
    n_funds: int = 40
    fund_top_k: int = 10
    supply_life_days: int = 500  # mean life of a supply link, in trading days (0 = links never change)
    fund_rebalance_days: int = 250  # funds redraw their holdings this often (0 = never)
    # Each component's strength is a_k x m_k(t), m_k an AR(1) around 1 with this persistence and
    # standard deviation (scaled up for the weaker components, which can flip sign); 0 = constant.
    strength_persistence: float = 0.98
    strength_variation: float = 0.7
    # The supply-chain lead-lag reads f(u) = u (1 + c |u|) of each supplier's vol-scaled return u:
    # large supplier moves carry more than their share (0 = linear).
    supply_nonlinearity: float = 0.5
    observed: ObservedRelationsConfig = field(default_factory=ObservedRelationsConfig)
    signal: SignalConfig = field(default_factory=SignalConfig)


@dataclass(frozen=True)
class ColumnsConfig:
    """Column names of the user's price file(s), mapped to the canonical schema."""

    date: str = "date"
    code: str = "code"
    open: str = "open"
    high: str = "high"
    low: str = "low"
    close: str = "close"
    volume: str = "volume"
    adj_close: str = "adj close"  # read only with data.adjust: adj_close


@dataclass(frozen=True)
class DataConfig:
    source: Literal["synthetic", "file"] = "synthetic"
    path: str = "inputs/prices.parquet"
    universe_path: str | None = None
    relations_path: str | None = None
    invalid_rows: Literal["error", "drop"] = "error"
    date_format: str | None = None
    split_ratio_threshold: float = 0.45
    # per-ticker files: a regex whose first group is the code, matched against the file stem
    # (``NASDAQ_(.+)_30Y`` for ``NASDAQ_AAPL_30Y.csv``); null = the whole stem
    code_pattern: str | None = None
    tickers_path: str | None = None  # one code per line: restricts the universe (null = every code)
    # the top-k backtest's benchmark: a file of an index (date + close, or date + return);
    # null = the equal-weight universe (every stock's close-to-close return, averaged per day)
    benchmark_path: str | None = None
    start: str | None = None  # ISO date: rows before it are not read (null = from the first row)
    end: str | None = None  # ISO date, inclusive (null = to the last row)
    # adj_close: scale open/high/low/close by adj_close / close and volume inversely
    # (dividends and splits adjusted); none: prices are used as they are
    adjust: Literal["none", "adj_close"] = "none"
    # vendor placeholder rows with open = 0 and a real close: fill_close sets open to the
    # close (clipped into [low, high]); drop removes the row; error stops
    zero_open: Literal["fill_close", "drop", "error"] = "fill_close"
    max_price: float = 1e9  # a price above it is a data error (Float32 features overflow long before 1e300)
    # a side file (universe, relations) must name at least this share of the price codes:
    # below it the codes almost surely do not match (e.g. "AAPL" vs "AAPL.O")
    min_code_match: float = 0.05
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


# ----------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeaturesConfig:
    horizons: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    windows: list[int] = field(default_factory=lambda: [5, 10, 20, 30, 60])
    families: list[str] = field(
        default_factory=lambda: [
            "kbar",
            "price",
            "rolling",
            "volume",
            "relative",
            "technical",
        ]
    )
    label_delay: int = 0
    signal_threshold: float = 1.0


@dataclass(frozen=True)
class NormalizeConfig:
    clip: float = 5.0
    label: Literal["zscore", "rankgauss"] = "rankgauss"
    min_stocks: int = 20


@dataclass(frozen=True)
class SplitConfig:
    # walk_forward: expanding (or max_train_days rolling) training before val and test;
    # rolling: walk_forward with a rolling window of max_train_days (required);
    # purged_kfold: the calendar cut into n_splits test blocks, training on both sides
    # (purged, embargoed): model assessment, not a tradable backtest (alphagraph.split)
    scheme: Literal["walk_forward", "rolling", "purged_kfold"] = "walk_forward"
    n_splits: int = 3
    min_train_days: int = 252
    max_train_days: int | None = None
    val_days: int = 250
    test_days: int = 250
    embargo_days: int = 20
    # a fixed protocol instead of walk-forward folds (both set): one fold, train = the days
    # before val_start, val = val_start .. the day before test_start, test = test_start .. the
    # last day; no gap, but rows whose label window crosses a boundary are purged
    val_start: str | None = None
    test_start: str | None = None
    # Retraining cadence (walk_forward / rolling): each test window is cut into blocks of this many
    # trading days, each block its own fold (train / val placed before it as usual); null = off.
    refit_every: int | None = None


@dataclass(frozen=True)
class GraphConfig:
    relations: list[str] = field(
        default_factory=lambda: [
            "rolling_correlation",
            "sector_industry",
            "competitor",
            "supply_chain",
            "fund_similarity",
        ]
    )
    corr_window: int = 60
    top_k: int = 10
    rebuild_every: int = 21
    include_negative: bool = True
    residualize_market: bool = True
    # also remove the sector's leave-one-out mean return (regression) before correlating
    residualize_sector: bool = False
    sector_weight: float = 0.5
    max_industry_degree: int = 20
    # share of the corr_window days a stock (and a pair) must have returns for
    corr_min_obs: float = 0.8
    # BLAS threads for the correlation products (0 = the library's default); 1 is
    # fastest on small shared CPUs, where spinning BLAS threads fight other work
    blas_threads: int = 1


# ------------------------------------------------------------------------- models


@dataclass(frozen=True)
class LgbmConfig:
    num_leaves: int = 15
    learning_rate: float = 0.05
    n_estimators: int = 300
    min_data_in_leaf: int = 1000
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 30
    num_threads: int = 2


@dataclass(frozen=True)
class LgbmGraphConfig:
    """LightGBM plus relational features (``alphagraph.relational``), the ``lgbm_graph`` stage.

    Its LightGBM hyperparameters are the ``lgbm`` section's: the two rows differ only by
    the ``f_rel_*`` features.
    """

    relations: list[str] | None = None  # relation types aggregated (null = all of graph.relations)
    # normalized panel columns whose edge-weighted neighbour mean is a feature (per relation)
    neighbour_features: list[str] = field(default_factory=lambda: ["f_mkt_excess_ret_20", "f_rvol_20"])


@dataclass(frozen=True)
class GatConfig:
    hidden: int = 32
    heads: int = 2
    layers: int = 2
    dropout: float = 0.1
    epochs: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_days: int = 16
    patience: int = 3
    horizon_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.25])
    # training loop (alphagraph.train.loop.LoopConfig)
    days_per_epoch: int = 192  # training days sampled per epoch, a fresh seeded draw each epoch (0 = all)
    warmup_epochs: float = 1.0  # linear warmup, then cosine to min_lr_ratio * lr (stepped per optimizer step)
    min_lr_ratio: float = 0.05
    optimizer: Literal["adamw", "adabelief"] = "adamw"  # adabelief: pytorch-optimizer's, decoupled weight decay
    restart_epochs: float = 0.0  # > 0: cosine with warm restarts, first cycle this many epochs (0 = one cosine)
    restart_mult: float = 1.0  # each next cycle restart_mult times longer (>= 1)
    grad_clip: float = 1.0
    dir_weight: float = 0.2  # weight of the class-weighted direction BCE next to the regression MSE
    select_metric: Literal["rank_ic", "ic", "loss"] = "rank_ic"  # early stopping / best epoch on val
    select_horizon: int = 1
    select_smoothing: float = 0.0  # EMA of the val metric across epochs (0 = raw)
    num_threads: int = 2
    use_edges: bool = True  # false: the no-graph ablation (self-loops only)
    relations: list[str] | None = None  # relations merged into the day's graph (null = all of graph.relations)
    # With split.refit_every: a fold that is not the first block of its test window starts from
    # the previous fold's best weights and trains refit_epochs epochs (the first block: from scratch).
    refit_warm_start: bool = False
    refit_epochs: int = 2


@dataclass(frozen=True)
class PearlConfig:
    mode: Literal["random", "basis", "none"] = "random"
    samples: int = 16
    k: int = 4
    layers: int = 2
    dim: int = 16


@dataclass(frozen=True)
class TrainConfig:
    """The core relation-aware graph transformer (alphagraph.models.core)."""

    seq_len: int = 5  # days of history per stock for the temporal encoder
    temporal: Literal["transformer", "lstm"] = "transformer"
    temporal_layers: int = 1
    hidden: int = 32
    heads: int = 2
    layers: int = 1  # relation-aware message-passing layers (the planted lead-lag is one hop)
    dropout: float = 0.1
    epochs: int = 10
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.05
    optimizer: Literal["adamw", "adabelief"] = "adamw"  # adabelief: pytorch-optimizer's, decoupled weight decay
    restart_epochs: float = 0.0  # > 0: cosine with warm restarts, first cycle this many epochs (0 = one cosine)
    restart_mult: float = 1.0  # each next cycle restart_mult times longer (>= 1)
    grad_clip: float = 1.0
    batch_days: int = 8
    days_per_epoch: int = 256  # training days sampled per epoch, a fresh seeded draw each epoch (0 = all)
    patience: int = 3
    rank_weight: float = 0.5  # weight of (1 - soft Spearman) per date
    cls_weight: float = 0.2  # weight of the signal and direction cross-entropies
    # Training targets and loss weighting (alphagraph.residual, alphagraph.regimes); evaluation always scores raw returns.
    target: Literal["raw", "sector_neutral", "beta_neutral"] = "raw"
    regime_weighting: bool = False  # equal total loss weight per (market vol x correlation) regime of the training dates
    regime_window: int = 60  # market days of past returns behind a date's regime statistics
    select_metric: Literal["rank_ic", "ic", "loss"] = "rank_ic"
    select_horizon: int = 1
    select_smoothing: float = 0.0
    horizon_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25, 0.25])
    relation_weighting: bool = True  # false: plain mean of the per-relation outputs
    relations: list[str] | None = None  # relation types used (null = all of graph.relations)
    use_edges: bool = True  # false: the no-graph ablation (self-loops only)
    # Panel features whose edge-weighted sum and mean over each relation's neighbours enter the
    # node embedding directly ([] = off); they must be feature columns of the panel.
    neighbour_inputs: list[str] = field(default_factory=list)
    # The neighbour aggregates z-scored per date (over the day's nodes) before they enter the model:
    # their raw scale moves with a date's dispersion and a stock's degree, which the plain sums carry.
    neighbour_standardize: bool = False
    # A direct linear ("wide") path to every horizon's regression output, beside the deep path, over
    # today's own features and the relational features of lgbm_graph (alphagraph.relational, that
    # group's spec): none; learned (trained with the rest, from 0); ridge (the linear_graph ridge of
    # the fold, alpha chosen on validation, frozen: the deep path learns what it leaves, from 0).
    wide: Literal["none", "learned", "ridge"] = "none"
    # Architecture refinements (issue 20; the defaults are the model as before):
    # window_norm: gated = per-feature learned-gate instance norm, fan = frequency adaptive
    # normalization (top fan_top_k rFFT components out of the window), none = raw window.
    window_norm: Literal["gated", "fan", "none"] = "gated"
    fan_top_k: int = 3  # at most (valid days) // 2 per window: one frequency always stays
    stochastic_depth: float = 0.0  # p: graph layer l of L (and temporal block l) dropped per node w.p. l / L * p
    edge_features: list[Literal["vol_similarity"]] = field(default_factory=list)  # beyond (weight, sign)
    vol_similarity_scale: float = 1.0  # s of exp(-|vol_i - vol_j| / s), vol = normalized f_rvol_20
    sampling: Literal["full", "neighbor"] = "full"
    fanouts: list[int] = field(default_factory=lambda: [10, 10])  # per hop, -1 = all (sampling: neighbor)
    num_threads: int = 2
    # Start each fold from the pretrain stage's encoder (models/pretrain/fold{k}.pt; pretrain.objective
    # must not be none) instead of a random initialization; the heads start random either way.
    init_from: Literal["none", "pretrain"] = "none"
    # With split.refit_every: a fold that is not the first block of its test window starts from
    # the previous fold's best weights and trains refit_epochs epochs (the first block: from scratch).
    refit_warm_start: bool = False
    refit_epochs: int = 2
    pearl: PearlConfig = field(default_factory=PearlConfig)


@dataclass(frozen=True)
class PretrainConfig:
    """Self-supervised pretraining of the core model's encoder (alphagraph.pretrain, stage pretrain)."""

    # none | masked (predict the labels of masked nodes from their neighbours) | contrastive
    # (InfoNCE: a stock at t and t + offset_days against the day's other stocks) | both (the sum)
    objective: Literal["none", "masked", "contrastive", "both"] = "none"
    epochs: int = 5
    lr: float = 1e-3
    days_per_epoch: int = 128  # anchor days sampled per epoch, a fresh seeded draw each epoch (0 = all)
    batch_days: int = 8
    mask_share: float = 0.15  # share of a day's nodes whose own embedding is replaced by the mask token
    temperature: float = 0.1  # InfoNCE temperature
    offset_days: int = 5  # trading days between the two views of a stock (contrastive)
    num_threads: int = 2


@dataclass(frozen=True)
class LoopParams:
    """The shared training loop's settings (alphagraph.train.loop.LoopConfig) of a zoo model's group."""

    epochs: int = 10
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.05
    optimizer: Literal["adamw", "adabelief"] = "adamw"  # adabelief: pytorch-optimizer's, decoupled weight decay
    restart_epochs: float = 0.0  # > 0: cosine with warm restarts, first cycle this many epochs (0 = one cosine)
    restart_mult: float = 1.0  # each next cycle restart_mult times longer (>= 1)
    grad_clip: float = 1.0
    batch_days: int = 8
    days_per_epoch: int = 256  # training days sampled per epoch, a fresh seeded draw each epoch (0 = all)
    patience: int = 3
    select_metric: Literal["rank_ic", "ic", "loss"] = "rank_ic"  # early stopping / best epoch on val
    select_horizon: int = 1
    select_smoothing: float = 0.0
    num_threads: int = 2
    # With split.refit_every: a fold that is not the first block of its test window starts from
    # the previous fold's best weights and trains refit_epochs epochs (the first block: from scratch).
    refit_warm_start: bool = False
    refit_epochs: int = 2


@dataclass(frozen=True)
class TemporalConfig(LoopParams):
    """The temporal baselines without a graph (alphagraph.models.temporal): lstm, gru, alstm, transformer.

    One group for the four kinds; a zoo entry's name picks the kind.
    """

    seq_len: int = 20  # days of history per stock (the panel dates up to and including the node's date)
    hidden: int = 32
    layers: int = 1  # recurrent layers / transformer blocks
    heads: int = 2  # transformer only
    dropout: float = 0.1
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"  # transformer only
    causal: bool = False  # transformer only: each day attends to itself and earlier days
    window_norm: bool = False  # the core model's gated window normalization first (train.window_norm: gated)
    rank_weight: float = 0.5  # weight of (1 - soft Spearman) per date
    cls_weight: float = 0.2  # weight of the signal and direction cross-entropies
    horizon_weights: list[float] | None = None  # null: train.horizon_weights


@dataclass(frozen=True)
class TGCNConfig(LoopParams):
    """Hierarchical multi-task T-GCN (alphagraph.models.tgcn): graph convolutions inside GRU gates over the window."""

    seq_len: int = 10
    hidden: int = 32
    conv: Literal["gcn", "gat"] = "gcn"  # the graph layer inside the gates
    heads: int = 2  # conv: gat
    dropout: float = 0.1
    lambda_direction: float = 0.5  # weight of the direction loss (rows with signal = 1 only)
    signal_weight: float = 0.2  # weight of the signal (|move| > threshold) loss
    rank_weight: float = 0.5
    horizon_weights: list[float] | None = None  # null: train.horizon_weights
    relations: list[str] | None = None  # relations merged into the day's graph (null = all of graph.relations)


@dataclass(frozen=True)
class LinearConfig:
    """Ridge regression references (alphagraph.models.linear): ``linear`` on the normalized features,
    ``linear_graph`` plus the relational ``f_rel_*`` features of the ``lgbm_graph`` group."""

    # Penalties tried per fold and horizon, chosen on validation RankIC. Per training row: the fit
    # minimizes mean((y - Xw - b)^2) + alpha |w|^2 on z-scored features, so the grid means the same
    # shrinkage for any panel size (alpha 1: as large as a feature's own variance).
    alphas: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0])
    # BLAS threads (0 = the library's default); fixed, so reruns are bit-identical. 1: on small shared
    # CPUs two spinning BLAS threads made the Gram products several times slower, not faster.
    num_threads: int = 1


@dataclass(frozen=True)
class ZooConfig:
    """The model stages of dvc.yaml's ``model`` foreach: model name -> its module and params group."""

    # name -> module of alphagraph.models (also the params group). Add a line to run a model:
    # dvc exp run -S '+zoo.models.tgcn=tgcn'
    models: dict[str, str] = field(default_factory=lambda: {"transformer": "temporal"})


@dataclass(frozen=True)
class FeasibleConfig:
    """The feasible ceiling (stage feasible, alphagraph.feasible): the planted components from observables."""

    # Half-life in sessions of the exponential decay over past daily regressions (the rolling variant);
    # the planted strengths m_k(t) have a half-life of about 35 sessions.
    halflife: float = 35.0
    # Pseudo-observations pulling a stock's long-run variance (the GARCH filter's) to the pooled one.
    vol_prior_days: float = 20.0


@dataclass(frozen=True)
class EnsembleConfig:
    """The ensemble stage: rank averages of member models' predictions (alphagraph.ensemble)."""

    members: list[str] = field(default_factory=lambda: ["lgbm", "lgbm_graph", "gat", "core"])


@dataclass(frozen=True)
class ExportConfig:
    fold: int = -1  # the fold whose best checkpoint is exported (-1 = the last fold)
    batch_days: int = 32


@dataclass(frozen=True)
class BacktestConfig:
    """Qlib's TopkDropoutStrategy and exchange, with Qlib's defaults (alphagraph.backtest)."""

    topk: int = 50  # stocks held
    n_drop: int = 5  # at most this many of the held stocks are swapped each day
    open_cost: float = 0.0005  # buy cost, a fraction of the traded value
    close_cost: float = 0.0015  # sell cost
    min_cost: float = 5.0  # per trade, in the account's currency
    account: float = 100_000_000.0  # starting cash (min_cost is relative to it)
    risk_degree: float = 0.95  # share of the cash spent on each day's buys
    # |close / previous close - 1| at or above it: the stock cannot be traded that day (null: no limit)
    limit_threshold: float | None = None
    # Daily figures x this (IR: x its root): 252 sessions a year on US exchanges; Qlib 0.9.7 uses 238
    annualization: float = 252.0
    # A held stock that leaves the data: sell (at its last close) or hold (Qlib's dead position)
    delisting: Literal["sell", "hold"] = "sell"
    # A held stock is dropped only for a candidate that takes its slot; Qlib (false) also sells
    # when no candidate is left (a universe of topk stocks or fewer) and buys it back the next day
    replace_only: bool = True
    # qlib: Qlib 0.9.7's conventions (QLIB_PRESET) over the values above; a value set apart from
    # both the default and the preset's is an error
    preset: Literal["none", "qlib"] = "none"


# The conventions of Qlib 0.9.7's backtest and risk_analysis (eval.backtest.preset: qlib): it trades
# the score of day t - 1 at day t's close, annualizes daily figures with 238, keeps delisted stocks.
QLIB_PRESET: dict[str, Any] = {
    "eval.execution_lag": 1, "eval.backtest.annualization": 238.0, "eval.backtest.delisting": "hold",
    "eval.backtest.replace_only": False,
}


@dataclass(frozen=True)
class EvalConfig:
    quantile: float = 0.1
    cost_bps: float = 10.0
    psi_bins: int = 10
    psi_alert: float = 0.25  # val-vs-test PSI of a prediction above this: a warning and psi_alert_{h}d = 1
    # Market days from a prediction's date to the close its books trade at (long-short and top-k):
    # 1 = the next session, what a trader gets; 0 = the same close (idealized: the score needs that
    # close), also reported beside as *_same_close_* figures
    execution_lag: int = 1
    backtest: BacktestConfig = field(default_factory=BacktestConfig)


@dataclass(frozen=True)
class DistributedConfig:
    """Data-parallel training of the graph models (torch.distributed, launched by torchrun)."""

    # Processes on this machine for the gat and core stages: > 1 makes the stage relaunch itself
    # under torchrun (--standalone). Several machines: run torchrun yourself on each (README).
    nproc_per_node: int = 1
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on CUDA, gloo on CPU


@dataclass(frozen=True)
class Params:
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    lgbm: LgbmConfig = field(default_factory=LgbmConfig)
    lgbm_graph: LgbmGraphConfig = field(default_factory=LgbmGraphConfig)
    gat: GatConfig = field(default_factory=GatConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    tgcn: TGCNConfig = field(default_factory=TGCNConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    feasible: FeasibleConfig = field(default_factory=FeasibleConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


# ------------------------------------------------------------------------ loading


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` into :class:`Params`, validating every key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return params_from_dict(raw or {}, source=str(path))


def params_from_dict(raw: Any, source: str = "params") -> Params:
    """Build :class:`Params` from a plain dict (the parsed YAML)."""
    params = _build(Params, raw, prefix="", source=source)
    params = apply_preset(params, source)
    # The zoo groups' null horizon weights are the core model's (one list to change with features.horizons).
    for group in ("temporal", "tgcn"):
        cfg = getattr(params, group)
        if cfg.horizon_weights is None:
            params = dataclasses.replace(params, **{group: dataclasses.replace(cfg, horizon_weights=params.train.horizon_weights)})
    _check(params, source)
    return params


def apply_preset(params: Params, source: str = "params") -> Params:
    """``eval.backtest.preset: qlib``: :data:`QLIB_PRESET`'s values replace the defaults they name."""
    if params.eval.backtest.preset != "qlib":
        return params
    defaults = Params()
    tree = to_dict(params)
    for key, value in QLIB_PRESET.items():
        *groups, leaf = key.split(".")
        node, default = tree, defaults
        for g in groups:
            node, default = node[g], getattr(default, g)
        if node[leaf] not in (value, getattr(default, leaf)):
            raise ConfigError(
                f"{source}: {key} is {node[leaf]!r}, but eval.backtest.preset qlib sets {value!r}:"
                " set the preset to none to choose your own"
            )
        node[leaf] = value
    return _build(Params, tree, prefix="", source=source)


def to_dict(obj: Any) -> Any:
    """Plain dict of a config dataclass (for hashing and schema files)."""
    return dataclasses.asdict(obj)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]!s} (known keys: {', '.join(sorted(names))})"
        )
    kwargs = {
        key: _coerce(hints[key], value, f"{prefix}{key}", source) for key, value in raw.items()
    }
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key + ".", source)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, source)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{source}: {key}: expected one of {', '.join(map(str, choices))}, got {value!r}"
            )
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        key_tp, value_tp = get_args(tp)
        return {_coerce(key_tp, k, key, source): _coerce(value_tp, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module


def _check(p: Params, source: str) -> None:
    """Cross-field rules that a type alone cannot express."""

    def fail(key: str, msg: str) -> None:
        raise ConfigError(f"{source}: {key}: {msg}")

    syn = p.data.synthetic
    _check_training(p, fail)
    if p.distributed.nproc_per_node < 1:
        fail("distributed.nproc_per_node", f"must be >= 1, got {p.distributed.nproc_per_node}")
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


ZOO_MODULES = ("temporal", "tgcn", "linear")  # alphagraph.models modules that train zoo models (module = params group)
MODEL_STAGES = ("lgbm", "lgbm_graph", "gat", "core")


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
    from alphagraph.models.zoo import KINDS  # the names each zoo module trains; no torch import

    for name, module in p.zoo.models.items():
        if module not in ZOO_MODULES:
            fail(f"zoo.models.{name}", f"module must be one of {', '.join(ZOO_MODULES)}, got {module!r}")
        if name not in KINDS[module]:
            fail(f"zoo.models.{name}", f"the {module} module trains {', '.join(KINDS[module])}, not {name!r}")
    known = set(MODEL_STAGES) | set(p.zoo.models)
    if unknown := [m for m in p.ensemble.members if m not in known]:
        fail("ensemble.members", f"{unknown} are not model stages ({', '.join(sorted(known))})")
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
    from alphagraph.data.validate import RELATION_NAMES

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
