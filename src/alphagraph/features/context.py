"""Per-chunk inputs and the shared, lazily built series that several families use."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from alphagraph.features.rolling import Extremes, Summed, lag

Emit = Callable[[str, np.ndarray, int], None]
"""emit(name, values (n, Tp), lead): columns < lead are set to null, then written out."""


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

    def get(self, key: str, build: Callable[[], object]):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # ---- raw derived series (n, Tp); column 0 of a return/difference is NaN
    @property
    def ret(self) -> np.ndarray:
        return self.get("ret", lambda: self.c / lag(self.c, 1) - 1.0)

    @property
    def dclose(self) -> np.ndarray:
        return self.get("dclose", lambda: self.c - lag(self.c, 1))

    @property
    def dvol(self) -> np.ndarray:
        return self.get("dvol", lambda: self.v - lag(self.v, 1))

    # ---- prepared window sums
    def summed(self, key: str, build: Callable[[], np.ndarray], center: bool = False, lead: int = 0) -> Summed:
        return self.get("S:" + key, lambda: Summed(build(), self.B, center=center, lead=lead))

    def series(self, key: str) -> Summed:
        """A series prepared earlier with :meth:`summed`."""
        return self._cache["S:" + key]

    def product(self, a: str, b: str) -> Summed:
        return self.get(f"P:{a}*{b}", lambda: Summed.product(self._cache["S:" + a], self._cache["S:" + b]))

    def extremes(self, key: str, kind: str) -> Extremes:
        src = self.h if key == "high" else self.l
        return self.get(f"E:{key}", lambda: Extremes(src, self.max_window, kind))

    def centers(self, s: Summed) -> np.ndarray | float:
        """Block centre of every column as an ``(n, Tp)`` array (0.0 when not centred)."""
        if s.c is None:
            return 0.0
        return np.repeat(s.c, self.B, axis=1)

    def drop(self, *prefixes: str) -> None:
        """Free cached series whose key starts with any of ``prefixes``."""
        for k in [k for k in self._cache if k.startswith(prefixes)]:
            del self._cache[k]
