"""RL feature export: the frozen core model's view of every (date, code), what an agent may trust, and readers.

``data/export/rl_features.parquet`` has one row per normalized-panel row:

- ``fold`` (Int32): the fold whose best checkpoint (``export.fold``) produced the model columns;
- ``split``: train / val / test of that fold, from the row's DATE alone (``none``: the embargo
  gaps, days before a rolling training window, days after the test window);
- ``in_sample``: the row is dated before the fold's test window. The model was fitted on
  (train), early-stopped on (val) or saw the realized returns of (embargo) those dates, or,
  before a rolling window, was fitted on later data: its outputs there are in-sample and look
  several times better than they are. An agent may be fitted on ``in_sample == false`` rows only;
- model columns (one model, one embedding space for every row): ``emb_0 .. emb_{d-1}``
  (Float32, the input of the heads), ``pred_{h}d``, ``p_signal_{h}d`` / ``p_up_{h}d``
  (hierarchical heads) and ``p_signal`` / ``p_up`` at ``train.select_horizon``;
- walk-forward columns ``oos_fold``, ``oos_pred_{h}d``, ``oos_p_signal[_{h}d]``, ``oos_p_up[_{h}d]``:
  each date's prediction by the fold model that TESTED it (``data/predictions/core.parquet``),
  out-of-sample on every row where they are set (null before the first test window). No
  out-of-sample embeddings: every fold model has its own embedding space, and stitching them
  would change the meaning of ``emb_j`` at each fold boundary. An earlier ``export.fold`` gives
  embeddings from one model that are out-of-sample over a longer span (its test window onwards);
- ``open, high, low, close, volume``: the day's raw market data; ``tradable``: it traded that day;
- ``ret_1d``: the REALIZED return close(t) -> close(next market day), null if the stock did not
  trade then: the reward, the only column that depends on the future.

Every other column uses data dated <= the row's date: the model is frozen, its inputs are the
panel's history windows and the latest graph snapshot, and ``split`` / ``in_sample`` are date rules.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from alphagraph.runtime.config import Params
from alphagraph.runtime.errors import UserError
from alphagraph.evaluation.evaluate import daily_ic, next_day_returns
from alphagraph.models.core import CoreModel, wide_index, wide_matrix
from alphagraph.evaluation.split import Fold, in_train
from alphagraph.train.core_data import CoreDayData
from alphagraph.train.loop import CheckpointError, load_checkpoint

MARKET = ("open", "high", "low", "close", "volume")
SPLITS = ("train", "val", "test", "none")
SOURCES = ("model", "oos")
OOS = "oos_"


def choose_fold(folds: list[Fold], wanted: int) -> Fold:
    """``export.fold``: a fold number, or -1 for the last fold."""
    if wanted == -1:
        return folds[-1]
    for f in folds:
        if f.fold == wanted:
            return f
    raise ValueError(f"export.fold: {wanted} is not a fold (folds: {[f.fold for f in folds]}; -1 = last)")


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_core(fold_dir: Path, device: torch.device | str = "cpu") -> tuple[CoreModel, dict[str, Any]]:
    """The frozen core model of a fold directory (``model.json`` + ``best.pt``), in eval mode.

    ``best.pt`` is read with ``weights_only=True``: a checkpoint holding anything but
    tensors and plain containers is refused (:class:`~alphagraph.train.loop.CheckpointError`).
    """
    fold_dir = Path(fold_dir)
    meta_path, ckpt = fold_dir / "model.json", fold_dir / "best.pt"
    for p in (meta_path, ckpt):
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing; run the core stage first (dvc repro model@core)")
    meta = json.loads(meta_path.read_text())
    content = load_checkpoint(ckpt, "cpu")
    if not isinstance(content, dict) or "model" not in content:
        raise CheckpointError(f"{ckpt}: not a core checkpoint (expected a dict with the model's weights under 'model')")
    model = CoreModel(**meta["kwargs"])
    model.load_state_dict(content["model"])
    model.to(device).eval().requires_grad_(False)
    return model, meta


def date_split(fold: Fold) -> pl.Expr:
    """train / val / test / none from the date alone (no purge: that depends on the stock's future rows)."""
    d = pl.col("date")
    return (
        pl.when(in_train(fold)).then(pl.lit("train"))
        .when(d.is_between(*fold.val)).then(pl.lit("val"))
        .when(d.is_between(*fold.test)).then(pl.lit("test"))
        .otherwise(pl.lit("none"))
    )


def in_sample_expr(fold: Fold) -> pl.Expr:
    """True before the fold's test window: the model trained, early-stopped or saw returns on those dates.

    A purged k-fold model also trained after its test window: every date outside it is in-sample.
    """
    if fold.trains_after_test:
        return ~pl.col("date").is_between(*fold.test)
    return pl.col("date") < pl.lit(fold.test[0])


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


@torch.no_grad()
def model_outputs(
    model: torch.nn.Module, data: Any, dates: np.ndarray, batch_days: int, progress: bool | None = None
) -> dict[str, np.ndarray]:
    """Panel ``row`` and the model's ``emb``, ``reg``, ``sig``, ``up`` (probabilities) for every node of ``dates``.

    Runs on the device of the model's parameters. ``Data.to`` moves a batch IN PLACE and
    returns it, so everything read back on the CPU (the rows) is taken before the move.
    """
    device = next(model.parameters()).device
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "emb", "reg", "sig", "up")}
    for lo in tqdm(range(0, dates.size, batch_days), desc="export", disable=None if progress is None else not progress, leave=False):
        batch = data.batch(dates[lo: lo + batch_days])
        parts["row"].append(batch.row.numpy())
        out = model(batch if device.type == "cpu" else batch.to(device))
        parts["emb"].append(_numpy(out["emb"]))
        parts["reg"].append(_numpy(out["reg"]))
        parts["sig"].append(_numpy(torch.sigmoid(out["sig_logit"].float())))
        parts["up"].append(_numpy(torch.sigmoid(out["dir_logit"].float())))
    return {k: np.concatenate(v) for k, v in parts.items()}


