"""Self-supervised pretraining of the core model's encoder (``pretrain`` params, stage ``pretrain``).

The encoder is every part of :class:`~alphagraph.models.core.CoreModel`
before its heads: temporal encoder, neighbour inputs, PEARL and the relation
attention layers; its output ``h`` [N, hidden] is what the head reads (next to
``e``). Objectives (``pretrain.objective``):

- ``masked``: per step, each node is masked with probability ``mask_share``:
  its whole feature window is zeroed (so its own history does not reach its
  neighbours' inputs either) and its temporal embedding is replaced by a
  learned mask token before the graph layers. A small MLP predicts all
  horizons' labels ``y_{h}d`` from the masked node's graph output;
  loss = MSE over masked TRAIN nodes and non-null labels (equal horizon
  weights). What it can learn comes from the neighbours alone. ``masked_zero``
  in the history is the MSE of predicting 0 on the same entries (about 1 for
  the rank-gauss labels): the loss a model without neighbours cannot beat.
- ``contrastive``: InfoNCE between a stock's projected graph output on day t
  and on day t + ``offset_days`` (trading days; positives) against the other
  stocks' day-(t + d) outputs of the same anchor day (negatives), temperature
  ``temperature``, symmetric (both directions averaged). Only stocks that are
  TRAIN nodes on both days pair up.
- ``both``: the sum, from one forward pass (masked nodes do not pair up).

Leakage: only the fold's training days are visited (the days with TRAIN rows)
and only TRAIN nodes enter a loss, whose labels end before validation (the
fold's purged split codes, :func:`~alphagraph.train.split_codes`); windows
reach back only. Validation and test rows, labels or features, never move the
weights.

One checkpoint per fold, ``models/pretrain/fold{k}.pt``: the encoder's weights
and the :func:`~alphagraph.models.core.core_kwargs` it was built with, read
back by :func:`load_pretrained` (``train.init_from: pretrain``), which refuses
another architecture. With ``objective: none`` the stage writes only
``models/pretrain/pretrain.json``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F
from torch import nn

from alphagraph.runtime import paths
from alphagraph.runtime.config import Params, PretrainConfig
from alphagraph.runtime.errors import UserError
from alphagraph.runtime.io import atomic_path, read_json
from alphagraph.runtime.log import get_logger
from alphagraph.models.core.data import core_fold_data
from alphagraph.models.core.model import CoreModel
from alphagraph.features.normalize import feature_columns
from alphagraph.evaluation.split import Fold
from alphagraph.train.core_data import CoreDayData
from alphagraph.train.outputs import TRAIN
from alphagraph.train.loop import deterministic_torch, load_checkpoint, resolve_device, seed_everything

PRETRAIN_DIR = paths.MODELS / "pretrain"
SUMMARY = "pretrain.json"
OBJECTIVES = ("none", "masked", "contrastive", "both")
HEAD_PREFIXES = ("head.", "reg.", "sig.", "dir.")  # CoreModel's heads: not pretrained, never loaded
FORMAT = 1
log = get_logger("pretrain")


def encoder_state(core: CoreModel) -> dict[str, torch.Tensor]:
    """The encoder's weights (CPU copies): the state dict without the heads."""
    return {k: v.detach().cpu().clone() for k, v in core.state_dict().items() if not k.startswith(HEAD_PREFIXES)}


