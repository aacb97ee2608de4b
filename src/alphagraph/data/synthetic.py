"""The built-in synthetic market: a realistic equity panel with a planted, known signal.

``generate_market(cfg, seed)`` returns prices, universe, relations and the
oracle (the planted expected return). ``signal_report(market)`` measures how
strong the planted signal is. docs/synthetic_market.md describes both.

Oracle alignment: the oracle row (date=t, code=i) is the planted expected
simple return from close(t) to the close of i's next trading day, computed
only from information available at the close of t. It therefore lines up with
a prediction made at t and with the target ``ret_1d`` dated t.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from alphagraph.config import ObservedRelationsConfig, SignalConfig, SyntheticConfig

COMPONENTS: tuple[str, ...] = (
    "reversal",
    "momentum",
    "volume_price",
    "sector_spillover",
    "supply_chain",
)
RELATIONS: tuple[str, ...] = ("competitor", "supply_chain", "fund_similarity")

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
class Market:
    """The four frames of a synthetic market (schemas in DESIGN.md)."""

    prices: pl.DataFrame
    universe: pl.DataFrame
    relations: pl.DataFrame  # what a model reads: incomplete, noisy, with spurious links
    oracle: pl.DataFrame
    relations_true: pl.DataFrame  # the links that drive the planted signal (diagnosis only)


@dataclass(frozen=True)
class _Dynamics:
    """Stylized-fact parameters, daily units; pairs are (calm, turbulent)."""

    market_vol: tuple[float, float] = (0.009, 0.022)
    sector_vol: tuple[float, float] = (0.006, 0.010)
    industry_vol: tuple[float, float] = (0.005, 0.007)
    idio_mult: tuple[float, float] = (1.0, 1.3)
    p_calm_to_turbulent: float = 0.01
    p_turbulent_to_calm: float = 0.05
    drift: float = 0.0003
    idio_vol_median: float = 0.016
    idio_vol_dispersion: float = 0.3
    garch_a: float = 0.07
    garch_b: float = 0.91
    tail_df: float = 5.0
    return_bounds: tuple[float, float] = (-0.5, 1.0)
    zscore_clip: float = 3.0
    # Look-back windows of the own-history components, in trading days of the calendar.
    reversal_days: int = 3
    momentum_days: int = 60
    momentum_skip: int = 5
    volume_abs_return: float = 0.4
    volume_vol: float = 1.0
    attention_ar: float = 0.9
    attention_sd: float = 0.25
    volume_noise_sd: float = 0.3
    volume_ewma: float = 0.05


@dataclass(frozen=True)
class _Universe:
    codes: list[str]
    sector: np.ndarray  # int, per stock
    industry: np.ndarray  # int, global industry id per stock
    n_sectors: int
    n_industries: int
    listed: np.ndarray  # first trading-day index
    last: np.ndarray  # last trading-day index


@dataclass(frozen=True)
class _Edges:
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray


@dataclass(frozen=True)
class _Links:
    """Links with a life: each row is valid on trading days [start, end] (inclusive indices)."""

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    start: np.ndarray
    end: np.ndarray

    @staticmethod
    def always(edges: _Edges, n_days: int) -> _Links:
        m = len(edges.src)
        return _Links(edges.src, edges.dst, edges.weight, np.zeros(m, dtype=np.int64), np.full(m, n_days - 1))


@dataclass(frozen=True)
class _SupplyEvents:
    """Supply links that die and are replaced: on ``day`` the customer's ``slot`` gets ``supplier``."""

    day: np.ndarray
    customer: np.ndarray
    slot: np.ndarray
    supplier: np.ndarray
    raw: np.ndarray  # unnormalized weight; shares are raw / the customer's sum that day


@dataclass(frozen=True)
class _Paths:
    log_close: np.ndarray  # (T, n) latent log close
    log_prev: np.ndarray  # (T, n) latent log close of the previous day
    total_sd: np.ndarray  # (T, n) conditional sd of the day's return
    log_volume: np.ndarray  # (T, n)
    components: np.ndarray  # (K, T, n) planted alpha components, 0 where not traded
    supply: _Links  # the true supply links, with the share each had when it began


# ----------------------------------------------------------------------- public


