"""Frequency adaptive normalization (FAN, Ye et al., NeurIPS 2024) of a stock's feature window.

FAN treats the few dominant frequency components of a window as its
non-stationary part: per window and feature, the rFFT over the window's
traded days, the ``top_k`` frequencies of largest amplitude kept, and their
inverse FFT (the *dominant part*) subtracted. The encoder sees the residual.

Masked days (not yet listed, suspended) are not days of the series: the
traded days are moved to the end of the window in their order (as the LSTM
encoder steps over traded days only) and a window with n traded days gets an
n-point rFFT, so whatever a masked day holds, and how many there are, does
not move the result. Windows are grouped by n: at most ``seq_len`` FFT calls.
At most ``n // 2`` components are removed from an n-day window (an n-point
rFFT has ``n // 2 + 1`` frequencies; one always stays in the residual, so a
short window is never wiped out entirely; a one-day window keeps its value).

"Add them back": FAN forecasts the dominant part's future with an MLP and
adds it to the forecast of the residual model. Here the target is a
cross-sectional return rank, not the input series, so there is nothing to add
it to; instead the same kind of MLP (shared over features) reads each
feature's dominant part over the window (traded days right-aligned, zeros
before) and outputs its next value, and a linear map takes those [F] values
into the embedding (:attr:`FrequencyAdaptiveNorm.back`), where the temporal
encoder adds them to its gated window summary. The information removed from
the encoder's input is therefore not lost. There is no auxiliary loss on the
forecast (the batch holds no future inputs): it is trained end to end.
"""

from __future__ import annotations

import torch
from torch import nn


def dominant_part(x: torch.Tensor, mask: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(dominant part [N, L, F] in window positions, the same right-aligned over traded days [N, L, F]).

    ``x`` [N, L, F], ``mask`` [N, L] (True = traded day). Both outputs are 0 on
    masked (resp. padding) positions; the second puts a window's n traded days
    in the last n positions, in their order.
    """
    n_rows, length, n_feat = x.shape
    x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    # Stable sort of the mask: masked days first, traded days last, in their order.
    order = torch.sort(mask.to(torch.int8), dim=1, stable=True).indices[..., None].expand(-1, -1, n_feat)
    compact = torch.gather(x, 1, order)
    dom = torch.zeros_like(compact)
    valid = mask.sum(1)
    for n in valid.unique().tolist():  # one rFFT per window length: at most L calls
        k = min(top_k, n // 2)
        if k < 1:
            continue  # nothing to remove (a one-day window): the dominant part stays 0
        rows = torch.nonzero(valid == n).flatten()
        seg = compact[rows, length - n:]  # [r, n, F]
        spec = torch.fft.rfft(seg, dim=1)  # [r, n // 2 + 1, F]
        top = spec.abs().topk(k, dim=1).indices
        keep = torch.zeros(spec.shape, dtype=torch.bool, device=x.device).scatter_(1, top, True)
        dom[rows, length - n:] = torch.fft.irfft(torch.where(keep, spec, torch.zeros_like(spec)), n=n, dim=1)
    # Back to window positions: the inverse of the gather (a permutation per row).
    return torch.zeros_like(dom).scatter_(1, order, dom), dom


class FrequencyAdaptiveNorm(nn.Module):
    """Window [N, L, F] -> (residual [N, L, F] for the encoder, dominant part's forecast embedded [N, hidden])."""

    def __init__(self, n_features: int, seq_len: int, hidden: int, top_k: int = 3, width: int = 16) -> None:
        super().__init__()
        if top_k < 1:
            raise ValueError(f"train.fan_top_k must be >= 1, got {top_k}")
        self.top_k = top_k
        # FAN's MLP over the dominant part, shared by the features: window -> its next value.
        self.predict = nn.Sequential(nn.Linear(seq_len, width), nn.GELU(), nn.Linear(width, 1))
        self.back = nn.Linear(n_features, hidden)
        self.last_dominant: torch.Tensor | None = None  # [N, L, F] of the last forward pass (tests, plots)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dom, compact = dominant_part(x, mask, self.top_k)
        self.last_dominant = dom.detach()
        residual = torch.where(mask[..., None], x - dom, torch.zeros((), dtype=x.dtype, device=x.device))
        future = self.predict(compact.transpose(1, 2)).squeeze(-1)  # [N, F]
        return residual, self.back(future)
