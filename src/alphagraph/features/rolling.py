"""Vectorized rolling-window kernels on a chunk of stocks.

A chunk holds ``n`` stocks as rows of ``(n, Tp)`` float64 arrays, each stock's
own trading days packed from column 0 (position within the stock = column;
gaps such as suspensions are skipped, so a window of ``d`` is the stock's last
``d`` rows). Columns past a stock's last row are padding (its last value): they
never enter a window that ends on a real row, because windows look backwards.

Every kernel works along the time axis of one row and never mixes stocks, so a
value at position ``p`` depends only on that stock's rows ``<= p`` - bit for
bit, whatever else is in the panel (the leakage tests check exact equality).

Window sums (means, variances, covariances, regressions on time, in closed
form) use *blockwise* prefix sums: time is cut into blocks of ``B >= d``
columns (a power of two); within a block the prefix sums run over ``x - c_b``
where ``c_b`` is the block's first value, and a window that straddles two blocks
adds the tail of the previous block, re-centred (exact algebra, see :func:`s1`,
:func:`s2`, :func:`sk`). One cumulative sum over a stock's whole history would
lose digits to catastrophic cancellation on long, drifting price series; here
the summed magnitudes stay local (B rows, centred on a recent price; level
series get the smallest block that holds the window), so the results match a
two-pass computation to ~1e-10 relative even over nearly flat stretches.

Order statistics: rolling max/min and their positions by doubling
(:class:`Extremes`), rolling rank by lagged comparisons, rolling quantiles by
sorting the windows (a vectorized sorting network for short windows).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter


def block_size(max_window: int) -> int:
    """Smallest power of two >= ``max_window`` (and >= 8)."""
    b = 8
    while b < max_window:
        b *= 2
    return b


def padded_length(t: int, block: int) -> int:
    return max(1, -(-t // block)) * block


class Summed:
    """A series prepared for window sums: blockwise prefix sums of ``x - c_b``.

    ``x`` is ``(n, Tp)`` with ``Tp`` a multiple of ``B``. ``center`` re-centres
    every block on its first value (use it for level series such as prices;
    returns and differences need none). ``lead`` leading columns are not real
    values (e.g. the first return of a stock): they are replaced by 0 and the
    caller masks the windows that contain them. Non-finite values after the lead
    are replaced by 0 and counted, and any window containing one is NaN.
    """

    __slots__ = ("B", "xc", "c", "delta", "P", "bad", "_q", "_pj", "_qj")

    def __init__(self, x: np.ndarray, B: int, center: bool = False, lead: int = 0, finite: bool = False):
        n, tp = x.shape
        nb = tp // B
        self.bad = None
        if not finite:  # (``finite``: the caller knows x holds no NaN/inf, lead columns included)
            ok = np.isfinite(x)
            if lead:
                ok[:, :lead] = True
            if not ok.all():
                x = np.where(ok, x, 0.0)
                self.bad = Summed((~ok).astype(np.float64), B, finite=True)
            if lead and not np.isfinite(x[:, :lead]).all():
                x = np.array(x, copy=True)
                x[:, :lead] = 0.0
        # lead columns keep whatever finite value they hold: windows containing them are
        # masked by the caller, and the others difference them out
        x3 = x.reshape(n, nb, B)
        if center:
            self.c = x3[:, :, 0].copy()
            x3 = x3 - self.c[:, :, None]
            self.delta = self.c[:, :-1] - self.c[:, 1:]
        else:
            self.c = None
            self.delta = None
        self.B = B
        self.xc = x3
        self.P = np.cumsum(x3, axis=2)
        self._q: dict[int, np.ndarray] = {}
        self._pj = None
        self._qj: dict[int, np.ndarray] = {}

    @classmethod
    def product(cls, a: "Summed", b: "Summed") -> "Summed":
        """Prefix sums of ``(x - cx_b) * (y - cy_b)`` (for :func:`s2`)."""
        n, nb, B = a.xc.shape
        out = cls.__new__(cls)
        out.B = B
        out.xc = a.xc * b.xc
        out.c = out.delta = None
        out.P = np.cumsum(out.xc, axis=2)
        out.bad = None
        out._q = {}
        out._pj = None
        out._qj = {}
        return out

    def q(self, d: int) -> np.ndarray:
        """Sum over the previous block's last ``d-1-u`` columns, for u = 0..d-2."""
        if d not in self._q:
            P, B = self.P, self.B
            self._q[d] = P[:, :-1, B - 1 : B] - P[:, :-1, B - d : B - 1]
        return self._q[d]

    @property
    def pj(self) -> np.ndarray:
        """Prefix sums of ``j * (x - c_b)``, ``j`` the column within the block."""
        if self._pj is None:
            j = np.arange(self.B, dtype=np.float64)
            self._pj = np.cumsum(self.xc * j, axis=2)
        return self._pj

    def qj(self, d: int) -> np.ndarray:
        if d not in self._qj:
            P, B = self.pj, self.B
            self._qj[d] = P[:, :-1, B - 1 : B] - P[:, :-1, B - d : B - 1]
        return self._qj[d]

    def center_row(self) -> np.ndarray | float:
        """The block centre of every column, broadcastable to ``(n, nb, B)``."""
        return 0.0 if self.c is None else self.c[:, :, None]