def generate_market(cfg: SyntheticConfig, seed: int) -> Market:
    """Generate the synthetic market for ``cfg``; bit-identical for the same ``seed``."""
    dyn = _Dynamics()
    dates = _calendar(cfg, _rng(seed, "calendar"))
    n_days = len(dates)
    uni = _universe(cfg, n_days, _rng(seed, "universe"))
    traded = _trading_mask(cfg, uni, n_days, seed)
    competitors = _Links.always(_competitors(uni, cfg.competitors_per_stock, _rng(seed, "competitors")), n_days)
    supply_rng = _rng(seed, "supply_chain")
    affinity = _sector_affinity(uni.n_sectors, supply_rng)
    suppliers = _supply_chain(uni, cfg.suppliers_per_stock, supply_rng, affinity)
    events = _supply_events(uni, suppliers, affinity, cfg.supply_life_days, n_days, _rng(seed, "supply_chain.dynamics"))
    funds = _fund_links(uni, cfg, n_days, _rng(seed, "funds"))
    paths = _simulate(cfg, dyn, uni, traded, suppliers, events, seed)
    ohlc = _ohlc(paths, seed)
    true = {"competitor": competitors, "supply_chain": paths.supply, "fund_similarity": funds}
    rng = _rng(seed, "observed")
    observed = {
        name: _observe(links, cfg.observed, len(uni.codes), rng, symmetric=name != "supply_chain")
        for name, links in true.items()
    }
    return _frames(dates, uni, traded, paths, ohlc, observed, true)


def signal_report(market: Market, horizons: tuple[int, ...] = (1, 5)) -> dict:
    """Measure the planted signal: oracle (Rank)IC per horizon, per-component RankIC at 1 day,
    and each component's share of the oracle's cross-sectional variance.

    ``variance_share[k]`` = mean_t var_t(c_k) / mean_t var_t(alpha);
    ``covariance_share[k]`` = mean_t cov_t(c_k, alpha) / mean_t var_t(alpha) (sums to 1).
    """
    cols = ["alpha"] + [f"alpha_{k}" for k in COMPONENTS]
    panel = _forward_returns(market.prices, horizons).join(
        market.oracle, on=["date", "code"], how="inner"
    )
    report: dict = {"n_dates": panel["date"].n_unique(), "n_rows": panel.height}
    for h in horizons:
        ic = _daily_ic(panel, ["alpha"], f"ret_{h}d")
        report[f"rank_ic_{h}d"] = ic["rank_alpha"].mean()
        report[f"rank_icir_{h}d"] = ic["rank_alpha"].mean() / ic["rank_alpha"].std()
        report[f"ic_{h}d"] = ic["pearson_alpha"].mean()
    comp_ic = _daily_ic(panel, cols[1:], f"ret_{horizons[0]}d")
    report[f"component_rank_ic_{horizons[0]}d"] = {
        k: comp_ic[f"rank_alpha_{k}"].mean() for k in COMPONENTS
    }
    moments = (
        panel.group_by("date")
        .agg(
            [pl.col(c).var(ddof=0).alias(f"var_{c}") for c in cols]
            + [pl.cov(c, "alpha", ddof=0).alias(f"cov_{c}") for c in cols[1:]]
        )
        .sort("date")  # a fixed order keeps the report's floats reproducible
    )
    total = moments["var_alpha"].mean()
    report["variance_share"] = {k: moments[f"var_alpha_{k}"].mean() / total for k in COMPONENTS}
    report["covariance_share"] = {k: moments[f"cov_alpha_{k}"].mean() / total for k in COMPONENTS}
    return report


def nominal_shares(signal: SignalConfig) -> dict[str, float]:
    """Each component's nominal variance share a_k^2 / sum_j a_j^2 (for comparison)."""
    strengths = {k: getattr(signal, k) for k in COMPONENTS}
    total = sum(a * a for a in strengths.values())
    return {k: (a * a / total if total else 0.0) for k, a in strengths.items()}