def oos_columns(oos: pl.DataFrame, panel: pl.DataFrame, fold: Fold, params: Params) -> pl.DataFrame:
    """``date, code, oos_fold, oos_*``: the TEST rows of the core predictions, each from the fold model that tested it.

    Val rows are left out: their fold model was early-stopped on them. Raises when the
    predictions do not hold the exported fold's test window (they and the checkpoint
    would come from different runs).
    """
    source = "data/predictions/core.parquet"
    horizons = list(params.features.horizons)
    need = ["date", "code", "fold", "split", *(f"pred_{h}d" for h in horizons)]
    missing = [c for c in need if c not in oos.columns]
    if missing:
        raise UserError(f"{source}: missing columns {missing}; rerun the core stage (dvc repro model@core)")
    heads = [c for h in horizons for c in (f"p_signal_{h}d", f"p_up_{h}d") if c in oos.columns]
    preds = [f"pred_{h}d" for h in horizons]
    test = oos.filter(pl.col("split") == "test").select("date", "code", pl.col("fold").cast(pl.Int32), *preds, *heads)
    if test.select("date", "code").is_duplicated().any():
        raise UserError(f"{source}: a (date, code) is in the test window of two folds; folds.json and the predictions disagree")
    want = panel.filter(pl.col("date").is_between(*fold.test))["date"].unique().sort()
    have = test.filter(pl.col("fold") == fold.fold)["date"].unique().sort()
    if not have.equals(want):
        raise UserError(
            f"{source}: fold {fold.fold}'s test rows cover {have.len()} dates, its test window {want.len()}"
            f" ({fold.test[0]} .. {fold.test[1]}): the predictions and models/core come from different runs;"
            " rerun dvc repro model@core"
        )
    sel = params.train.select_horizon
    extra = [pl.col(f"{p}_{sel}d").alias(p) for p in ("p_signal", "p_up") if f"{p}_{sel}d" in heads]
    return test.with_columns(*extra).rename(lambda c: c if c in ("date", "code") else OOS + c)


