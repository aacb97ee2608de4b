"""Multi-task losses on node outputs, masked per node and per label.

A model returns a dict of node outputs; :class:`MultiHorizonLoss` reads
``out["reg"]`` [N, H] (regression per horizon) and, when present,
``out["dir_logit"]`` [N, H] (one up-logit per horizon). ``mask`` [N] selects
the nodes that count (the training split's nodes); a node whose label is
null (NaN) is masked for that horizon only.

    total = sum_h w_h * MSE_h / sum_h w_h
          + dir_weight  * sum_h w_h * BCE_h / sum_h w_h      (BCE with pos_weight_h)
          + rank_weight * sum_h w_h * (1 - mean daily corr_h) / sum_h w_h
          + sig_weight  * sum_h w_h * BCE(signal)_h / sum_h w_h   (hierarchical heads, optional)

The daily-corr term is Pearson (``rank="pearson"``) or a differentiable
Spearman (``rank="soft"``: soft ranks of the predictions against the exact
ranks of the labels, :func:`soft_rank_corr`). With hierarchical heads
(``out["sig_logit"]`` and ``batch.y_sig``), the signal head is trained on all
nodes and the direction head only where the signal label is 1.

Optional per-node batch attributes (set by :class:`~alphagraph.train.core_data.CoreDayData`
when a switch is on; absent, the loss is exactly the formula above):

- ``batch.y_loss`` [N, H]: the MSE and daily-corr terms train on it instead of
  ``batch.y`` (residual targets, :mod:`alphagraph.features.residual`); the classification
  terms keep ``y_dir`` / ``y_sig``.
- ``batch.loss_weight`` [N]: every term weighs node i's loss by ``w_i`` (a date's
  regime weight, :mod:`alphagraph.evaluation.regimes`, the same for all nodes of a day):
  ``MSE_h = sum_i w_i (p_i - y_i)^2 / n_h``, the BCEs alike, and the rank term
  ``sum_d w_d (1 - corr_d,h) / n_days,h``. Normalized by counts, not by the sum of
  weights, so a batch of heavily weighted days moves the model more (weights
  average 1 over the training dates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alphagraph.train.data import ClassBalance


def _valid(mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[N, H] bool: node in mask and label present."""
    return mask[:, None] & torch.isfinite(target)


def masked_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-horizon mean squared error over valid entries (each weighted by ``weight`` [N] when given), and the counts."""
    valid = _valid(mask, target)
    diff = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    count = valid.sum(0)
    sq = diff.pow(2)
    if weight is not None:
        sq = sq * weight[:, None]
    return sq.sum(0) / count.clamp_min(1), count


def masked_bce(
    logit: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-horizon class-weighted binary cross-entropy over valid entries (node weights ``weight`` [N]), and the counts."""
    valid = _valid(mask, target)
    loss = F.binary_cross_entropy_with_logits(
        logit, torch.nan_to_num(target).clamp(0, 1), pos_weight=pos_weight, reduction="none"
    )
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if weight is not None:
        loss = loss * weight[:, None]
    count = valid.sum(0)
    return loss.sum(0) / count.clamp_min(1), count


def daily_corr(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, day: torch.Tensor, n_days: int, min_nodes: int = 3
) -> torch.Tensor:
    """Per-horizon mean over days of the cross-sectional Pearson correlation (differentiable).

    ``day`` [N] is each node's day in the batch (PyG ``batch.batch``). Days with
    fewer than ``min_nodes`` valid nodes are skipped; a horizon with no usable
    day gives 0.
    """
    corr, use = daily_corr_days(pred, target, mask, day, n_days, min_nodes)
    return (corr * use).sum(0) / use.sum(0).clamp_min(1)