def _forward_returns(prices: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """``ret_{h}d`` = close over the stock's next h trading days / close - 1 (null at the end)."""
    return (
        prices.select("date", "code", "close")
        .sort("code", "date")
        .with_columns(
            (pl.col("close").shift(-h).over("code") / pl.col("close") - 1.0).alias(f"ret_{h}d")
            for h in horizons
        )
        .drop("close")
    )


def _daily_ic(panel: pl.DataFrame, cols: list[str], target: str) -> pl.DataFrame:
    """Per-date Spearman (``rank_<col>``) and Pearson (``pearson_<col>``) correlation with ``target``."""
    return (
        panel.filter(pl.col(target).is_not_null())
        .group_by("date")
        .agg(
            [pl.corr(c, target, method="spearman").alias(f"rank_{c}") for c in cols]
            + [pl.corr(c, target).alias(f"pearson_{c}") for c in cols]
            + [pl.len().alias("n")]
        )
        .filter(pl.col("n") >= 3)
        .fill_nan(None)
        .sort("date")
    )


# -------------------------------------------------------------------- randomness


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per named stream, so adding a stream shifts nothing else."""
    key = zlib.crc32(stream.encode())
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(key,)))


def _student_t(rng: np.random.Generator, df: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Student-t draws scaled to unit variance (fat tails, comparable scale)."""
    return rng.standard_t(df, size) * np.sqrt((df - 2.0) / df)


# ---------------------------------------------------------------------- calendar


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


# ---------------------------------------------------------------------- universe


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


# --------------------------------------------------------------------- relations


def _competitors(uni: _Universe, k: int, rng: np.random.Generator) -> _Edges:
    """Each stock picks k peers in its industry; pairs are symmetric with one shared weight."""
    n = len(uni.codes)
    pairs = [np.empty(0, dtype=np.int64)]
    for ind in range(uni.n_industries):  # a loop over industries, vectorized within
        members = np.flatnonzero(uni.industry == ind)
        m = len(members)
        kk = min(k, m - 1)
        if kk <= 0:
            continue
        scores = rng.random((m, m))
        np.fill_diagonal(scores, -1.0)
        pick = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        a, b = np.repeat(members, kk), members[pick.ravel()]
        pairs.append(np.minimum(a, b) * n + np.maximum(a, b))
    keys = np.unique(np.concatenate(pairs))
    return _symmetric(keys, n, rng.uniform(0.3, 1.0, size=len(keys)))


def _symmetric(pair_keys: np.ndarray, n: int, weight: np.ndarray) -> _Edges:
    """Both directions of undirected pairs ``lo * n + hi``, one weight per pair."""
    lo, hi = pair_keys // n, pair_keys % n
    return _Edges(
        src=np.concatenate([lo, hi]),
        dst=np.concatenate([hi, lo]),
        weight=np.concatenate([weight, weight]),
    )


def _supply_chain(uni: _Universe, k: int, rng: np.random.Generator, affinity: np.ndarray) -> _Edges:
    """Directed supplier -> customer links, k suppliers per customer, mostly from upstream sectors.

    Each sector buys mainly from two upstream sectors (an industrial structure);
    a same-industry supplier is rare. Weights are the customer's supply shares.
    """
    n = len(uni.codes)
    k = min(k, n - 1)
    if k <= 0:
        return _Edges(*(np.empty(0, dtype=t) for t in (np.int64, np.int64, np.float64)))
    pick = np.empty((n, k), dtype=np.int64)
    for rows in _chunks(n):  # bounded memory for large universes
        logits = _supplier_logits(uni, rows, affinity)  # (customer, supplier)
        # Gumbel top-k: k distinct suppliers drawn with probability proportional to affinity.
        noisy = logits + rng.gumbel(size=logits.shape)
        pick[rows] = np.argsort(-noisy, axis=1, kind="stable")[:, :k]
    raw = rng.uniform(0.2, 1.0, size=pick.shape)
    return _Edges(
        src=pick.ravel(),
        dst=np.repeat(np.arange(n), k),
        weight=(raw / raw.sum(axis=1, keepdims=True)).ravel(),
    )


def _fund_similarity(uni: _Universe, n_funds: int, top_k: int, rng: np.random.Generator) -> _Edges:
    """Cosine similarity of fund-holding vectors; top_k per stock, made symmetric."""
    n = len(uni.codes)
    if n_funds <= 0 or top_k <= 0:
        return _Edges(*(np.empty(0, dtype=t) for t in (np.int64, np.int64, np.float64)))
    # Funds concentrate on a few sectors, so co-holding tracks sector and style.
    focus = rng.random((n_funds, uni.n_sectors)) < 2.0 / max(uni.n_sectors, 1)
    prob = 0.03 + 0.3 * focus[:, uni.sector]
    held = rng.random((n_funds, n)) < prob
    orphans = np.flatnonzero(~held.any(axis=0))
    held[rng.integers(0, n_funds, size=len(orphans)), orphans] = True
    holdings = (held * rng.lognormal(0.0, 1.0, size=held.shape)).T  # (stock, fund)
    unit = holdings / np.linalg.norm(holdings, axis=1, keepdims=True)
    kk = min(top_k, n - 1)
    top = np.empty((n, kk), dtype=np.int64)
    best = np.empty((n, kk))
    for rows in _chunks(n):  # bounded memory for large universes
        sim = unit[rows] @ unit.T
        sim[np.arange(len(rows)), rows] = -np.inf
        top[rows] = np.argsort(-sim, axis=1, kind="stable")[:, :kk]
        best[rows] = np.take_along_axis(sim, top[rows], axis=1)
    a = np.repeat(np.arange(n), kk)
    b = top.ravel()
    keep = best.ravel() > 0
    keys = np.unique(np.minimum(a, b)[keep] * n + np.maximum(a, b)[keep])
    lo, hi = keys // n, keys % n
    # The row-wise dot keeps the weight exactly symmetric (a matmul may differ in the last bit).
    return _symmetric(keys, n, np.einsum("ij,ij->i", unit[lo], unit[hi]))


def _supplier_logits(uni: _Universe, customers: np.ndarray, affinity: np.ndarray) -> np.ndarray:
    """(len(customers), n) log-weights of each stock as a supplier of each customer."""
    logits = np.log(affinity)[uni.sector[customers]][:, uni.sector]
    logits[uni.industry[customers, None] == uni.industry[None, :]] += np.log(0.2)
    logits[np.arange(len(customers)), customers] = -np.inf
    return logits


def _sector_affinity(n_sectors: int, rng: np.random.Generator) -> np.ndarray:
    """Each sector buys mainly from two upstream sectors (an industrial structure)."""
    affinity = np.ones((n_sectors, n_sectors))
    for c in range(n_sectors):
        others = np.delete(np.arange(n_sectors), c)
        if len(others):
            affinity[c, rng.choice(others, size=min(2, len(others)), replace=False)] = 8.0
    return affinity


def _supply_events(
    uni: _Universe, initial: _Edges, affinity: np.ndarray, life: int, n_days: int, rng: np.random.Generator
) -> _SupplyEvents:
    """Supply links die after an exponential life (mean ``life`` days) and a new supplier takes the slot.

    The new supplier is drawn like the first ones (upstream sectors preferred, by
    inverse CDF per industry); its raw weight has the scale of a share. Draws come
    in rounds over all slots, so a longer run starts with the same events (no
    look-ahead). ``life`` 0: links never change.
    """
    n = len(uni.codes)
    k = len(initial.src) // n if n else 0
    ints = np.empty(0, dtype=np.int64)
    if life <= 0 or k == 0:
        return _SupplyEvents(ints, ints, ints, ints, np.empty(0))
    industries = np.arange(uni.n_industries)
    sector_of_industry = np.zeros(uni.n_industries, dtype=np.int64)
    sector_of_industry[uni.industry] = uni.sector
    weight = affinity[sector_of_industry][:, uni.sector] * np.where(industries[:, None] == uni.industry[None, :], 0.2, 1.0)
    cdf = np.cumsum(weight, axis=1)
    slots = n * k
    customer_of, slot_of = np.arange(slots) // k, np.arange(slots) % k
    cum = np.zeros(slots)
    parts = []
    while True:
        cum += rng.exponential(life, size=slots)
        u, raw = rng.random(slots), rng.uniform(0.2, 1.0, size=slots) / (0.6 * k)
        day = 1 + np.floor(cum).astype(np.int64)
        live = np.flatnonzero(day < n_days)
        if live.size == 0:
            break
        c = customer_of[live]
        rows = cdf[uni.industry[c]]
        pick = np.minimum((rows < (u[live] * rows[:, -1])[:, None]).sum(axis=1), n - 1)
        pick = np.where(pick == c, (pick + 1) % n, pick)  # never its own supplier
        parts.append((day[live], c, slot_of[live], pick, raw[live]))
    if not parts:
        return _SupplyEvents(ints, ints, ints, ints, np.empty(0))
    day, customer, slot, supplier, raw = (np.concatenate([p[i] for p in parts]) for i in range(5))
    order = np.lexsort((slot, customer, day))
    return _SupplyEvents(day[order], customer[order], slot[order], supplier[order], raw[order])


def _fund_links(uni: _Universe, cfg: SyntheticConfig, n_days: int, rng: np.random.Generator) -> _Links:
    """Fund co-holding similarity, recomputed each time the funds rebalance (``fund_rebalance_days``)."""
    every = cfg.fund_rebalance_days if cfg.fund_rebalance_days > 0 else n_days
    parts = []
    for start in range(0, n_days, every):  # a few periods; each is vectorized
        edges = _fund_similarity(uni, cfg.n_funds, cfg.fund_top_k, rng)
        m = len(edges.src)
        end = min(start + every, n_days) - 1
        parts.append(_Links(edges.src, edges.dst, edges.weight, np.full(m, start), np.full(m, end)))
    return _concat_links(parts)


def _concat_links(parts: list[_Links]) -> _Links:
    return _Links(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("src", "dst", "weight", "start", "end")))


