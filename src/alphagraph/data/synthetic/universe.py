"""Who trades when: the trading calendar, the stocks with their sectors and industries, listings and suspensions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphagraph.data.synthetic.streams import _rng
from alphagraph.runtime.config import SyntheticConfig


# Holidays as (month, day, moves): fixed ones keep their date every year, moving
# ones shift by a few days from year to year (like Easter or Thanksgiving).
_HOLIDAY_ANCHORS: tuple[tuple[int, int, bool], ...] = (
    (1, 1, False),
    (12, 25, False),
    (7, 4, False),
    (1, 18, True),
    (2, 17, True),
    (4, 5, True),
    (5, 27, True),
    (9, 4, True),
    (11, 25, True),
    (6, 19, False),
    (10, 12, True),
    (11, 11, False),
)


@dataclass(frozen=True)
class _Universe:
    codes: list[str]
    sector: np.ndarray  # int, per stock
    industry: np.ndarray  # int, global industry id per stock
    n_sectors: int
    n_industries: int
    listed: np.ndarray  # first trading-day index
    last: np.ndarray  # last trading-day index


def _calendar(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """``cfg.n_days`` trading days (datetime64[D]) from ``cfg.start_date``: weekdays minus holidays."""
    start = np.datetime64(cfg.start_date, "D")
    span = int(cfg.n_days * 7 / 5 * 1.1) + 60
    first_year = int(str(start)[:4])
    anchors = _holiday_anchors(cfg.holidays_per_year, rng)
    jitter = rng.integers(-3, 4, size=(400, len(anchors)))  # per year; drawn once, fixed size
    while True:
        days = start + np.arange(span)
        last_year = int(str(days[-1])[:4])
        holidays = _holidays(anchors, jitter, first_year, last_year)
        weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        trading = days[(weekday < 5) & ~np.isin(days, holidays)]
        if len(trading) >= cfg.n_days:
            return trading[: cfg.n_days]
        span *= 2


def _holiday_anchors(n: int, rng: np.random.Generator) -> list[tuple[int, int, bool]]:
    anchors = list(_HOLIDAY_ANCHORS[:n])
    extra = max(0, n - len(anchors))
    months = rng.integers(1, 13, size=extra)
    days = rng.integers(1, 29, size=extra)
    anchors += [(int(m), int(d), True) for m, d in zip(months, days)]
    return anchors


def _holidays(
    anchors: list[tuple[int, int, bool]], jitter: np.ndarray, first_year: int, last_year: int
) -> np.ndarray:
    """Holiday dates for each year; a holiday on a weekend moves to the nearest weekday."""
    out = []
    for y, year in enumerate(range(first_year, last_year + 1)):
        for j, (month, day, moves) in enumerate(anchors):
            d = np.datetime64(f"{year:04d}-{month:02d}-{day:02d}", "D")
            if moves:
                d = d + int(jitter[y % len(jitter), j])
            weekday = (int(d.astype(np.int64)) + 3) % 7
            d = d - 1 if weekday == 5 else d + 1 if weekday == 6 else d
            out.append(d)
    return np.array(out, dtype="datetime64[D]")


def _universe(cfg: SyntheticConfig, n_days: int, rng: np.random.Generator) -> _Universe:
    """Codes, balanced sector/industry membership, listing and delisting days."""
    n = cfg.n_stocks
    n_ind = cfg.n_sectors * cfg.industries_per_sector
    width = max(4, len(str(n)))
    industry = rng.permutation(np.arange(n) % n_ind)
    sector = industry // cfg.industries_per_sector
    listed, last = _listing(cfg, n_days, rng)
    return _Universe(
        codes=[f"S{i + 1:0{width}d}" for i in range(n)],
        sector=sector,
        industry=industry,
        n_sectors=cfg.n_sectors,
        n_industries=n_ind,
        listed=listed,
        last=last,
    )


def _listing(cfg: SyntheticConfig, n_days: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """First and last trading-day index per stock: some list late, some delist early."""
    n = cfg.n_stocks
    listed = np.zeros(n, dtype=np.int64)
    last = np.full(n, n_days - 1, dtype=np.int64)
    min_life = max(5, min(60, n_days // 4))
    late = rng.permutation(n)[: int(round(cfg.late_listing_share * n))]
    listed[late] = rng.integers(1, max(2, int(0.6 * n_days)), size=len(late))
    gone = rng.permutation(n)[: int(round(cfg.delisting_share * n))]
    lo = np.maximum(listed[gone] + min_life, int(0.3 * n_days))
    last[gone] = rng.integers(lo, np.maximum(lo + 1, n_days - 1))
    return listed, np.minimum(last, n_days - 1)


def _trading_mask(cfg: SyntheticConfig, uni: _Universe, n_days: int, seed: int) -> np.ndarray:
    """(T, n) bool: listed and not suspended. Listing and last days always trade."""
    t = np.arange(n_days)[:, None]
    alive = (t >= uni.listed) & (t <= uni.last)
    start = (_rng(seed, "suspension.start").random(alive.shape) < cfg.suspension_rate) & alive
    max_days = max(1, cfg.suspension_max_days)
    length = _rng(seed, "suspension.length").integers(1, max_days + 1, size=alive.shape)
    suspended = np.zeros_like(alive)
    for k in range(max_days):
        suspended[k:] |= (start & (length > k))[: n_days - k]
    suspended &= (t != uni.listed) & (t != uni.last)
    return alive & ~suspended