def _n1(d: int) -> np.ndarray:
    """Rows of the window that lie in the previous block, for u = 0..d-2."""
    return np.arange(d - 1, 0, -1, dtype=np.float64)


def _window(P: np.ndarray, d: int) -> np.ndarray:
    """Window sums that lie inside the current block (full windows for u >= d-1)."""
    B = P.shape[2]
    W = np.empty_like(P)
    np.subtract(P[:, :, d:], P[:, :, : B - d], out=W[:, :, d:])
    W[:, :, :d] = P[:, :, :d]
    return W


def _mark_bad(W: np.ndarray, *series: Summed, d: int) -> np.ndarray:
    for s in series:
        if s.bad is not None:
            W[s1(s.bad, d) > 0.5] = np.nan
    return W


def s1(X: Summed, d: int) -> np.ndarray:
    """Sum over the window ``[i-d+1, i]`` of ``x - c_b(i)`` (c_b(i): centre of i's block)."""
    W = _window(X.P, d)
    if W.shape[1] > 1 and d > 1:
        cross = W[:, 1:, : d - 1]
        cross += X.q(d)
        if X.delta is not None:
            cross += X.delta[:, :, None] * _n1(d)
    return _mark_bad(W, X, d=d)


def s2(XY: Summed, X: Summed, Y: Summed, d: int) -> np.ndarray:
    """Sum over the window of ``(x - cx_b(i)) * (y - cy_b(i))``; ``XY = Summed.product(X, Y)``."""
    W = _window(XY.P, d)
    if W.shape[1] > 1 and d > 1:
        cross = W[:, 1:, : d - 1]
        cross += XY.q(d)
        n1 = _n1(d)
        dx = None if X.delta is None else X.delta[:, :, None]
        dy = None if Y.delta is None else Y.delta[:, :, None]
        if dx is not None:
            cross += dx * Y.q(d)
        if dy is not None:
            cross += dy * X.q(d)
        if dx is not None and dy is not None:
            cross += n1 * dx * dy
    return _mark_bad(W, X, Y, d=d)


def sk(X: Summed, d: int) -> np.ndarray:
    """Sum over the window of ``k * (x - c_b(i))``, ``k = 0..d-1`` from the oldest row."""
    P, PJ = X.P, X.pj
    B = P.shape[2]
    W = np.empty_like(P)
    W[:, :, d:] = (PJ[:, :, d:] - PJ[:, :, : B - d]) - np.arange(1, B - d + 1, dtype=np.float64) * (
        P[:, :, d:] - P[:, :, : B - d]
    )
    W[:, :, d - 1] = PJ[:, :, d - 1]
    if d > 1:
        n1 = _n1(d)
        W[:, :, : d - 1] = PJ[:, :, : d - 1] + n1 * P[:, :, : d - 1]
        if W.shape[1] > 1:
            part1 = X.qj(d) - (B - n1) * X.q(d)
            if X.delta is not None:
                part1 += X.delta[:, :, None] * (n1 * (n1 - 1) / 2)
            W[:, 1:, : d - 1] += part1
    return _mark_bad(W, X, d=d)