def _observe(links: _Links, cfg: ObservedRelationsConfig, n: int, rng: np.random.Generator, symmetric: bool) -> _Links:
    """The relations file a model reads: true links missing, weights mismeasured, spurious links added.

    Symmetric relations are observed per pair (both directions or neither). A spurious
    link copies the weight and life of a random true link between two random stocks.
    """
    half = links.src < links.dst if symmetric else np.ones(len(links.src), dtype=bool)
    true = _Links(*(getattr(links, f)[half] for f in ("src", "dst", "weight", "start", "end")))
    m = len(true.src)
    if m == 0 or n < 2:
        return links
    keep = rng.random(m) >= cfg.missing_share
    noise = np.exp(cfg.weight_noise * rng.standard_normal(m))
    n_fake = int(round(cfg.spurious_share * m))
    like = rng.integers(0, m, size=n_fake)
    a = rng.integers(0, n, size=n_fake)
    b = (a + rng.integers(1, n, size=n_fake)) % n  # never a self-loop
    if symmetric:
        a, b = np.minimum(a, b), np.maximum(a, b)
    fake_w = true.weight[like] * np.exp(cfg.weight_noise * rng.standard_normal(n_fake))
    # A "spurious" link that happens to be a true one is not spurious: leave it out.
    span = int(true.start.max()) + 1

    def key(src: np.ndarray, dst: np.ndarray, start: np.ndarray) -> np.ndarray:
        return (src.astype(np.int64) * n + dst) * span + start

    new = ~np.isin(key(a, b, true.start[like]), key(true.src, true.dst, true.start))
    like, a, b, fake_w = like[new], a[new], b[new], fake_w[new]
    out = _Links(
        np.concatenate([true.src[keep], a]),
        np.concatenate([true.dst[keep], b]),
        np.concatenate([(true.weight * noise)[keep], fake_w]),
        np.concatenate([true.start[keep], true.start[like]]),
        np.concatenate([true.end[keep], true.end[like]]),
    )
    # One row per (src, dst, start), as a relations file has (two spurious draws may coincide).
    _, first = np.unique(key(out.src, out.dst, out.start), return_index=True)
    first = np.sort(first)
    out = _Links(*(getattr(out, f)[first] for f in ("src", "dst", "weight", "start", "end")))
    if symmetric:
        out = _Links(
            np.concatenate([out.src, out.dst]), np.concatenate([out.dst, out.src]),
            *(np.concatenate([x, x]) for x in (out.weight, out.start, out.end)),
        )
    return out