def _generator(*keys: int) -> torch.Generator:
    """A generator that is a function of ``keys`` alone (never of the global RNG)."""
    state = np.random.SeedSequence([k % 2**32 for k in keys]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# ------------------------------------------------------------------ objectives


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, group: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i's positive is ``positive[i]``, its negatives the other rows of its ``group``.

    Cosine similarities / ``temperature``; mean over rows of the two
    cross-entropies (anchor -> positive, positive -> anchor). One similarity
    matrix per group (an anchor day's stocks), so memory grows with a day's
    cross-section, not with the batch.
    """
    za, zp = F.normalize(anchor.float(), dim=-1), F.normalize(positive.float(), dim=-1)
    total = za.new_zeros(())
    for g in torch.unique(group):
        sel = group == g
        logits = za[sel] @ zp[sel].T / temperature
        target = torch.arange(logits.size(0), device=logits.device)
        total = total + 0.5 * (F.cross_entropy(logits, target, reduction="sum") + F.cross_entropy(logits.T, target, reduction="sum"))
    return total / max(anchor.size(0), 1)


def masked_mse(pred: torch.Tensor, y: torch.Tensor, use: torch.Tensor) -> tuple[torch.Tensor, float]:
    """MSE of ``pred`` against ``y`` [N, H] over rows ``use`` and non-null labels, and the MSE of predicting 0."""
    y, pred = y[use].float(), pred[use].float()
    ok = torch.isfinite(y)
    y = torch.where(ok, y, torch.zeros_like(y))
    n = ok.sum().clamp_min(1)
    return ((pred - y) ** 2 * ok).sum() / n, float((y * y).sum() / n)


class Pretrainer(nn.Module):
    """A :class:`CoreModel` plus the mask token and the small heads of the pretraining objectives."""

    def __init__(self, core: CoreModel, objective: str, n_horizons: int) -> None:
        super().__init__()
        if objective not in OBJECTIVES[1:]:
            raise ValueError(f"pretrain.objective must be one of {OBJECTIVES[1:]} to pretrain, got {objective!r}")
        self.core, self.objective = core, objective
        hidden = core.temporal.out.normalized_shape[0]
        self.hidden = hidden
        self.masked = objective in ("masked", "both")
        self.contrastive = objective in ("contrastive", "both")
        self.mask_token = nn.Parameter(torch.zeros(hidden)) if self.masked else None
        self.predictor = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_horizons)) if self.masked else None
        self.projector = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden)) if self.contrastive else None

    def encode(self, batch: Any, masked: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output ``h`` [N, hidden]; ``masked`` [N] bool nodes get the mask token (see the module docstring).

        ``h`` is read as the first half of the core head's input (``[h, e]``)
        through hooks, so this follows :meth:`CoreModel.forward` without
        copying it.
        """
        captured: dict[str, torch.Tensor] = {}

        def on_temporal(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
            return torch.where(masked[:, None], self.mask_token.to(out.dtype), out)

        def on_head(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if inputs[0].size(-1) != 2 * self.hidden:
                raise RuntimeError(f"CoreModel's head input has width {inputs[0].size(-1)}, expected [h, e] = {2 * self.hidden}")
            captured["h"] = inputs[0][:, : self.hidden]

        handles = [self.core.head.register_forward_pre_hook(on_head)]
        if masked is not None:
            handles.append(self.core.temporal.register_forward_hook(on_temporal))
            batch = copy.copy(batch)  # shallow: the caller's batch keeps its windows
            batch.x_seq = batch.x_seq * ~masked[:, None, None]
        try:
            self.core(batch)
        finally:
            for handle in handles:
                handle.remove()
        return captured["h"]


# ------------------------------------------------------------------- training


def _anchor_days(data: CoreDayData, cfg: PretrainConfig) -> np.ndarray:
    """Positions (in the index's dates) of the training days a step starts from.

    Contrastive objectives need a training day ``offset_days`` later too.
    """
    dates = data.index.dates
    train = np.searchsorted(dates, data.dates("train"))
    if train.size == 0:
        raise UserError("pretrain: the fold has no training day")
    if cfg.objective in ("contrastive", "both"):
        train = train[np.isin(train + cfg.offset_days, train)]
        if train.size == 0:
            raise UserError(f"pretrain.offset_days: no training day has a training day {cfg.offset_days} trading days later")
    return train


def _pairs(data: CoreDayData, batch: Any, anchor_days: np.ndarray, offset: int, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor node, partner node, anchor day) of the batch: the same stock ``offset`` days later, both ``usable``."""
    day, code = data.index.day_and_code(data.index.positions(batch.row.cpu().numpy()))
    key = day * data.index.n_codes + code
    order = np.argsort(key)
    anchor = np.flatnonzero(np.isin(day, anchor_days) & usable)
    want = key[anchor] + offset * data.index.n_codes
    at = np.minimum(np.searchsorted(key[order], want), key.size - 1)
    partner = order[at]
    ok = (key[partner] == want) & usable[partner]
    return anchor[ok], partner[ok], day[anchor[ok]]


def pretrain_encoder(
    model: Pretrainer,
    data: CoreDayData,
    cfg: PretrainConfig,
    seed: int,
    weight_decay: float = 1e-4,
    grad_clip: float = 1.0,
    device: str = "cpu",
    desc: str = "pretrain",
) -> list[dict[str, float]]:
    """Train ``model`` (in place) on ``data``'s training days; the per-epoch history.

    AdamW at a constant ``cfg.lr``; each epoch visits ``days_per_epoch`` anchor
    days in an order drawn from ``(seed, epoch)``, ``batch_days`` per step; the
    masks are drawn from ``(seed, epoch, step)``.
    """
    dev = resolve_device(device)
    anchors = _anchor_days(data, cfg)
    days = min(cfg.days_per_epoch, anchors.size) if cfg.days_per_epoch > 0 else anchors.size
    history: list[dict[str, float]] = []
    with deterministic_torch(True, cfg.num_threads, dev):
        model.to(dev)
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=weight_decay)
        autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(anchors.size, generator=_generator(seed, epoch)).numpy()[:days]
            sums: dict[str, float] = {}
            counts: dict[str, int] = {}
            for step, lo in enumerate(range(0, days, cfg.batch_days)):
                anchor = np.sort(anchors[order[lo: lo + cfg.batch_days]])
                wanted = np.unique(np.r_[anchor, anchor + cfg.offset_days]) if model.contrastive else anchor
                batch = data.batch(data.index.dates[wanted])
                batch = batch if dev.type == "cpu" else batch.to(dev)
                train = (batch.split == TRAIN).cpu()
                masked = (torch.rand(batch.num_nodes, generator=_generator(seed, epoch, step)) < cfg.mask_share) if model.masked else None
                parts: dict[str, torch.Tensor | float] = {}
                with autocast:
                    h = model.encode(batch, None if masked is None else masked.to(dev))
                    if model.masked and bool((use := masked & train).any()):
                        parts["masked"], parts["masked_zero"] = masked_mse(model.predictor(h), batch.y, use.to(dev))
                    if model.contrastive:
                        usable = (train if masked is None else train & ~masked).numpy()
                        a, p, group = _pairs(data, batch, anchor, cfg.offset_days, usable)
                        if a.size:
                            z = model.projector(h)
                            a_t, p_t = torch.from_numpy(a).to(dev), torch.from_numpy(p).to(dev)
                            parts["contrastive"] = info_nce(z[a_t], z[p_t], torch.from_numpy(group).to(dev), cfg.temperature)
                            sizes = np.unique(group, return_counts=True)[1]
                            parts["contrastive_chance"] = float((sizes * np.log(sizes)).sum() / sizes.sum())
                losses = [v for k, v in parts.items() if isinstance(v, torch.Tensor)]
                if not losses:  # no masked TRAIN node and no pair in this step
                    continue
                loss = torch.stack(losses).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                for k, v in {"loss": loss, **parts}.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)
                    counts[k] = counts.get(k, 0) + 1
            record = {"epoch": epoch + 1, **{k: sums[k] / counts[k] for k in sums}}
            history.append(record)
            log.info("%s epoch %d: %s", desc, epoch + 1, ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "epoch"))
    return history


def pretrain_fold(panel: pl.DataFrame, index: Any, fold: Fold, params: Params) -> tuple[CoreModel, list[dict[str, float]]]:
    """Pretrain the core model's encoder on one fold's training days: the model (heads untouched) and its history.

    The model is built as :func:`~alphagraph.models.core.train_core_fold`
    builds it (same seed), so pretraining starts from the core run's
    initialization.
    """
    cfg = params.train
    data = core_fold_data(panel, index, fold, params)
    seed_everything(params.seed * 1000 + fold.fold)
    core = CoreModel.from_config(cfg, feature_columns(panel), index.relations, len(data.horizons), seed=params.seed)
    model = Pretrainer(core, params.pretrain.objective, len(data.horizons))
    history = pretrain_encoder(
        model, data, params.pretrain, params.seed * 1000 + fold.fold, cfg.weight_decay, cfg.grad_clip, params.device,
        desc=f"pretrain fold {fold.fold}",
    )
    return core.cpu(), history


# ----------------------------------------------------------------- checkpoints


def save_pretrained(
    core: CoreModel, kwargs: dict[str, Any], objective: str, fold: int, history: Sequence[dict[str, float]], path: str | Path
) -> Path:
    """Write the encoder's weights with the constructor arguments they belong to."""
    obj = {
        "format": FORMAT, "objective": objective, "fold": int(fold), "kwargs": kwargs, "encoder": encoder_state(core),
        "history": [{k: float(v) for k, v in r.items()} for r in history],
    }
    # A file object, as the training loop's checkpoints: identical contents give identical bytes.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def _absent(path: Path) -> UserError:
    summary = path.parent / SUMMARY
    if summary.exists() and read_json(summary).get("objective") == "none":
        return UserError(
            f"train.init_from: pretrain, but {path} does not exist: the pretrain stage ran with pretrain.objective: none"
            f" ({summary}); set pretrain.objective to masked, contrastive or both and rerun it"
        )
    return UserError(f"train.init_from: pretrain, but {path} does not exist; run the pretrain stage first (dvc repro pretrain)")


def pretrained_path(fold: int, folder: str | Path = PRETRAIN_DIR) -> Path:
    return Path(folder) / f"fold{fold}.pt"


def pretrain_inputs(params: Params, folds: Sequence[Fold], folder: str | Path = PRETRAIN_DIR) -> list[Path]:
    """The checkpoints a core run starts from (``train.init_from: pretrain``; else none), for its work key.

    Raises the clear error of :func:`load_pretrained` when one is missing.
    """
    if params.train.init_from != "pretrain":
        return []
    files = [pretrained_path(f.fold, folder) for f in folds]
    for path in files:
        if not path.exists():
            raise _absent(path)
    return files


def load_pretrained(model: CoreModel, kwargs: dict[str, Any], fold: int, folder: str | Path = PRETRAIN_DIR) -> dict[str, Any]:
    """Copy fold ``fold``'s pretrained encoder into ``model`` (built from ``kwargs``); the checkpoint's metadata.

    Draws no random number: a run that loads continues with the RNG stream it
    would have had. Refuses, with a :class:`UserError` naming the file, a
    missing checkpoint (e.g. ``pretrain.objective: none``) and one pretrained
    with other constructor arguments (the ``train`` params differ).
    """
    path = pretrained_path(fold, folder)
    if not path.exists():
        raise _absent(path)
    ckpt = load_checkpoint(path, "cpu")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or "encoder" not in ckpt:
        raise UserError(f"{path}: not a pretrained encoder of this version; rerun the pretrain stage")
    if ckpt["kwargs"] != kwargs:
        diff = sorted(k for k in set(ckpt["kwargs"]) | set(kwargs) if ckpt["kwargs"].get(k) != kwargs.get(k))
        raise UserError(
            f"{path}: pretrained for another architecture (differs in {', '.join(diff)}); the pretrain stage must run"
            " with the same train params as the core stage: rerun it"
        )
    missing, unexpected = model.load_state_dict(ckpt["encoder"], strict=False)
    encoder_missing = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    if encoder_missing or unexpected:
        raise UserError(f"{path}: does not fit the model (missing {encoder_missing[:3]}, unexpected {unexpected[:3]}); rerun the pretrain stage")
    log.info("fold %d: encoder initialized from %s (%s pretraining)", fold, path, ckpt["objective"])
    return {k: v for k, v in ckpt.items() if k != "encoder"}
