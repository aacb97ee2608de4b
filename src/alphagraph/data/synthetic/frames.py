"""The simulated arrays as the frames a user's files would hold: OHLCV prices, universe, relations, oracle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from alphagraph.data.synthetic.components import COMPONENTS
from alphagraph.data.synthetic.relations import _Links
from alphagraph.data.synthetic.simulate import _Paths
from alphagraph.data.synthetic.streams import _rng
from alphagraph.data.synthetic.universe import _Universe


@dataclass(frozen=True)
class Market:
    """The four frames of a synthetic market (schemas in DESIGN.md)."""

    prices: pl.DataFrame
    universe: pl.DataFrame
    relations: pl.DataFrame  # what a model reads: incomplete, noisy, with spurious links
    oracle: pl.DataFrame
    relations_true: pl.DataFrame  # the links that drive the planted signal (diagnosis only)


def _ohlc(paths: _Paths, seed: int) -> tuple[np.ndarray, ...]:
    """Open, high, low, close around the latent close path; low <= open, close <= high."""
    n_days, n = paths.log_close.shape
    move = paths.log_close - paths.log_prev
    sd = paths.total_sd
    overnight = _rng(seed, "ohlc.overnight").uniform(0.2, 0.5, size=n)  # share of the move before the open
    noise = 0.25 * sd * _rng(seed, "ohlc.open").standard_normal((n_days, n))
    log_open = paths.log_prev + overnight * move + noise
    wick_up = np.abs(0.5 * sd * _rng(seed, "ohlc.high").standard_normal((n_days, n)))
    wick_dn = np.abs(0.5 * sd * _rng(seed, "ohlc.low").standard_normal((n_days, n)))
    close = np.exp(paths.log_close)
    open_ = np.exp(log_open)
    high = np.maximum(open_, close) * np.exp(wick_up)
    low = np.minimum(open_, close) * np.exp(-wick_dn)
    return open_, high, low, close


def _frames(
    dates: np.ndarray,
    uni: _Universe,
    traded: np.ndarray,
    paths: _Paths,
    ohlc: tuple[np.ndarray, ...],
    observed: dict[str, _Links],
    true: dict[str, _Links],
) -> Market:
    """Build the polars frames in one go from the (T, n) arrays (row-major = sorted by date, code)."""
    flat = np.flatnonzero(traded.ravel())
    n = len(uni.codes)
    date_s = pl.Series("date", dates).cast(pl.Date)
    code_s = pl.Series("code", uni.codes, dtype=pl.Utf8)
    keys = {
        "date": date_s.gather(flat // n),
        "code": code_s.gather(flat % n),
    }
    # Prices on a cent grid and volumes in whole shares, as real data is: the last-bit
    # differences of exp/log across CPUs and numpy builds vanish in the rounding, so the
    # raw files are byte-identical across machines. Rounding is monotone: low <= open,
    # close <= high still holds.
    cents = {name: np.maximum(np.round(x.ravel()[flat], 2), 0.01)
             for name, x in zip(("open", "high", "low", "close"), ohlc)}
    prices = pl.DataFrame({**keys, **cents, "volume": np.round(np.exp(paths.log_volume.ravel()[flat]))})
    # The planted truth to 1e-10 (its scale is 1e-3) for the same reason.
    comp = {f"alpha_{k}": np.round(paths.components[j].ravel()[flat], 10) for j, k in enumerate(COMPONENTS)}
    alpha = np.zeros(len(flat))
    for values in comp.values():  # same order as a horizontal sum of the columns
        alpha = alpha + values
    oracle = pl.DataFrame({**keys, "alpha": alpha, **comp})
    per_sector = max(1, uni.n_industries // max(1, uni.n_sectors))
    still_listed = uni.last == len(dates) - 1
    universe = pl.DataFrame(
        {
            "code": code_s,
            "sector": pl.Series([f"sector_{s:02d}" for s in range(uni.n_sectors)]).gather(uni.sector),
            "industry": pl.Series(
                [f"industry_{i // per_sector:02d}_{i % per_sector}" for i in range(uni.n_industries)]
            ).gather(uni.industry),
            "listed": pl.Series(dates[uni.listed]).cast(pl.Date),
            # delisted = the last day the stock traded; null if it trades to the end.
            "delisted": pl.Series(dates[uni.last])
            .cast(pl.Date)
            .scatter(np.flatnonzero(still_listed), None),
        }
    )
    return Market(
        prices=prices,
        universe=universe,
        relations=_relations_frame(code_s, date_s, observed),
        oracle=oracle,
        relations_true=_relations_frame(code_s, date_s, true),
    )


def _relations_frame(code_s: pl.Series, date_s: pl.Series, links: dict[str, _Links]) -> pl.DataFrame:
    """One long frame ``src, dst, relation, weight, start, end``, sorted for a stable order.

    ``start`` / ``end`` are the first and last trading day of a link; null where the link
    is older than the sample or outlives it (as a vendor's file would say).
    """
    last = len(date_s) - 1
    parts = []
    for name, e in links.items():
        parts.append(
            pl.DataFrame(
                {
                    "src": code_s.gather(e.src.astype(np.int64)),
                    "dst": code_s.gather(e.dst.astype(np.int64)),
                    "relation": pl.Series([name] * len(e.src), dtype=pl.Utf8),
                    # Rounded like the prices, so the file is identical across machines.
                    "weight": pl.Series(np.round(e.weight.astype(np.float64), 10), dtype=pl.Float64),
                    "start": date_s.gather(e.start.astype(np.int64)).set(pl.Series(e.start <= 0), None),
                    "end": date_s.gather(e.end.astype(np.int64)).set(pl.Series(e.end >= last), None),
                }
            )
        )
    return pl.concat(parts).sort(["relation", "src", "dst", "start"], nulls_last=False)
