"""Per-chunk inputs and the shared, lazily built series that several families use."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alphagraph.features.rolling import Extremes, Summed, block_size

Emit = Callable[[str, np.ndarray, int], None]
"""emit(name, values (n, Tp), lead): columns < lead are set to null, then written out."""


def _first_diff(x: np.ndarray, ratio: bool = False) -> np.ndarray:
    """x_t - x_{t-1} (or x_t / x_{t-1} - 1) along time; 0 in column 0."""
    out = np.empty_like(x)
    out[:, 0] = 0.0
    if ratio:
        np.divide(x[:, 1:], x[:, :-1], out=out[:, 1:])
        out[:, 1:] -= 1.0
    else:
        np.subtract(x[:, 1:], x[:, :-1], out=out[:, 1:])
    return out


class ChunkData:
    """OHLCV of ``n`` stocks packed along time (``(n, Tp)`` float64) plus cached derived series."""

    def __init__(self, arrays: dict[str, np.ndarray], block: int, max_window: int):
        self.o = arrays["open"]
        self.h = arrays["high"]
        self.l = arrays["low"]
        self.c = arrays["close"]
        self.v = arrays["volume"]
        self.m = arrays.get("mkt_ret")
        self.B = block
        self.max_window = max_window
        self._cache: dict[str, object] = {}
        self._specs: dict[str, tuple[Callable[[], np.ndarray], bool, int, bool]] = {}

    def get(self, key: str, build: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # ---- raw derived series (n, Tp); column 0 of a return/difference is 0, not a value:
    # every feature built on them masks it (lead >= 1) or starts after it
    @property
    def ret(self) -> np.ndarray:
        return self.get("ret", lambda: _first_diff(self.c, ratio=True))

    @property
    def dclose(self) -> np.ndarray:
        return self.get("dclose", lambda: _first_diff(self.c))

    @property
    def dvol(self) -> np.ndarray:
        return self.get("dvol", lambda: _first_diff(self.v))

    # ---- prepared window sums
    def summed(
        self, key: str, build: Callable[[], np.ndarray], center: bool = False, lead: int = 0, finite: bool = False
    ) -> None:
        """Register a series for window sums (built lazily, per block size).

        ``finite``: the series is known to hold no NaN/inf (skips a check).
        """
        if key not in self._specs:
            self._specs[key] = (build, center, lead, finite)

    def block_for(self, d: int, *keys: str) -> int:
        """Block size for windows of ``d`` over ``keys``.

        Centred (level) series use a block of about 4d rows (a power of two), so the
        block centre is a recent value and short windows over a nearly flat stretch
        keep their digits, while few windows straddle two blocks (each straddling
        window costs a correction); the others share the chunk's block (fewer prefix
        sums to build).
        """
        if any(self._specs[k][1] for k in keys):
            return min(block_size(4 * d), self.B)
        return self.B

    def series(self, key: str, d: int | None = None, block: int | None = None) -> Summed:
        """A registered series prepared for windows of ``d`` (or for an explicit block size)."""
        B = block or (self.block_for(d, key) if d is not None else self.B)

        def build() -> Summed:
            make, center, lead, finite = self._specs[key]
            raw = self.get("X:" + key, make)
            return Summed(raw, B, center=center, lead=lead, finite=finite)

        return self.get(f"S:{key}:{B}", build)

    def pair(self, a: str, b: str, d: int) -> tuple[Summed, Summed, Summed]:
        """(X, Y, XY) for windows of ``d``: both series and their product on one block size."""
        B = self.block_for(d, a, b)
        X, Y = self.series(a, block=B), self.series(b, block=B)
        XY = self.get(f"P:{a}*{b}:{B}", lambda: Summed.product(X, Y))
        return X, Y, XY

    def extremes(self, key: str, kind: str) -> Extremes:
        src = self.h if key == "high" else self.l
        return self.get(f"E:{key}", lambda: Extremes(src, self.max_window, kind))

    @staticmethod
    def centers(s: Summed) -> np.ndarray | float:
        """Block centre of every column as an ``(n, Tp)`` array (0.0 when not centred)."""
        if s.c is None:
            return 0.0
        return np.repeat(s.c, s.B, axis=1)

    def drop(self, *keys: str) -> None:
        """Free everything cached for the named series (and products and moments using them)."""
        def uses(k: str) -> bool:
            name = k.split(":", 1)[1] if ":" in k else k
            parts = name.split(":")[0].split("*")
            return any(p in keys for p in parts)

        for k in [k for k in self._cache if uses(k)]:
            del self._cache[k]
