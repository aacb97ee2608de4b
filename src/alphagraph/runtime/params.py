"""The schema of ``params.yaml``: one frozen dataclass per section, its defaults the shipped values.

The loader (:mod:`alphagraph.runtime.config`) and the cross-field rules
(:mod:`alphagraph.runtime.checks`) import it; it imports neither, so the schema reads on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from alphagraph.runtime.errors import UserError


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
    # (purged, embargoed): model assessment, not a tradable backtest (alphagraph.evaluation.split)
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
    """LightGBM plus relational features (``alphagraph.graph.relational``), the ``lgbm_graph`` stage.

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
    # Training targets and loss weighting (alphagraph.features.residual, alphagraph.evaluation.regimes); evaluation always scores raw returns.
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
    # today's own features and the relational features of lgbm_graph (alphagraph.graph.relational, that
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
    """Self-supervised pretraining of the core model's encoder (alphagraph.models.core.pretrain, stage pretrain)."""

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
    """The model stages of dvc.yaml's ``model`` foreach: model name -> the module of alphagraph.models that trains it."""

    # Add a line to run a model: dvc exp run -S '+zoo.models.tgcn=tgcn'
    models: dict[str, str] = field(default_factory=lambda: {
        "lgbm": "lgbm", "lgbm_graph": "lgbm", "gat": "gat", "core": "core",
        "transformer": "temporal", "linear": "linear", "linear_graph": "linear",
    })


@dataclass(frozen=True)
class FeasibleConfig:
    """The feasible ceiling (stage feasible, alphagraph.evaluation.feasible): the planted components from observables."""

    # Half-life in sessions of the exponential decay over past daily regressions (the rolling variant);
    # the planted strengths m_k(t) have a half-life of about 35 sessions.
    halflife: float = 35.0
    # Pseudo-observations pulling a stock's long-run variance (the GARCH filter's) to the pooled one.
    vol_prior_days: float = 20.0


@dataclass(frozen=True)
class EnsembleConfig:
    """The ensemble stage: rank averages of member models' predictions (alphagraph.models.ensemble)."""

    members: list[str] = field(default_factory=lambda: ["lgbm", "lgbm_graph", "gat", "core"])


@dataclass(frozen=True)
class ExportConfig:
    fold: int = -1  # the fold whose best checkpoint is exported (-1 = the last fold)
    batch_days: int = 32


@dataclass(frozen=True)
class BacktestConfig:
    """Qlib's TopkDropoutStrategy and exchange, with Qlib's defaults (alphagraph.evaluation.backtest)."""

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
    """Data-parallel training of the torch models (torch.distributed, launched by torchrun)."""

    # Processes on this machine for a torch model's stage (gat, core, the temporal and tgcn models):
    # > 1 makes it relaunch itself under torchrun (--standalone). Several machines: run torchrun
    # yourself on each (docs/scale.md).
    nproc_per_node: int = 1
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # auto: nccl on CUDA, gloo on CPU
    # Folds of a torch model's stage trained at once, each in a worker process with its params
    # group's num_threads (the results do not depend on it); 1: one after another in the stage's
    # process, as also under torchrun and with refit_warm_start (a fold starts from the one before).
    fold_workers: int = 1


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


# Every module of alphagraph.models that trains models and the names it trains (a module trains
# several kinds when they share it); here, not in alphagraph.models, so that checking params never
# imports a model (or torch). A module's params group has its name, except the core model's: train.
KINDS: dict[str, tuple[str, ...]] = {
    "lgbm": ("lgbm", "lgbm_graph"),
    "gat": ("gat",),
    "core": ("core",),
    "temporal": ("lstm", "gru", "alstm", "transformer"),
    "tgcn": ("tgcn",),
    "linear": ("linear", "linear_graph"),
}
ZOO_MODULES = tuple(KINDS)
# The relation types a relations file may hold (besides the two the graph stage derives from prices and sectors).
RELATION_NAMES = ("competitor", "supply_chain", "fund_similarity", "wikidata")