def _chunks(n: int, cells: int = 1 << 22) -> list[np.ndarray]:
    """Row blocks of an (n, n) computation holding at most ``cells`` cells each."""
    size = max(1, cells // max(n, 1))
    return [np.arange(i, min(i + size, n)) for i in range(0, n, size)]


@dataclass(frozen=True)
class _SignalInputs:
    """Inputs of the planted components (the supply links at the first day; events change them)."""

    sector: np.ndarray  # (n,) sector id
    n_sectors: int
    sup_idx: np.ndarray  # (n, k) supplier indices per customer slot
    sup_raw: np.ndarray  # (n, k) raw supply weights (0 for padding); shares = raw / row sum
    reversal_days: int
    momentum_days: int
    momentum_skip: int
    strengths: np.ndarray  # (K,) a_k in COMPONENTS order
    nonlinearity: float


def _signal_inputs(cfg: SyntheticConfig, dyn: _Dynamics, uni: _Universe, suppliers: _Edges) -> _SignalInputs:
    """Pack the supplier lists into (n, k) slot arrays so a day's supply signal is one gather."""
    n = len(uni.codes)
    counts = np.bincount(suppliers.dst, minlength=n)
    k = max(1, int(counts.max()) if n and len(suppliers.dst) else 1)
    idx = np.zeros((n, k), dtype=np.int64)
    w = np.zeros((n, k))
    order = np.argsort(suppliers.dst, kind="stable")
    dst = suppliers.dst[order]
    slot = np.arange(len(dst)) - np.searchsorted(dst, dst)
    idx[dst, slot] = suppliers.src[order]
    w[dst, slot] = suppliers.weight[order]
    return _SignalInputs(
        sector=uni.sector,
        n_sectors=uni.n_sectors,
        sup_idx=idx,
        sup_raw=w,
        reversal_days=dyn.reversal_days,
        momentum_days=dyn.momentum_days,
        momentum_skip=dyn.momentum_skip,
        strengths=np.array([getattr(cfg.signal, k) for k in COMPONENTS], dtype=np.float64),
        nonlinearity=cfg.supply_nonlinearity,
    )


def _shares(raw: np.ndarray) -> np.ndarray:
    total = raw.sum(axis=1, keepdims=True)
    return np.divide(raw, total, out=np.zeros_like(raw), where=total > 0)


def _strength_paths(cfg: SyntheticConfig, strengths: np.ndarray, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """(T, K) multipliers m_k(t) of each component's strength, with E[m_k^2] = 1.

    m_k(t) = g(t) (1 + x_k(t)) / sqrt(1 + sd_k^2): a common amplitude g (lognormal
    AR(1): stretches where every signal is weak, as in real markets) times a
    component's own AR(1) x_k around 0 with sd_k = v sqrt(a_max / a_k), so the
    weaker components vary more and are the ones that occasionally flip sign.
    Both start stationary; the multiplier of day t is part of the planted alpha of t.
    """
    K = len(strengths)
    v = cfg.strength_variation
    if v == 0 or n_days == 0:
        return np.ones((n_days, K))
    ratio = np.divide(strengths.max(), strengths, out=np.ones(K), where=strengths > 0)
    sd = v * np.sqrt(ratio)
    y = _ar1(rng.standard_normal((n_days, K + 1)), cfg.strength_persistence)
    amplitude = np.exp(v * y[:, :1] - v * v)
    return amplitude * (1.0 + sd * y[:, 1:]) / np.sqrt(1.0 + sd * sd)


def _ar1(eps: np.ndarray, phi: float) -> np.ndarray:
    """Unit-variance AR(1) paths along axis 0, stationary from the first row."""
    out = np.empty_like(eps)
    out[0] = eps[0]
    step = np.sqrt(1.0 - phi * phi)
    for t in range(1, len(eps)):
        out[t] = phi * out[t - 1] + step * eps[t]
    return out


# ---------------------------------------------------------------------- dynamics


def _regimes(n_days: int, dyn: _Dynamics, rng: np.random.Generator) -> np.ndarray:
    """Calm (0) / turbulent (1) Markov chain, starting calm."""
    u = rng.random(n_days)
    out = np.zeros(n_days, dtype=np.int64)
    state = 0
    for t in range(n_days):
        flip = dyn.p_calm_to_turbulent if state == 0 else dyn.p_turbulent_to_calm
        state = 1 - state if u[t] < flip else state
        out[t] = state
    return out


def _garch(eps: np.ndarray, long_run_var: np.ndarray, dyn: _Dynamics) -> np.ndarray:
    """GARCH(1,1) conditional variance, (T + 1, n): row t is known at the close of t - 1."""
    a, b = dyn.garch_a, dyn.garch_b
    omega = long_run_var * (1.0 - a - b)
    cap = 50.0 * long_run_var  # keeps a rare run of extreme shocks from exploding
    h = np.empty((eps.shape[0] + 1, eps.shape[1]))
    h[0] = long_run_var
    for t in range(eps.shape[0]):
        h[t + 1] = np.minimum(omega + (a * eps[t] ** 2 + b) * h[t], cap)
    return h


def _attention(shape: tuple[int, int], dyn: _Dynamics, rng: np.random.Generator) -> np.ndarray:
    """Persistent AR(1) trading-interest shocks in log volume."""
    out = np.empty(shape)
    out[0] = rng.standard_normal(shape[1]) * dyn.attention_sd
    shocks = rng.standard_normal(shape) * dyn.attention_sd * np.sqrt(1 - dyn.attention_ar**2)
    for t in range(1, shape[0]):
        out[t] = dyn.attention_ar * out[t - 1] + shocks[t]
    return out


@dataclass(frozen=True)
class _Drivers:
    """Everything about the returns that does not depend on the planted alpha."""

    common: np.ndarray  # (T, n) drift + factor returns
    idio: np.ndarray  # (T, n) idiosyncratic returns
    total_sd: np.ndarray  # (T, n) conditional sd of the day's return
    idio_sd_next: np.ndarray  # (T, n) idio sd of the next day's return, known at close t
    volume_base: np.ndarray  # (T, n) log volume without the |return| term
    log_price0: np.ndarray  # (n,)


def _drivers(dyn: _Dynamics, uni: _Universe, n_days: int, seed: int) -> _Drivers:
    """Factor structure, GARCH idiosyncratic noise, regimes and volume drivers."""
    n = len(uni.codes)
    rng = _rng(seed, "loadings")
    beta_m = np.clip(rng.normal(1.0, 0.3, n), 0.2, 2.0)
    beta_s = np.clip(rng.normal(1.0, 0.3, n), 0.0, 2.0)
    beta_i = np.clip(rng.normal(1.0, 0.3, n), 0.0, 2.0)
    idio_lr = dyn.idio_vol_median * np.exp(dyn.idio_vol_dispersion * rng.standard_normal(n))
    log_price0 = np.log(30.0) + 0.8 * rng.standard_normal(n)
    log_shares = np.log(5e5) + 1.0 * rng.standard_normal(n)

    regime = _regimes(n_days, dyn, _rng(seed, "regime"))
    mkt_sd = np.asarray(dyn.market_vol)[regime]
    sec_sd = np.asarray(dyn.sector_vol)[regime][:, None]
    ind_sd = np.asarray(dyn.industry_vol)[regime][:, None]
    mkt = _student_t(_rng(seed, "factor.market"), dyn.tail_df, n_days) * mkt_sd
    sec = _student_t(_rng(seed, "factor.sector"), dyn.tail_df, (n_days, uni.n_sectors)) * sec_sd
    ind = _student_t(_rng(seed, "factor.industry"), dyn.tail_df, (n_days, uni.n_industries)) * ind_sd
    common = (
        dyn.drift
        + beta_m * mkt[:, None]
        + beta_s * sec[:, uni.sector]
        + beta_i * ind[:, uni.industry]
    )

    eps = _student_t(_rng(seed, "idio"), dyn.tail_df, (n_days, n))
    h = _garch(eps, idio_lr**2, dyn)
    mult = np.asarray(dyn.idio_mult)[regime][:, None]
    idio_sd = np.sqrt(h[:-1]) * mult
    factor_var = (beta_m * mkt_sd[:, None]) ** 2 + (beta_s * sec_sd) ** 2 + (beta_i * ind_sd) ** 2
    volume_base = (
        log_shares
        + dyn.volume_vol * np.log(idio_sd / idio_lr)
        + _attention((n_days, n), dyn, _rng(seed, "volume.attention"))
        + dyn.volume_noise_sd * _rng(seed, "volume.noise").standard_normal((n_days, n))
    )
    return _Drivers(
        common=common,
        idio=idio_sd * eps,
        total_sd=np.sqrt(factor_var + idio_sd**2),
        # The regime of t is known at t; next day's regime is not, so it is not used.
        idio_sd_next=np.sqrt(h[1:]) * mult,
        volume_base=volume_base,
        log_price0=log_price0,
    )


def _zscore(raw: np.ndarray, rows: np.ndarray, clip: float) -> np.ndarray:
    """Cross-sectional z-scores of each row of ``raw`` (k, n) over stocks ``rows``,
    winsorized at ``clip``; 0 for other stocks and for constant rows."""
    out = np.zeros_like(raw)
    if len(rows) < 2:
        return out
    v = raw[:, rows]
    centred = v - v.mean(axis=1, keepdims=True)
    sd = np.sqrt((centred**2).mean(axis=1, keepdims=True))
    out[:, rows] = np.clip(np.divide(centred, sd, out=np.zeros_like(v), where=sd > 0), -clip, clip)
    return out


def _simulate(
    cfg: SyntheticConfig,
    dyn: _Dynamics,
    uni: _Universe,
    traded: np.ndarray,
    suppliers: _Edges,
    events: _SupplyEvents,
    seed: int,
) -> _Paths:
    """Day-by-day recursion: the alpha planted at t moves the return t -> t+1.

    Signals use only what is observable at the close of t: observed closes
    (a return over a suspension spans the gap), volumes, and the conditional
    volatility. Non-traded stock-days carry no alpha.
    """
    n_days, n = traded.shape
    d = _drivers(dyn, uni, n_days, seed)
    spec = _signal_inputs(cfg, dyn, uni, suppliers)
    strength = spec.strengths * _strength_paths(cfg, spec.strengths, n_days, _rng(seed, "signal.strength"))
    sup_idx, sup_raw = spec.sup_idx.copy(), spec.sup_raw.copy()
    sup_w = _shares(sup_raw)
    first_share = sup_w.copy()  # the share of each initial link on day 0
    event_share = np.zeros(len(events.day))
    bounds = np.searchsorted(events.day, np.arange(n_days + 1))

    log_close = np.empty((n_days, n))
    log_volume = np.empty((n_days, n))
    comps = np.zeros((len(COMPONENTS), n_days, n))
    cum_u = np.zeros((n_days + 1, n))  # running sum of vol-scaled observed returns
    logp = d.log_price0.copy()
    last_logp = np.zeros(n)
    last_t = np.full(n, -1, dtype=np.int64)
    vol_ewma = np.full(n, np.nan)
    alpha = np.zeros(n)
    lo, hi = dyn.return_bounds

    for t in range(n_days):
        today = slice(bounds[t], bounds[t + 1])
        if today.start < today.stop:  # supply links die and are replaced from today on
            c, k = events.customer[today], events.slot[today]
            sup_idx[c, k] = events.supplier[today]
            sup_raw[c, k] = events.raw[today]
            sup_w = _shares(sup_raw)
            event_share[today] = sup_w[c, k]
        r = np.clip(d.common[t] + d.idio[t] + alpha, lo, hi)
        logp = logp + np.log1p(r)
        log_close[t] = logp
        rows = np.flatnonzero(traded[t])
        seen = rows[last_t[rows] >= 0]
        # Vol-scaled observed return; a gap of g days is scaled by sqrt(g).
        u = np.zeros(n)
        gap = t - last_t[seen]
        u[seen] = (logp[seen] - last_logp[seen]) / (d.total_sd[t, seen] * np.sqrt(gap))
        last_logp[rows] = logp[rows]
        last_t[rows] = t
        cum_u[t + 1] = cum_u[t] + u

        log_volume[t] = d.volume_base[t] + dyn.volume_abs_return * np.abs(u)
        abnormal = np.zeros(n)
        prior = rows[~np.isnan(vol_ewma[rows])]
        abnormal[prior] = log_volume[t, prior] - vol_ewma[prior]
        vol_ewma[rows] = np.where(
            np.isnan(vol_ewma[rows]),
            log_volume[t, rows],
            vol_ewma[rows] + dyn.volume_ewma * (log_volume[t, rows] - vol_ewma[rows]),
        )

        raw = _raw_signals(u, abnormal, cum_u, t, rows, spec, sup_idx, sup_w)
        z = _standardize(raw, rows, dyn.zscore_clip)
        comps[:, t] = d.idio_sd_next[t] * strength[t][:, None] * z
        alpha = np.zeros(n)
        for part in comps[:, t]:  # same order as the oracle's sum of its columns
            alpha = alpha + part

    log_prev = np.vstack([d.log_price0[None], log_close[:-1]])
    supply = _supply_links(spec, first_share, events, event_share, n_days)
    return _Paths(log_close, log_prev, d.total_sd, log_volume, comps, supply)


def _supply_links(
    spec: _SignalInputs, first_share: np.ndarray, events: _SupplyEvents, event_share: np.ndarray, n_days: int
) -> _Links:
    """Every true supply link with its life: a slot's link ends the day before its next event."""
    n, k = spec.sup_idx.shape
    used = spec.sup_raw > 0
    cust0, slot0 = np.nonzero(used)
    customer = np.concatenate([cust0, events.customer])
    slot = np.concatenate([slot0, events.slot])
    start = np.concatenate([np.zeros(len(cust0), dtype=np.int64), events.day])
    supplier = np.concatenate([spec.sup_idx[used], events.supplier])
    share = np.concatenate([first_share[used], event_share])
    order = np.lexsort((start, slot, customer))
    customer, slot, start, supplier, share = (a[order] for a in (customer, slot, start, supplier, share))
    same_slot_next = np.r_[(customer[1:] == customer[:-1]) & (slot[1:] == slot[:-1]), False]
    end = np.where(same_slot_next, np.r_[start[1:], 0] - 1, n_days - 1)
    lived = end >= start  # a slot that changed twice in one day kept only the later supplier
    return _Links(supplier[lived], customer[lived], share[lived], start[lived], end[lived])


def _raw_signals(
    u: np.ndarray,
    abnormal: np.ndarray,
    cum_u: np.ndarray,
    t: int,
    rows: np.ndarray,
    spec: _SignalInputs,
    sup_idx: np.ndarray,
    sup_w: np.ndarray,
) -> np.ndarray:
    """(K, n) raw component values at the close of t, in COMPONENTS order.

    ``u`` is the day's vol-scaled observed return (0 where not traded), ``cum_u``
    its running sum (row t + 1 includes day t), ``abnormal`` the log volume over
    its trailing average.
    """
    end = t + 1
    reversal = -(cum_u[end] - cum_u[max(0, end - spec.reversal_days)])
    momentum = cum_u[max(0, end - spec.momentum_skip)] - cum_u[max(0, end - spec.momentum_days)]
    volume_price = abnormal * np.sign(u)
    traded = np.zeros(len(u))
    traded[rows] = 1.0
    sec_sum = np.bincount(spec.sector, weights=u, minlength=spec.n_sectors)
    sec_cnt = np.bincount(spec.sector, weights=traded, minlength=spec.n_sectors)
    spillover = (sec_sum / np.maximum(sec_cnt, 1.0))[spec.sector]
    # Large supplier moves carry more than their share: f(u) = u (1 + c |u|).
    us = u[sup_idx]
    supply = (us * (1.0 + spec.nonlinearity * np.abs(us)) * sup_w).sum(axis=1)
    return np.stack([reversal, momentum, volume_price, spillover, supply])


def _standardize(raw: np.ndarray, rows: np.ndarray, clip: float) -> np.ndarray:
    """Per-component z-scores; volume-price is orthogonalized against reversal first."""
    z = _zscore(raw, rows, clip)
    rev, vp = z[0, rows], z[2, rows]
    denom = float(rev @ rev)
    if denom > 0:
        # Without this, volume-price would partly duplicate reversal (volume tracks |return|).
        resid = np.zeros_like(z[2:3])
        resid[0, rows] = vp - (float(vp @ rev) / denom) * rev
        z[2] = _zscore(resid, rows, clip)[0]
    return z


# ------------------------------------------------------------------------ output


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