def flat(a3: np.ndarray) -> np.ndarray:
    """(n, nb, B) -> (n, Tp) view."""
    return a3.reshape(a3.shape[0], -1)


# ------------------------------------------------------------------ order statistics


class Extremes:
    """Rolling max (or min) with the index of its first occurrence, by doubling.

    Level k holds the max over ``[i - 2^k + 1, i]`` and where it first occurs;
    a window of ``d`` is the union of two overlapping power-of-two windows.
    O(n log d) elementwise work, exact (no arithmetic on values).
    """

    def __init__(self, x: np.ndarray, max_window: int, kind: str = "max"):
        self.better = np.greater_equal if kind == "max" else np.less_equal  # ties -> earlier row
        self.pick = np.maximum if kind == "max" else np.minimum
        n, tp = x.shape
        idx = np.broadcast_to(np.arange(tp, dtype=np.int32), (n, tp))
        self.levels = [(x, idx)]
        step = 1
        while 2 * step <= max_window:
            m, i = self.levels[-1]
            m2 = np.empty_like(m)
            i2 = np.empty((n, tp), dtype=np.int32)
            m2[:, :step] = m[:, :step]  # (windows not full yet: never used)
            i2[:, :step] = i[:, :step]
            left_m, right_m = m[:, :-step], m[:, step:]
            take_left = self.better(left_m, right_m)
            self.pick(left_m, right_m, out=m2[:, step:])
            np.copyto(i2[:, step:], np.where(take_left, i[:, :-step], i[:, step:]))
            self.levels.append((m2, i2))
            step *= 2

    def query(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """(value, position of the first extreme counted from the window's oldest row, 0-based)."""
        k = d.bit_length() - 1
        L = 1 << k
        m, i = self.levels[k]
        n, tp = m.shape
        val = np.full((n, tp), np.nan)
        pos = np.full((n, tp), np.nan)
        s = d - L  # the left half starts s rows earlier
        if tp >= d:
            right_m, right_i = m[:, d - 1 :], i[:, d - 1 :]
            left_m, left_i = m[:, d - 1 - s : tp - s], i[:, d - 1 - s : tp - s]
            take_left = self.better(left_m, right_m)
            val[:, d - 1 :] = self.pick(left_m, right_m)
            first = np.where(take_left, left_i, right_i)
            pos[:, d - 1 :] = first - np.arange(0, tp - d + 1, dtype=np.int32)
        return val, pos


def rolling_rank(x: np.ndarray, windows: list[int]) -> dict[int, np.ndarray]:
    """Percentile rank of the last value in its window (pandas ``rank(pct=True)``, average ties).

    rank = (#{< x_i} + #{<= x_i} + 1) / (2d) = (#{x_j < x_i} - #{x_j > x_i} + d + 1) / (2d) over the
    window's other rows j, accumulated lag by lag (k = 1..max(d)-1) in small integers.
    """
    n, tp = x.shape
    acc = np.zeros((n, tp), dtype=np.int16)
    gt = np.empty((n, tp), dtype=bool)
    lt = np.empty((n, tp), dtype=bool)
    out: dict[int, np.ndarray] = {}
    want = sorted(set(windows))
    for k in range(1, max(want)):
        if k < tp:
            g, l_ = gt[:, k:], lt[:, k:]
            np.greater(x[:, k:], x[:, :-k], out=g)
            np.less(x[:, k:], x[:, :-k], out=l_)
            a = acc[:, k:]
            np.add(a, g, out=a)
            np.subtract(a, l_, out=a)
        if k + 1 in want:
            d = k + 1
            out[d] = (acc + (d + 1.0)) / (2.0 * d)
    if 1 in want:
        out[1] = np.ones((n, tp))
    return out


def oddeven_merge_network(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sorting network for n inputs (comparators (i, j), i < j).

    Built for the next power of two; comparators that touch the padding (+inf at the
    top) are dropped, which leaves a valid network for n (tests check it with the
    0-1 principle).
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        a, b = i + j, i + j + k
                        if b < n:
                            pairs.append((a, b))
            k //= 2
        p *= 2
    return pairs


NETWORK_MAX = 12  # windows up to this size are sorted by a vectorized network, larger ones by np.sort


@lru_cache(maxsize=None)
def selection_network(n: int, wires: tuple[int, ...]) -> tuple[tuple[int, int, bool, bool], ...]:
    """The comparators of :func:`oddeven_merge_network` that the sorted outputs ``wires`` depend on.

    Each as ``(i, j, min_needed, max_needed)``: a comparator none of whose outputs reaches a
    wanted wire is dropped, and of one whose min (or max) output is never read only the
    other is computed. The wanted wires get exactly the values of the full network.
    """
    needed = set(wires)
    kept = []
    for a, b in reversed(oddeven_merge_network(n)):
        lo, hi = a in needed, b in needed
        if lo or hi:
            kept.append((a, b, lo, hi))
            needed |= {a, b}
    return tuple(reversed(kept))


def rolling_quantiles(x: np.ndarray, d: int, quantiles: list[float], rows_per_step: int = 1) -> list[np.ndarray]:
    """Rolling quantiles with linear interpolation (pandas ``rolling(d).quantile(q)``).

    Windows up to :data:`NETWORK_MAX` go through the comparators of a sorting network that
    the wanted ranks depend on; longer ones are sorted ``rows_per_step`` stocks at a time
    (one stock's windows stay in cache: faster than more at once).
    """
    n, tp = x.shape
    outs = [np.full((n, tp), np.nan) for _ in quantiles]
    if tp < d:
        return outs
    spec = []
    for q in quantiles:
        f = q * (d - 1)
        lo = int(f)
        spec.append((lo, min(lo + 1, d - 1), f - lo))
    if d <= NETWORK_MAX:
        m = tp - d + 1
        v = [x[:, j : j + m] for j in range(d)]  # v[j]: the window's j-th oldest value (views)
        wires = tuple(sorted({r for lo, hi, _ in spec for r in (lo, hi)}))
        for a, b, want_min, want_max in selection_network(d, wires):
            small = np.minimum(v[a], v[b]) if want_min else v[a]
            if want_max:
                v[b] = np.maximum(v[a], v[b])
            v[a] = small
        for out, (lo, hi, frac) in zip(outs, spec):
            out[:, d - 1 :] = v[lo] if frac == 0.0 else v[lo] + (v[hi] - v[lo]) * frac
        return outs
    win = sliding_window_view(x, d, axis=1)
    for a in range(0, n, rows_per_step):
        srt = np.sort(win[a : a + rows_per_step], axis=-1)
        for out, (lo, hi, frac) in zip(outs, spec):
            vlo = srt[..., lo]
            if frac == 0.0:
                out[a : a + rows_per_step, d - 1 :] = vlo
            else:
                out[a : a + rows_per_step, d - 1 :] = vlo + (srt[..., hi] - vlo) * frac
    return outs


# ---------------------------------------------------------------------- smoothing


def ema(x: np.ndarray, alpha: float, start: int = 0) -> np.ndarray:
    """Exponential moving average, ``adjust=False`` (y_s = x_s; y = a x + (1-a) y_prev).

    Starts at column ``start`` (columns before it are NaN). Equivalent to
    pandas ``ewm(alpha=alpha, adjust=False).mean()`` from the first valid value.
    """
    n, tp = x.shape
    out = np.full((n, tp), np.nan)
    if tp <= start:
        return out
    seg = x[:, start:]
    zi = ((1.0 - alpha) * seg[:, 0])[:, None]
    out[:, start:] = lfilter([alpha], [1.0, alpha - 1.0], seg, axis=1, zi=zi)[0]
    return out


def lag(x: np.ndarray, k: int, fill: float = np.nan) -> np.ndarray:
    """Value ``k`` rows earlier in the same stock."""
    out = np.empty_like(x)
    out[:, :k] = fill
    out[:, k:] = x[:, :-k] if k else x
    return out