@torch.no_grad()
def export_features(
    model: torch.nn.Module,
    panel: pl.DataFrame,
    prices: pl.DataFrame,
    index: Any,
    fold: Fold,
    params: Params,
    feature_cols: list[str],
    batch_days: int = 32,
    progress: bool | None = None,
    oos: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Run the frozen model over every date of ``panel``; see the module docstring for the columns.

    ``oos``: the core stage's predictions (``data/predictions/core.parquet``) for the
    walk-forward columns; without it they are absent.
    """
    horizons = list(params.features.horizons)
    # The forward pass never reads split codes (full neighbourhoods); the row-level purge that
    # defines them depends on each stock's next rows, so it has no place in an export.
    codes = np.zeros(panel.height, dtype=np.int8)
    wide = wide_index(panel, params)  # the linear path's relational inputs (train.wide), None when off
    data = CoreDayData(
        index, panel, codes, feature_cols, horizons, params.train.seq_len, use_edges=params.train.use_edges,
        wide_inputs=None if wide is None else wide_matrix(wide, panel),
    )
    out = model_outputs(model, data, index.dates, batch_days, progress)
    emb, reg, sig, up = out["emb"], out["reg"], out["sig"], out["up"]
    cols: dict[str, pl.Series] = {f"emb_{j}": pl.Series(emb[:, j], dtype=pl.Float32) for j in range(emb.shape[1])}
    cols |= {f"pred_{h}d": pl.Series(reg[:, j], dtype=pl.Float32) for j, h in enumerate(horizons)}
    for j, h in enumerate(horizons):
        cols[f"p_signal_{h}d"] = pl.Series(sig[:, j], dtype=pl.Float32)
        cols[f"p_up_{h}d"] = pl.Series(up[:, j], dtype=pl.Float32)
    sel = horizons.index(params.train.select_horizon)
    cols["p_signal"] = pl.Series(sig[:, sel], dtype=pl.Float32)
    cols["p_up"] = pl.Series(up[:, sel], dtype=pl.Float32)
    keys = panel.select(pl.col("date", "code").gather(pl.Series(out["row"])))
    frame = keys.with_columns(fold=pl.lit(fold.fold, dtype=pl.Int32), split=date_split(fold), in_sample=in_sample_expr(fold), **cols)
    market = prices.select("date", "code", *MARKET)
    reward = next_day_returns(prices).rename({"r_next": "ret_1d"})
    full = (
        frame.join(market, on=["date", "code"], how="left", validate="1:1")
        .join(reward, on=["date", "code"], how="left", validate="1:1")
        .with_columns(tradable=pl.col("close").is_not_null() & (pl.col("volume") > 0))
    )
    if oos is not None:
        full = full.join(oos_columns(oos, panel, fold, params), on=["date", "code"], how="left", validate="1:1")
    head = ["date", "code", "fold", "split", "in_sample", "tradable", *MARKET, "ret_1d"]
    return full.select(*head, pl.exclude(head)).sort("date", "code")


def column_meanings(frame: pl.DataFrame, label_delay: int = 0) -> dict[str, str]:
    """A meaning for every column of an export frame."""
    start = f"close(t+{label_delay})" if label_delay else "close(t)"
    fixed = {
        "date": "trading date t",
        "code": "stock code",
        "fold": "the fold whose best checkpoint produced the model columns (emb_*, pred_*, p_*)",
        "split": "train / val / test window of that fold, from the date alone; none: embargo gaps, before a rolling"
                 " training window, after the test window",
        "in_sample": "true before the fold's test window: the model trained, early-stopped or saw returns there, so"
                     " its columns are in-sample on this row. Fit an agent on in_sample == false rows only",
        "tradable": "the stock traded on t (readers add non-tradable rows to balance panels)",
        "open": "raw open on t", "high": "raw high on t", "low": "raw low on t", "close": "raw close on t",
        "volume": "raw volume on t",
        "ret_1d": "REALIZED return close(t) -> close(next market day), null if not traded then: the reward, never an"
                  " observation (the only column that depends on the future)",
        "p_signal": "P(signal) at train.select_horizon", "p_up": "P(up | signal) at train.select_horizon",
        "oos_fold": "the fold whose model tested this date (walk-forward); null: no fold tested it",
        "oos_p_signal": "walk-forward P(signal) at train.select_horizon", "oos_p_up": "walk-forward P(up | signal) at train.select_horizon",
    }
    out = {}
    for c in frame.columns:
        base = c.removeprefix(OOS)
        wf = " (walk-forward: by the oos_fold model, out-of-sample; null where oos_fold is null)" if c.startswith(OOS) else ""
        if c in fixed:
            out[c] = fixed[c]
        elif c.startswith("emb_"):
            out[c] = "core model embedding (input of its heads): the fold's checkpoint, one embedding space for every row"
        elif base.startswith("pred_"):
            out[c] = f"predicted normalized {base[5:]} forward return from {start} (features.label_delay; cross-sectional label scale){wf}"
        elif base.startswith("p_signal_"):
            out[c] = f"P(|cross-sectional z of the {base[9:]} return| > features.signal_threshold){wf}"
        elif base.startswith("p_up_"):
            out[c] = f"P({base[5:]} return > 0 | signal): combine with p_signal for down / neutral / up{wf}"
        else:
            out[c] = ""
    return out


def _rank_ic(frame: pl.DataFrame, pred: str, target: str = "ret_1d") -> float | None:
    ics = daily_ic(frame.select("date", pred, target).drop_nulls(), pred, target)
    return None if ics.is_empty() else round(float(ics["rank_ic"].mean()), 6)


def schema(frame: pl.DataFrame, params: Params, fold: Fold, checkpoint: Path) -> dict[str, Any]:
    """``schema.json``: columns (dtype, meaning), which rows an agent may fit on, sizes, params, the checkpoint's hash."""
    delay = params.features.label_delay
    meanings = column_meanings(frame, delay)
    span = (pl.col("date").min().alias("first"), pl.col("date").max().alias("last"), pl.len().alias("rows"))
    splits = frame.group_by("split").agg(*span).sort("split")
    has_oos = "oos_fold" in frame.columns
    # How much better the model columns look where they are in-sample: RankIC of pred_1d-like columns with the reward.
    # With a label delay d the predictions target the reward d rows later: score them against that.
    sel = f"pred_{params.features.horizons[0]}d"
    target = f"ret_1d_lead{delay}" if delay else "ret_1d"
    scored = frame.with_columns(pl.col("ret_1d").shift(-delay).over("code", order_by="date").alias(target)) if delay else frame
    diagnostics = {f"rank_ic_{sel}_vs_{target}": {s: _rank_ic(scored.filter(pl.col("split") == s), sel, target) for s in ("train", "val", "test")}}
    if has_oos:
        diagnostics[f"rank_ic_{OOS}{sel}_vs_{target}"] = _rank_ic(scored.filter(pl.col("oos_fold").is_not_null()), OOS + sel, target)
    doc: dict[str, Any] = {
        "columns": [{"name": c, "dtype": str(t), "meaning": meanings[c]} for c, t in frame.schema.items()],
        "usage": {
            "reward": "ret_1d (the future: never an observation)",
            "model_columns": observation_columns(frame.columns, "model"),
            "fit_on": "model columns: rows with in_sample == false only ("
                      + ("the fold's test window" if fold.trains_after_test else "dates >= the fold's first test date") + ");"
                      + (" walk-forward oos_* columns: every row where oos_fold is not null" if has_oos else ""),
            "never_trust": "model columns on rows with in_sample == true: the model was fitted or selected there",
            "oos_columns": observation_columns(frame.columns, "oos"),
            "embeddings": "emb_* come from one checkpoint (the fold below): one space for every row. Walk-forward"
                          " embeddings are not exported: each fold model has its own space. An earlier export.fold"
                          " gives embeddings that are out-of-sample from its test window onwards",
        },
        "in_sample": {"rule": "date < first test date of the fold", "first_out_of_sample_date": str(fold.test[0])}
        | ({"rule": "date outside the fold's test window (purged k-fold: trained on both sides)",
            "last_out_of_sample_date": str(fold.test[1])} if fold.trains_after_test else {}),
        "embedding_size": sum(c.startswith("emb_") for c in frame.columns),
        "horizons": list(params.features.horizons),
        "rows": frame.height,
        "dates": {"first": str(frame["date"].min()), "last": str(frame["date"].max()), "count": frame["date"].n_unique()},
        "splits": {r["split"]: {"first": str(r["first"]), "last": str(r["last"]), "rows": r["rows"]} for r in splits.iter_rows(named=True)},
        "fold": fold.fold,
        "fold_windows": {k: [str(a), str(b)] for k, (a, b) in (("train", fold.train), ("val", fold.val), ("test", fold.test))},
        "diagnostics": diagnostics,
        "checkpoint": {"path": str(checkpoint), "sha256": sha256(checkpoint)},
        "params": {"seed": params.seed, "train": _plain(params.train), "export": _plain(params.export), "features.horizons": list(params.features.horizons)},
    }
    if has_oos:
        wf = frame.filter(pl.col("oos_fold").is_not_null()).group_by("oos_fold").agg(*span).sort("oos_fold")
        doc["oos"] = {
            "source": "data/predictions/core.parquet (test rows of each fold)",
            "folds": {
                str(r["oos_fold"]): {"first": str(r["first"]), "last": str(r["last"]), "rows": r["rows"]} for r in wf.iter_rows(named=True)
            },
        }
    return doc


def _plain(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


# ------------------------------------------------------------------ readers


@dataclass
class RLFeatures:
    """Dense arrays of an export: ``obs`` [T, N, F], ``close`` / ``ret_1d`` [T, N], ``mask`` [T, N] (traded).

    ``in_sample`` [T]: the observed columns are in-sample on that date (never, for the ``oos`` source).
    """

    dates: np.ndarray
    codes: list[str]
    columns: list[str]
    obs: np.ndarray
    close: np.ndarray
    ret_1d: np.ndarray
    mask: np.ndarray
    in_sample: np.ndarray


def observation_columns(columns: list[str], source: str = "model") -> list[str]:
    """What an agent observes: the exported model's ``emb_*, pred_*, p_*`` (``model``) or the walk-forward ``oos_*``."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source == "oos":
        return [c for c in columns if c.startswith(tuple(OOS + p for p in ("pred_", "p_signal", "p_up")))]
    return [c for c in columns if c.startswith(("emb_", "pred_", "p_signal", "p_up"))]


def _select(frame: pl.DataFrame, path: str | Path, split: str | None, in_sample: bool | None, source: str) -> pl.DataFrame:
    """The rows of a selection: a split, in-sample or not, and (source ``oos``) the walk-forward rows."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if not observation_columns(frame.columns, source):
        raise ValueError(f"{path}: no {source} observation columns (source 'oos' needs the walk-forward oos_* columns)")
    keep = pl.lit(True)
    if split is not None:
        keep &= pl.col("split") == split
    if in_sample is not None and source == "oos":
        # ``in_sample`` flags the model columns; the oos_* columns are out-of-sample wherever they are set.
        if in_sample:
            raise ValueError("in_sample=True with source='oos': the oos_* columns are out-of-sample on every row where they are set")
    elif in_sample is not None:
        keep &= pl.col("in_sample") == in_sample
    if source == "oos":
        keep &= pl.col("oos_fold").is_not_null()
    out = frame.filter(keep)
    if out.is_empty():
        raise ValueError(f"{path}: no rows with split={split!r}, in_sample={in_sample!r}, source={source!r}")
    return out


def load_rl_features(
    path: str | Path, split: str | None = None, in_sample: bool | None = None, source: str = "model"
) -> RLFeatures:
    """An export as dense [T, N, F] arrays over its dates x codes; ``mask`` is False where a stock did not trade.

    ``in_sample=False`` keeps the rows whose model columns an agent may be fitted on;
    ``source="oos"`` observes the walk-forward columns on the dates a fold tested.
    Non-traded cells are 0 in ``obs`` and NaN in ``close`` / ``ret_1d``.
    """
    frame = _select(pl.read_parquet(path), path, split, in_sample, source)
    dates = frame["date"].unique().sort()
    codes = frame["code"].unique().sort()
    cols = observation_columns(frame.columns, source)
    ti = np.searchsorted(dates.to_numpy(), frame["date"].to_numpy())
    ni = np.searchsorted(codes.to_numpy(), frame["code"].to_numpy())
    shape = (dates.len(), codes.len())
    obs = np.zeros((*shape, len(cols)), dtype=np.float32)
    obs[ti, ni] = frame.select(cols).to_numpy().astype(np.float32)
    close = np.full(shape, np.nan)
    ret = np.full(shape, np.nan)
    mask = np.zeros(shape, dtype=bool)
    close[ti, ni] = frame["close"].to_numpy()
    ret[ti, ni] = frame["ret_1d"].fill_null(np.nan).to_numpy()
    mask[ti, ni] = frame["tradable"].to_numpy()
    per_date = frame.group_by("date").agg(pl.col("in_sample").first()).sort("date")["in_sample"].to_numpy()
    if source == "oos":  # the observed columns come from the fold model that tested each date
        per_date = np.zeros_like(per_date)
    return RLFeatures(dates.to_numpy(), codes.to_list(), cols, obs, close, ret, mask, per_date)


def finrl_frame(
    path: str | Path, split: str | None = None, in_sample: bool | None = None, source: str = "model"
) -> pl.DataFrame:
    """A FinRL StockTradingEnv frame: ``date, tic, open, high, low, close, volume, tradable, untradable, <indicators>``.

    The ticker list is the stocks ALIVE over the whole selected window: a price on or
    before its first date and a trade on or after its last. So no row carries a price
    from before a listing or after a delisting; stocks that list or delist inside the
    window are left out (the universe is chosen knowing the window's end: survivorship,
    harmless for fitting, optimistic for a backtest; ``load_rl_features`` has every stock).

    One row per ticker per date, sorted by (date, tic), so every day lists the tickers in
    the same order, as ``df.loc[day, :]`` in StockTradingEnv needs. A ticker that does not
    trade on a date (suspended) keeps its last close (dated <= t: past data only) as
    open/high/low/close, volume 0, ``tradable`` false, indicators 0. ``untradable``
    (1.0 / 0.0) comes first among the indicators: StockTradingEnv blocks buying and selling
    a stock whose first indicator is true. For the environment::

        df = frame.to_pandas(); df.index = df["date"].factorize()[0]
        env = StockTradingEnv(df=df, **finrl_env_kwargs(frame), hmax=..., ...)
    """
    full = pl.read_parquet(path).rename({"code": "tic"})
    selected = _select(full, path, split, in_sample, source)
    frame = selected.filter(pl.col("tradable"))
    indicators = finrl_indicators(frame.columns, source)[1:]
    calendar = selected.select(pl.col("date").unique().sort())
    first, last = calendar["date"].min(), calendar["date"].max()
    # Prices over the whole file, not just the window: a stock suspended on the window's first day
    # keeps the close of its last trade before it (a past price, never a future one).
    priced = full.filter(pl.col("close").is_not_null()).select("date", "tic", pl.col("close").alias("last_close")).sort("date")
    alive = full.filter(pl.col("tradable")).group_by("tic").agg(pl.col("date").max().alias("last_trade")).join(
        priced.group_by("tic").agg(pl.col("date").min().alias("first_price")), on="tic"
    ).filter((pl.col("first_price") <= first) & (pl.col("last_trade") >= last))
    if alive.is_empty():
        raise ValueError(f"{path}: no stock is alive over the whole window {first} .. {last}")
    grid = calendar.join(alive.select("tic"), how="cross").sort("date")
    grid = grid.join_asof(priced, on="date", by="tic", strategy="backward", check_sortedness=False)  # both sorted by date
    out = grid.join(frame.select("date", "tic", *MARKET, *indicators), on=["date", "tic"], how="left")
    traded = pl.col("volume").is_not_null()
    out = out.with_columns(
        *(pl.when(traded).then(pl.col(c)).otherwise(pl.col("last_close")).alias(c) for c in ("open", "high", "low", "close")),
        pl.col("volume").fill_null(0.0),
        *(pl.col(c).fill_null(0.0) for c in indicators),
        tradable=traded,
        untradable=(~traded).cast(pl.Float32),
    )
    return out.select("date", "tic", *MARKET, "tradable", "untradable", *indicators).sort("date", "tic")


def finrl_indicators(columns: list[str], source: str = "model") -> list[str]:
    """StockTradingEnv's ``tech_indicator_list``: ``untradable`` first (its trading guard), then the observations."""
    return ["untradable", *observation_columns([c for c in columns if c != "untradable"], source)]


def finrl_env_kwargs(frame: pl.DataFrame) -> dict[str, Any]:
    """``stock_dim``, ``state_space`` (1 + 2N + K N), ``action_space`` and ``tech_indicator_list`` of a :func:`finrl_frame`."""
    n = frame["tic"].n_unique()
    source = "oos" if any(c.startswith(OOS) for c in frame.columns) else "model"
    tech = finrl_indicators(frame.columns, source)
    return {"stock_dim": n, "state_space": 1 + 2 * n + len(tech) * n, "action_space": n, "tech_indicator_list": tech}
