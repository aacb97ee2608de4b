"""RL feature export: the frozen core model's view of every (date, code), plus what an agent needs.

``data/export/rl_features.parquet`` has one row per normalized-panel row:

- ``emb_0 .. emb_{d-1}`` (float32): the core model's node embedding (the input of its heads);
- ``pred_{h}d``: multi-horizon predictions; ``p_signal_{h}d`` / ``p_up_{h}d``: the hierarchical
  heads; ``p_signal`` / ``p_up``: the same at ``train.select_horizon``;
- ``open, high, low, close, volume``: the day's raw market data; ``tradable``: the stock
  traded that day (always true for a panel row; false only for rows the readers add);
- ``ret_1d``: the REALIZED next-day return close(t) -> close(t+1), for rewards only: it is
  the future, never an observation;
- ``split``: train / val / test / none of the exported fold (none: outside the fold or purged),
  so an agent can be fitted on train dates only.

Everything but ``ret_1d`` uses data dated <= the row's date: the model is frozen and its
inputs are the panel's history windows and the latest graph snapshot.
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

from alphagraph.config import Params
from alphagraph.models.core import CoreModel
from alphagraph.split import Fold
from alphagraph.train import split_codes
from alphagraph.train.core_data import CoreDayData
from alphagraph.train.data import SPLIT_NAME
from alphagraph.walkforward import label_reach

MARKET = ("open", "high", "low", "close", "volume")


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
    """The frozen core model of a fold directory (``model.json`` + ``best.pt``), in eval mode."""
    fold_dir = Path(fold_dir)
    meta_path, ckpt = fold_dir / "model.json", fold_dir / "best.pt"
    for p in (meta_path, ckpt):
        if not p.exists():
            raise FileNotFoundError(f"{p}: missing; run the core stage first (dvc repro core)")
    meta = json.loads(meta_path.read_text())
    model = CoreModel(**meta["kwargs"])
    state = torch.load(ckpt, map_location=device, weights_only=False)["model"]
    model.load_state_dict(state)
    model.to(device).eval().requires_grad_(False)
    return model, meta


@torch.no_grad()
def export_features(
    model: CoreModel,
    panel: pl.DataFrame,
    prices: pl.DataFrame,
    index: Any,
    fold: Fold,
    params: Params,
    feature_cols: list[str],
    batch_days: int = 32,
    progress: bool | None = None,
) -> pl.DataFrame:
    """Run the frozen model over every date of ``panel``; see the module docstring for the columns."""
    horizons = list(params.features.horizons)
    codes = split_codes(panel, fold, label_reach(params))
    data = CoreDayData(index, panel, codes, feature_cols, horizons, params.train.seq_len, use_edges=params.train.use_edges)
    device = next(model.parameters()).device
    dates = index.dates
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("row", "emb", "reg", "sig", "up")}
    for lo in tqdm(range(0, dates.size, batch_days), desc="export", disable=None if progress is None else not progress, leave=False):
        batch = data.batch(dates[lo: lo + batch_days])
        out = model(batch if device.type == "cpu" else batch.to(device))
        parts["row"].append(batch.row.numpy())
        parts["emb"].append(out["emb"].float().cpu().numpy())
        parts["reg"].append(out["reg"].float().cpu().numpy())
        parts["sig"].append(torch.sigmoid(out["sig_logit"].float()).cpu().numpy())
        parts["up"].append(torch.sigmoid(out["dir_logit"].float()).cpu().numpy())
    row, emb, reg, sig, up = (np.concatenate(parts[k]) for k in ("row", "emb", "reg", "sig", "up"))
    cols: dict[str, pl.Series] = {}
    for j in range(emb.shape[1]):
        cols[f"emb_{j}"] = pl.Series(emb[:, j], dtype=pl.Float32)
    for j, h in enumerate(horizons):
        cols[f"pred_{h}d"] = pl.Series(reg[:, j], dtype=pl.Float32)
    for j, h in enumerate(horizons):
        cols[f"p_signal_{h}d"] = pl.Series(sig[:, j], dtype=pl.Float32)
        cols[f"p_up_{h}d"] = pl.Series(up[:, j], dtype=pl.Float32)
    sel = horizons.index(params.train.select_horizon)
    cols["p_signal"] = pl.Series(sig[:, sel], dtype=pl.Float32)
    cols["p_up"] = pl.Series(up[:, sel], dtype=pl.Float32)
    keys = panel.select(pl.col("date", "code", "ret_1d").gather(pl.Series(row)))
    split = pl.Series(codes[row]).replace_strict(SPLIT_NAME, default="none", return_dtype=pl.Utf8)
    frame = keys.with_columns(split=split, **cols)
    market = prices.select("date", "code", *MARKET)
    out = frame.join(market, on=["date", "code"], how="left", validate="1:1").with_columns(
        tradable=pl.col("close").is_not_null() & (pl.col("volume") > 0)
    )
    head = ["date", "code", "split", "tradable", *MARKET, "ret_1d"]
    return out.select(*head, pl.exclude(head)).sort("date", "code")


def column_meanings(frame: pl.DataFrame) -> dict[str, str]:
    """A meaning for every column of an export frame."""
    fixed = {
        "date": "trading date t",
        "code": "stock code",
        "split": "split of the exported fold: train / val / test / none (outside the fold or purged)",
        "tradable": "the stock traded on t (readers add non-tradable rows to balance panels)",
        "open": "raw open on t", "high": "raw high on t", "low": "raw low on t", "close": "raw close on t",
        "volume": "raw volume on t",
        "ret_1d": "REALIZED return close(t) -> close(t+1): for rewards only, never an observation (null at the end)",
        "p_signal": "P(signal) at train.select_horizon", "p_up": "P(up | signal) at train.select_horizon",
    }
    out = {}
    for c in frame.columns:
        if c in fixed:
            out[c] = fixed[c]
        elif c.startswith("emb_"):
            out[c] = "core model embedding (input of its heads), frozen checkpoint"
        elif c.startswith("pred_"):
            out[c] = f"predicted normalized {c[5:]} forward return (cross-sectional label scale)"
        elif c.startswith("p_signal_"):
            out[c] = f"P(|cross-sectional z of the {c[9:]} return| > features.signal_threshold)"
        elif c.startswith("p_up_"):
            out[c] = f"P({c[5:]} return > 0 | signal): combine with p_signal for down / neutral / up"
        else:
            out[c] = ""
    return out


def schema(frame: pl.DataFrame, params: Params, fold: Fold, checkpoint: Path) -> dict[str, Any]:
    """``schema.json``: columns (dtype, meaning), sizes, horizons, params and the checkpoint's hash."""
    meanings = column_meanings(frame)
    splits = frame.group_by("split").agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"), pl.len().alias("rows")).sort("split")
    return {
        "columns": [{"name": c, "dtype": str(t), "meaning": meanings[c]} for c, t in frame.schema.items()],
        "embedding_size": sum(c.startswith("emb_") for c in frame.columns),
        "horizons": list(params.features.horizons),
        "rows": frame.height,
        "dates": {"first": str(frame["date"].min()), "last": str(frame["date"].max()), "count": frame["date"].n_unique()},
        "splits": {r["split"]: {"first": str(r["first"]), "last": str(r["last"]), "rows": r["rows"]} for r in splits.iter_rows(named=True)},
        "fold": fold.fold,
        "checkpoint": {"path": str(checkpoint), "sha256": sha256(checkpoint)},
        "params": {"seed": params.seed, "train": _plain(params.train), "export": _plain(params.export), "features.horizons": list(params.features.horizons)},
    }