def daily_corr_days(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, day: torch.Tensor, n_days: int, min_nodes: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """[n_days, H] Pearson correlation per day and horizon, and [n_days, H] 1/0 whether the day counts (:func:`daily_corr`)."""
    valid = _valid(mask, target).to(pred.dtype)
    y = torch.nan_to_num(target) * valid
    p = pred * valid
    h = pred.shape[1]

    def per_day(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n_days, h, dtype=v.dtype, device=v.device).index_add_(0, day, v)

    n = per_day(valid)
    mp = per_day(p) / n.clamp_min(1)
    my = per_day(y) / n.clamp_min(1)
    dp = (pred - mp[day]) * valid
    dy = (y - my[day]) * valid
    cov = per_day(dp * dy)
    var = per_day(dp * dp) * per_day(dy * dy)
    corr = cov / torch.sqrt(var + 1e-12)
    return corr, (n >= min_nodes).to(pred.dtype)


def soft_rank_corr(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, day: torch.Tensor, tau: float = 0.1, min_nodes: int = 3
) -> torch.Tensor:
    """Per-horizon mean daily Spearman correlation with soft ranks of ``pred`` (differentiable).

    Per day, predictions are standardized and ranked softly,
    ``r_i = sum_j sigmoid((p_i - p_j) / tau)`` over the day's valid nodes;
    labels are ranked exactly. ``day`` must be sorted (PyG batches are).
    O(n^2) time per day; the pair matrices are never all held at once (:class:`SoftRank`).
    """
    corr, use = soft_rank_corr_days(pred, target, mask, day, tau, min_nodes)
    return (corr * use).sum(0) / use.sum(0).clamp_min(1)


def soft_rank_corr_days(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, day: torch.Tensor, tau: float = 0.1, min_nodes: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """[D, H] soft Spearman correlation per day (D = ``day.max() + 1``) and [D, H] 1/0 whether the day counts."""
    from torch_geometric.utils import to_dense_batch

    valid = _valid(mask, target)
    p, node_ok = to_dense_batch(pred, day)  # [D, n, H]
    y, _ = to_dense_batch(torch.nan_to_num(target), day)
    v, _ = to_dense_batch(valid, day, fill_value=False)
    vf = v.to(pred.dtype)
    n = vf.sum(1, keepdim=True)  # [D, 1, H]
    mean = (p * vf).sum(1, keepdim=True) / n.clamp_min(1)
    std = (((p - mean) * vf).pow(2).sum(1, keepdim=True) / n.clamp_min(1)).add(1e-8).sqrt()
    z = (p - mean) / std
    d, m, h = z.shape
    rows = lambda t: t.permute(0, 2, 1).reshape(d * h, m)  # noqa: E731  [D, n, H] -> [D H, n]
    soft = SoftRank.apply(rows(z), rows(vf), tau).view(d, h, m).permute(0, 2, 1)
    with torch.no_grad():
        yk = torch.where(v, y, torch.full_like(y, float("inf")))
        exact = yk.argsort(1).argsort(1).to(pred.dtype)  # 0-based ranks, valid nodes first
    a = (soft - (soft * vf).sum(1, keepdim=True) / n.clamp_min(1)) * vf
    b = (exact - (exact * vf).sum(1, keepdim=True) / n.clamp_min(1)) * vf
    corr = (a * b).sum(1) / torch.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-12)  # [D, H]
    return corr, (n.squeeze(1) >= min_nodes).to(pred.dtype)


PAIR_BUDGET = 1 << 20  # pair-matrix elements held at once by SoftRank (4 MB in float32)


class SoftRank(torch.autograd.Function):
    """Soft ranks ``r_i = sum_j sigmoid((z_i - z_j) / tau) v_j`` of each row of ``z`` [B, n] (``v`` [B, n] the
    weights, 1 on valid nodes, 0 elsewhere).

    The [n, n] pair matrices are built a few rows at a time (at most :data:`PAIR_BUDGET` elements) and
    rebuilt in the backward pass rather than kept, so memory is O(n^2), not O(B n^2), and autograd
    does not walk the [B, n, n] graph: with ``s' = s (1 - s)`` (symmetric in i, j),
    ``dL/dz_k = (g_k sum_j s'_kj v_j - v_k sum_i s'_ki g_i) / tau`` for ``g = dL/dr``.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)  # sums of ~n sigmoids: never in bf16
    def forward(ctx: Any, z: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
        ctx.save_for_backward(z, v)
        ctx.tau = tau
        out = torch.empty_like(z)
        for rows in _pair_chunks(z):
            out[rows] = (_pairs(z[rows], tau) @ v[rows, :, None]).squeeze(-1)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        z, v = ctx.saved_tensors
        grad = torch.empty_like(z)
        for rows in _pair_chunks(z):
            s = _pairs(z[rows], ctx.tau)
            s.sub_(s * s)  # s (1 - s)
            sums = s @ torch.stack([v[rows], g[rows]], dim=2)  # [b, n, 2]
            grad[rows] = (g[rows] * sums[..., 0] - v[rows] * sums[..., 1]) / ctx.tau
        return grad, None, None


def _pairs(z: torch.Tensor, tau: float) -> torch.Tensor:
    z = z / tau
    return (z[:, :, None] - z[:, None, :]).sigmoid_()


def _pair_chunks(z: torch.Tensor) -> list[slice]:
    step = max(1, PAIR_BUDGET // max(1, z.size(1) ** 2))
    return [slice(i, i + step) for i in range(0, z.size(0), step)]


class MultiHorizonLoss:
    """Weighted masked MSE per horizon + class-weighted direction BCE (+ optional daily-corr term).

    ``pos_weight`` (per horizon) is usually ``negatives / positives`` of the
    training rows the direction head is trained on: :meth:`from_balance` with
    the data's ``class_balance`` (all rows; only ``sig_{h}d == 1`` rows when
    the heads are hierarchical, :meth:`CoreDayData.class_balance
    <alphagraph.train.core_data.CoreDayData.class_balance>`).
    ``sig_pos_weight`` is the signal head's, over all training rows
    (``signal_balance``).
    """

    def __init__(
        self,
        horizon_weights: Sequence[float],
        dir_weight: float = 0.0,
        pos_weight: Sequence[float] | np.ndarray | None = None,
        rank_weight: float = 0.0,
        reg_key: str = "reg",
        dir_key: str = "dir_logit",
        rank: str = "pearson",
        sig_weight: float = 0.0,
        sig_pos_weight: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        w = torch.as_tensor(list(horizon_weights), dtype=torch.float32)
        if w.numel() == 0 or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"horizon_weights must be non-negative with a positive sum, got {list(horizon_weights)}")
        self.weights = w / w.sum()
        self.dir_weight = float(dir_weight)
        self.rank_weight = float(rank_weight)
        self.pos_weight = None if pos_weight is None else torch.as_tensor(np.asarray(pos_weight), dtype=torch.float32)
        self.reg_key, self.dir_key = reg_key, dir_key
        if rank not in ("pearson", "soft"):
            raise ValueError(f"rank must be 'pearson' or 'soft', got {rank!r}")
        self.rank = rank
        self.sig_weight = float(sig_weight)
        self.sig_pos_weight = None if sig_pos_weight is None else torch.as_tensor(np.asarray(sig_pos_weight), dtype=torch.float32)

    @classmethod
    def from_balance(
        cls, horizon_weights: Sequence[float], balance: ClassBalance | None, dir_weight: float, **kw: Any
    ) -> MultiHorizonLoss:
        pos_weight = None if balance is None else balance.pos_weight()
        return cls(horizon_weights, dir_weight=dir_weight if balance is not None else 0.0, pos_weight=pos_weight, **kw)

    def __call__(
        self, out: Mapping[str, torch.Tensor], batch: Any, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(total loss, parts as floats) over the nodes in ``mask``."""
        pred = out[self.reg_key].float()
        y_loss = getattr(batch, "y_loss", None)  # residual targets, when train.target is not raw
        y = (batch.y if y_loss is None else y_loss).to(pred.device, torch.float32)
        node_w = getattr(batch, "loss_weight", None)  # regime weights, when on
        node_w = None if node_w is None else node_w.to(pred.device, torch.float32)
        w = self.weights.to(pred.device)
        mse, _ = masked_mse(pred, y, mask, node_w)
        total = (w * mse).sum()
        parts = {"mse": float(total.detach())}
        y_dir = getattr(batch, "y_dir", None)
        y_sig = getattr(batch, "y_sig", None)
        hierarchical = self.sig_weight > 0 and y_sig is not None and "sig_logit" in out
        if hierarchical:
            y_sig = y_sig.to(pred.device, torch.float32)
            pw = None if self.sig_pos_weight is None else self.sig_pos_weight.to(pred.device)
            sig, _ = masked_bce(out["sig_logit"].float(), y_sig, mask, pw, node_w)
            sig = (w * sig).sum()
            total = total + self.sig_weight * sig
            parts["sig_bce"] = float(sig.detach())
        if self.dir_weight > 0 and y_dir is not None and self.dir_key in out:
            pw = None if self.pos_weight is None else self.pos_weight.to(pred.device)
            y_dir = y_dir.to(pred.device, torch.float32)
            if hierarchical:  # direction is learned only where there is a signal
                y_dir = torch.where(y_sig == 1, y_dir, torch.full_like(y_dir, float("nan")))
            bce, _ = masked_bce(out[self.dir_key].float(), y_dir, mask, pw, node_w)
            bce = (w * bce).sum()
            total = total + self.dir_weight * bce
            parts["bce"] = float(bce.detach())
        if self.rank_weight > 0:
            if node_w is not None:
                rank = (w * self._weighted_rank(pred, y, mask, batch, node_w)).sum()
            else:
                if self.rank == "soft":
                    corr = soft_rank_corr(pred, y, mask, batch.batch)
                else:
                    corr = daily_corr(pred, y, mask, batch.batch, int(batch.num_graphs))
                rank = (w * (1 - corr)).sum()
            total = total + self.rank_weight * rank
            parts["corr"] = float(1 - rank.detach())
        parts["loss"] = float(total.detach())
        return total, parts

    def _weighted_rank(
        self, pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, batch: Any, node_w: torch.Tensor
    ) -> torch.Tensor:
        """[H]: ``sum_d w_d (1 - corr_d) / n_days`` over the days that count, ``w_d`` the day's node weight."""
        day = batch.batch.to(pred.device)
        if self.rank == "soft":
            corr, use = soft_rank_corr_days(pred, y, mask, day)
        else:
            corr, use = daily_corr_days(pred, y, mask, day, int(batch.num_graphs))
        # All nodes of a day share its weight: read it at the day's first node (``day`` is sorted; a day
        # without nodes reads a neighbour's weight, but does not count: ``use`` is 0 there).
        first = torch.searchsorted(day, torch.arange(corr.size(0), device=day.device)).clamp_max(day.numel() - 1)
        w_day = node_w[first]
        return (w_day[:, None] * use * (1 - corr)).sum(0) / use.sum(0).clamp_min(1)