def _plain(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


# ------------------------------------------------------------------ readers


@dataclass
class RLFeatures:
    """Dense arrays of an export: ``obs`` [T, N, F], ``close`` / ``ret_1d`` [T, N], ``mask`` [T, N] (traded)."""

    dates: np.ndarray
    codes: list[str]
    columns: list[str]
    obs: np.ndarray
    close: np.ndarray
    ret_1d: np.ndarray
    mask: np.ndarray


def observation_columns(columns: list[str]) -> list[str]:
    """Model outputs an agent observes: embeddings, predictions and head probabilities."""
    return [c for c in columns if c.startswith(("emb_", "pred_", "p_signal", "p_up"))]


def _read(path: str | Path, split: str | None) -> pl.DataFrame:
    frame = pl.read_parquet(path)
    if split is not None:
        known = {"train", "val", "test", "none"}
        if split not in known:
            raise ValueError(f"split must be one of {sorted(known)}, got {split!r}")
        frame = frame.filter(pl.col("split") == split)
        if frame.is_empty():
            raise ValueError(f"{path}: no rows with split == {split!r}")
    return frame


def load_rl_features(path: str | Path, split: str | None = None) -> RLFeatures:
    """An export as dense [T, N, F] arrays over its dates x codes; ``mask`` is False where a stock did not trade.

    Non-traded cells are 0 in ``obs`` and NaN in ``close`` / ``ret_1d``.
    """
    frame = _read(path, split)
    dates = frame["date"].unique().sort()
    codes = frame["code"].unique().sort()
    cols = observation_columns(frame.columns)
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
    return RLFeatures(dates.to_numpy(), codes.to_list(), cols, obs, close, ret, mask)


def finrl_frame(path: str | Path, split: str | None = None) -> pl.DataFrame:
    """A FinRL-style long frame: ``date, tic, open, high, low, close, volume, tradable, <indicators>``.

    Balanced over a fixed ticker list (every ticker of the selection on every
    date), as FinRL's StockTradingEnv expects. A ticker that did not trade on a
    date gets its last known close (or, before its first trade, its first
    close) as open/high/low/close, volume 0, indicators 0 and ``tradable``
    false: never a zero price. For StockTradingEnv, convert with
    ``df = frame.to_pandas(); df.index = df["date"].factorize()[0]``.
    """
    frame = _read(path, split).rename({"code": "tic"})
    indicators = observation_columns(frame.columns)
    grid = frame.select(pl.col("date").unique()).join(frame.select(pl.col("tic").unique()), how="cross")
    full = grid.join(frame.select("date", "tic", *MARKET, "tradable", *indicators), on=["date", "tic"], how="left").sort("tic", "date")
    price = pl.col("close").forward_fill().backward_fill().over("tic")
    full = full.with_columns(
        pl.col("tradable").fill_null(False),
        pl.col("volume").fill_null(0.0),
        *(pl.col(c).fill_null(0.0) for c in indicators),
        close_filled=price,
    ).with_columns(
        *(pl.col(c).fill_null(pl.col("close_filled")) for c in ("open", "high", "low", "close")),
    )
    return full.drop("close_filled").select("date", "tic", *MARKET, "tradable", *indicators).sort("date", "tic")
