"""Graph build: correlation edges vs numpy/pandas, top-k and sign rules, leakage, static relations."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagraph.runtime.config import GraphConfig
from alphagraph.graph import EDGE_SCHEMA, build_edges
from alphagraph.graph.correlation import correlation_top_k, pairwise_corr, top_k_neighbours
from alphagraph.graph.static import ring_edges

START = np.datetime64("2021-01-04")


def day_of(i: int) -> dt.date:
    """Calendar day i of the synthetic frames (every day trades in these tests)."""
    return (START + i).item()


def make_closes(n_days: int, n_stocks: int, seed: int = 0) -> np.ndarray:
    """Closes from a two-factor return model (loadings of both signs)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(0, 0.01, (n_days, 2))
    loadings = rng.normal(0, 1, (2, n_stocks))
    returns = factors @ loadings + rng.normal(0, 0.01, (n_days, n_stocks))
    return 100 * np.exp(np.cumsum(returns, axis=0))


def to_prices(close: np.ndarray) -> pl.DataFrame:
    """Long prices frame from a [T, N] close matrix; NaN = no row (not trading)."""
    t, n = np.nonzero(np.isfinite(close))
    c = close[t, n]
    return pl.DataFrame(
        {
            "date": pl.Series(START + t, dtype=pl.Date),
            "code": [f"S{i:03d}" for i in n],
            "open": c,
            "high": c,
            "low": c,
            "close": c,
            "volume": np.ones_like(c),
        }
    ).sort("date", "code")


def universe(n: int, industry_of=lambda i: f"I{i % 3}", sector_of=lambda i: "A") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "code": [f"S{i:03d}" for i in range(n)],
            "sector": [sector_of(i) for i in range(n)],
            "industry": [industry_of(i) for i in range(n)],
        }
    )


NO_RELATIONS = pl.DataFrame(schema={"src": pl.Utf8, "dst": pl.Utf8, "relation": pl.Utf8, "weight": pl.Float64})


def corr_cfg(**kw) -> GraphConfig:
    base = dict(relations=["rolling_correlation"], corr_window=30, top_k=3, rebuild_every=10, residualize_market=False)
    return GraphConfig(**{**base, **kw})


def corr_edges(close: np.ndarray, cfg: GraphConfig) -> pl.DataFrame:
    edges, _ = build_edges(to_prices(close), universe(close.shape[1]), NO_RELATIONS, cfg)
    return edges


def rho_at(edges: pl.DataFrame, day: int) -> dict[tuple[int, int], float]:
    """(dst, src) -> rho of one snapshot's edges."""
    snap = edges.filter(pl.col("snapshot") == day_of(day))
    return {(int(d[1:]), int(s[1:])): r for s, d, r in snap.select("src", "dst", "rho").iter_rows()}


def window_returns(close: np.ndarray, day: int, window: int) -> np.ndarray:
    return close[day - window + 1 : day + 1] / close[day - window : day] - 1


# ---------------------------------------------------------------- correlation


def test_correlation_matches_corrcoef_on_complete_data():
    close = make_closes(80, 12)
    cfg = corr_cfg(top_k=11)  # every neighbour kept, so every pair is checked
    got = rho_at(corr_edges(close, cfg), 50)
    want = np.corrcoef(window_returns(close, 50, 30).T)
    assert len(got) == 12 * 11
    for (d, s), r in got.items():
        assert r == pytest.approx(want[d, s], abs=1e-6)


def test_residualized_correlation_matches_explicit_ols_residuals():
    close = make_closes(80, 12, seed=1)
    got = rho_at(corr_edges(close, corr_cfg(top_k=11, residualize_market=True)), 60)
    r = window_returns(close, 60, 30)
    market = r.mean(axis=1)
    design = np.column_stack([np.ones_like(market), market])
    coef, *_ = np.linalg.lstsq(design, r, rcond=None)
    want = np.corrcoef((r - design @ coef).T)
    for (d, s), rho in got.items():
        assert rho == pytest.approx(want[d, s], abs=1e-6)


def test_pairwise_complete_correlation_matches_pandas_with_gaps():
    close = make_closes(90, 15, seed=2)
    rng = np.random.default_rng(3)
    holes = rng.random(close.shape) < 0.04
    holes[70] = False  # everyone trades on the snapshot day
    close[holes] = np.nan
    cfg = corr_cfg(top_k=14, corr_min_obs=0.7)
    got = rho_at(corr_edges(close, cfg), 70)
    r = pd.DataFrame(close).pct_change(fill_method=None).iloc[41:71]
    want = r.corr(min_periods=21).to_numpy()
    enough = r.notna().sum().to_numpy() >= 21
    expected = {(d, s) for d in range(15) for s in range(15) if d != s and enough[d] and enough[s] and np.isfinite(want[d, s])}
    assert set(got) == expected
    for (d, s), rho in got.items():
        assert rho == pytest.approx(want[d, s], abs=1e-6)


@pytest.mark.parametrize("include_negative", [True, False])
def test_top_k_and_sign_rules(include_negative):
    close = make_closes(80, 20, seed=4)
    edges = corr_edges(close, corr_cfg(top_k=4, include_negative=include_negative))
    full = np.corrcoef(window_returns(close, 70, 30).T)
    snap = edges.filter(pl.col("snapshot") == day_of(70))
    assert (snap["weight"] - snap["rho"].abs()).abs().max() < 1e-7
    assert (snap["sign"].cast(pl.Float32) == snap["rho"].sign()).all()
    if not include_negative:
        assert (snap["rho"] > 0).all() and (snap["sign"] == 1).all()
    else:
        assert (snap["sign"] == -1).any()  # the factor model has negative loadings
    for d in range(20):
        score = np.abs(full[d]) if include_negative else np.where(full[d] > 0, full[d], -np.inf)
        score[d] = -np.inf
        want = set(np.argsort(-score)[:4])
        chosen = set(int(s[1:]) for s in snap.filter(pl.col("dst") == f"S{d:03d}")["src"])
        assert chosen == want


def test_short_history_and_non_trading_stocks_get_no_edges():
    close = make_closes(80, 10, seed=5)
    close[:55, 0] = np.nan  # lists late: 15 of 30 window returns at day 70 -> below 80 %
    close[70, 1] = np.nan  # suspended on the snapshot day
    cfg = GraphConfig(corr_window=30, top_k=3, rebuild_every=10, relations=["rolling_correlation", "sector_industry"])
    edges, _ = build_edges(to_prices(close), universe(10), NO_RELATIONS, cfg)
    snap = edges.filter(pl.col("snapshot") == day_of(70))
    corr = snap.filter(pl.col("relation") == "rolling_correlation")
    assert "S000" not in set(corr["src"]) | set(corr["dst"])
    assert "S000" in set(snap["dst"])  # it still has sector/industry links
    assert "S001" not in set(snap["src"]) | set(snap["dst"])
    assert corr["dst"].n_unique() == 8
    # before a full window of history nobody has correlation edges
    early = edges.filter(pl.col("relation") == "rolling_correlation", pl.col("snapshot") <= day_of(20))
    assert early.height == 0


# ---------------------------------------------------------- schema, snapshots


def full_inputs(n_days: int = 120, n_stocks: int = 16) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    close = make_closes(n_days, n_stocks, seed=6)
    close[:70, 15] = np.nan  # a late listing
    close[:90, 14] = np.nan  # lists after the leakage test's cut: absent when the future is deleted
    close[40:45, 3] = np.nan  # a suspension
    codes = [f"S{i:03d}" for i in range(n_stocks)]
    relations = pl.DataFrame(
        {
            "src": [codes[0], codes[1], codes[2], codes[4], codes[15]],
            "dst": [codes[1], codes[0], codes[5], codes[7], codes[2]],
            "relation": ["competitor", "competitor", "supply_chain", "fund_similarity", "supply_chain"],
            "weight": [1.0, 1.0, 0.5, 0.3, 0.7],
        }
    )
    uni = universe(n_stocks, industry_of=lambda i: f"I{i % 4}", sector_of=lambda i: f"X{i % 2}")
    return to_prices(close), uni, relations


def test_schema_sort_order_and_snapshot_dates():
    prices, uni, rel = full_inputs()
    edges, metrics = build_edges(prices, uni, rel, GraphConfig(corr_window=30, rebuild_every=10))
    assert dict(edges.schema) == EDGE_SCHEMA
    assert edges.equals(edges.sort("snapshot", "relation", "src", "dst"))
    assert edges.filter(pl.col("relation") != "rolling_correlation")["rho"].null_count() == edges.filter(
        pl.col("relation") != "rolling_correlation"
    ).height
    calendar = prices["date"].unique().sort()
    assert set(edges["snapshot"].unique()) <= set(calendar.gather_every(10))
    assert metrics["snapshots"] == 12
    assert set(metrics["relations"]) == {"rolling_correlation", "sector_industry", "competitor", "supply_chain", "fund_similarity"}
    assert metrics["relations"]["supply_chain"]["edges_total"] > 0


def test_future_perturbation_leaves_past_snapshots_identical():
    prices, uni, rel = full_inputs()
    cfg = GraphConfig(corr_window=30, rebuild_every=10, top_k=4)
    cut = prices["date"].unique().sort()[75]
    before, _ = build_edges(prices, uni, rel, cfg)
    rng = np.random.default_rng(7)
    later = pl.col("date") > cut
    factor = pl.Series(rng.uniform(0.5, 1.5, prices.height))
    shaken = prices.with_columns(pl.when(later).then(pl.col("close") * factor).otherwise(pl.col("close")).alias("close"))
    cut_off = prices.filter(~later)  # deleting the future (and the stock listing after the cut)
    past = pl.col("snapshot") <= cut
    for changed in (shaken, cut_off):
        after, _ = build_edges(changed, uni, rel, cfg)
        assert after.filter(past).equals(before.filter(past))
    assert before.filter(past).height > 0 and before.filter(~past).height > 0


# ------------------------------------------------------------ static relations


def test_supply_chain_keeps_direction_and_endpoints_must_trade():
    prices, uni, rel = full_inputs()
    edges, _ = build_edges(prices, uni, rel, GraphConfig(relations=["supply_chain"], rebuild_every=10))
    pairs = set(edges.select("src", "dst").unique().iter_rows())
    assert pairs == {("S002", "S005"), ("S015", "S002")}
    late = edges.filter(pl.col("src") == "S015")  # S015 trades only from day 70
    assert late["snapshot"].min() == prices["date"].unique().sort()[70]


def test_sector_industry_degree_cap_and_symmetry():
    n = 60  # one big industry of 30, two of 15, all in sector A; 10 more in sector B
    industry = lambda i: "big" if i < 30 else ("mid1" if i < 45 else ("mid2" if i < 60 else "other"))
    close = make_closes(30, n + 10, seed=8)
    uni = universe(n + 10, industry_of=industry, sector_of=lambda i: "A" if i < n else "B")
    cfg = GraphConfig(relations=["sector_industry"], rebuild_every=10, max_industry_degree=8, sector_weight=0.25)
    edges, _ = build_edges(to_prices(close), uni, NO_RELATIONS, cfg)
    for (_snap,), snap in edges.group_by("snapshot"):
        assert snap.group_by("dst").len()["len"].max() <= 8
        assert snap.group_by("src").len()["len"].max() <= 8
        pairs = set(snap.select("src", "dst").iter_rows())
        assert pairs == {(d, s) for s, d in pairs}  # both directions
        assert snap.filter(pl.col("src") == pl.col("dst")).height == 0
        assert snap.height == snap.select("src", "dst").n_unique()
    ind = dict(uni.select("code", "industry").iter_rows())
    sec = dict(uni.select("code", "sector").iter_rows())
    for s, d, w in edges.select("src", "dst", "weight").iter_rows():
        assert sec[s] == sec[d]
        assert w == pytest.approx(1.0 if ind[s] == ind[d] else 0.25)
    # big groups are rings of degree 8, not cliques
    first = edges.filter(pl.col("snapshot") == edges["snapshot"].min())
    big = first.filter(pl.col("src").is_in([f"S{i:03d}" for i in range(30)]), pl.col("weight") == 1.0)
    assert big.group_by("src").len()["len"].min() == 8


def test_requested_relation_without_rows_is_skipped(caplog):
    prices, uni, _ = full_inputs()
    cfg = GraphConfig(relations=["competitor", "sector_industry"], rebuild_every=10)
    with caplog.at_level(logging.INFO, logger="alphagraph"):
        edges, metrics = build_edges(prices, uni, NO_RELATIONS, cfg)
    assert "competitor" in metrics["skipped"]
    assert set(edges["relation"].unique()) == {"sector_industry"}
    assert any("competitor" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------ point-in-time side files

NO_DATE = pl.lit(None, dtype=pl.Date)


def dated(table: pl.DataFrame, **bounds: dict[str, int]) -> pl.DataFrame:
    """``table`` with null start/end, except the rows matched by ``bounds``: {code_or_src: (start_day, end_day)}."""
    key = "code" if "code" in table.columns else "src"
    start, end = NO_DATE, NO_DATE
    for code, (lo, hi) in bounds.items():
        if lo is not None:
            start = pl.when(pl.col(key) == code).then(pl.lit(day_of(lo))).otherwise(start)
        if hi is not None:
            end = pl.when(pl.col(key) == code).then(pl.lit(day_of(hi))).otherwise(end)
    return table.with_columns(start=start, end=end)


def snapshots_of(edges: pl.DataFrame, src: str, dst: str) -> list[dt.date]:
    return edges.filter(pl.col("src") == src, pl.col("dst") == dst)["snapshot"].sort().to_list()


def test_static_side_files_with_null_validity_columns_are_unchanged():
    prices, uni, rel = full_inputs()
    dup = pl.DataFrame({"src": ["S002", "S002"], "dst": ["S005", "S005"], "relation": ["supply_chain"] * 2,
                        "weight": [0.1, 0.2]})
    rel = pl.concat([rel, dup])  # duplicates are averaged, as before
    cfg = GraphConfig(corr_window=30, rebuild_every=10)
    plain, m_plain = build_edges(prices, uni, rel, cfg)
    nulls, m_nulls = build_edges(prices, dated(uni), dated(rel), cfg)
    assert nulls.equals(plain) and m_nulls == m_plain
    w = plain.filter(pl.col("relation") == "supply_chain", pl.col("src") == "S002", pl.col("dst") == "S005")["weight"].unique()
    assert w.to_list() == [pytest.approx((0.5 + 0.1 + 0.2) / 3)]


def test_table_relation_rows_apply_only_within_their_validity():
    prices, uni, rel = full_inputs()  # snapshots every 10 days: 0, 10, ..., 110
    extra = pl.DataFrame({
        "src": ["S003", "S008", "S010", "S002"],
        "dst": ["S006", "S009", "S011", "S005"],
        "relation": ["supply_chain"] * 4,
        "weight": [1.0, 1.0, 1.0, 0.9],
    })
    rel = pl.concat([dated(rel), dated(extra, S003=(50, None), S008=(None, 60), S010=(35, 64))])
    rel = rel.with_columns(  # the second S002 -> S005 row only from day 50 (the first stays static)
        start=pl.when((pl.col("src") == "S002") & (pl.col("weight") == 0.9)).then(pl.lit(day_of(50))).otherwise("start")
    )
    edges, metrics = build_edges(prices, uni, rel, GraphConfig(relations=["supply_chain", "competitor"], rebuild_every=10))
    snaps = lambda days: [day_of(i) for i in days]
    assert snapshots_of(edges, "S003", "S006") == snaps(range(50, 120, 10))  # start inclusive
    assert snapshots_of(edges, "S008", "S009") == snaps(range(0, 70, 10))  # end inclusive
    assert snapshots_of(edges, "S010", "S011") == snaps([40, 50, 60])  # from d = 35 on, never before
    # overlapping rows of one link are averaged per snapshot, over the rows valid on it
    w = dict(edges.filter(pl.col("src") == "S002", pl.col("dst") == "S005").select("snapshot", "weight").iter_rows())
    assert w[day_of(40)] == pytest.approx(0.5) and w[day_of(50)] == pytest.approx(0.7)
    assert metrics["point_in_time"] == {"supply_chain": True, "competitor": False}


def industry_neighbours(edges: pl.DataFrame, code: str) -> dict[dt.date, set[str]]:
    """Snapshot -> the same-industry (weight 1) neighbours of ``code``."""
    own = edges.filter(pl.col("dst") == code, pl.col("weight") == 1.0)
    return {s: set(g["src"]) for (s,), g in own.group_by("snapshot")}


def test_universe_change_is_point_in_time():
    """S000 moves from industry I0 (sector X0) to I1 (X1) on day 45; S012 enters the universe on day 65."""
    prices, uni, rel = full_inputs()
    cfg = GraphConfig(relations=["sector_industry"], rebuild_every=10)
    moved_row = uni.filter(pl.col("code") == "S000").with_columns(
        sector=pl.lit("X1"), industry=pl.lit("I1"), start=pl.lit(day_of(45)), end=NO_DATE
    )
    pit = pl.concat([dated(uni, S000=(None, 44), S012=(65, None)), moved_row])
    before, _ = build_edges(prices, uni, rel, cfg)
    edges, metrics = build_edges(prices, pit, rel, cfg)
    ind0 = {f"S{i:03d}" for i in range(16) if i % 4 == 0} - {"S000"}
    ind1 = {f"S{i:03d}" for i in range(16) if i % 4 == 1}
    nbrs = industry_neighbours(edges, "S000")
    for snap, codes in nbrs.items():
        assert codes <= (ind0 if snap < day_of(45) else ind1), snap
    assert {s for s in nbrs if s < day_of(45)} and {s for s in nbrs if s >= day_of(45)}
    late = edges.filter((pl.col("src") == "S012") | (pl.col("dst") == "S012"))
    assert late["snapshot"].min() == day_of(70)
    # future perturbation: every snapshot before the change is what the static universe gave
    past = pl.col("snapshot") < day_of(45)
    assert edges.filter(past).filter(pl.col("dst") != "S012", pl.col("src") != "S012").equals(
        before.filter(past).filter(pl.col("dst") != "S012", pl.col("src") != "S012")
    )
    assert not edges.filter(~past).equals(before.filter(~past))
    assert metrics["point_in_time"] == {"sector_industry": True}


def test_point_in_time_metrics_and_look_ahead_warning(caplog):
    prices, uni, rel = full_inputs()
    cfg = GraphConfig(corr_window=30, rebuild_every=10)
    with caplog.at_level(logging.WARNING, logger="alphagraph"):
        _, static = build_edges(prices, uni, rel, cfg)
    side = {"sector_industry", "competitor", "supply_chain", "fund_similarity"}
    assert static["point_in_time"] == dict.fromkeys(side, False)  # rolling_correlation is not a side file
    assert {"snapshots", "edges_total", "mean_degree", "relations", "skipped"} <= set(static)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "look-ahead" in r.getMessage()]
    assert len(warned) == 1 and all(name in warned[0] for name in side)
    caplog.clear()
    uni_pit = dated(uni, S003=(None, 200))
    rel_pit = dated(rel, S002=(5, None))  # dates the supply_chain row S002 -> S005 only
    with caplog.at_level(logging.WARNING, logger="alphagraph"):
        _, pit = build_edges(prices, uni_pit, rel_pit, GraphConfig(corr_window=30, rebuild_every=10,
                                                                 relations=["sector_industry", "supply_chain", "competitor"]))
    assert pit["point_in_time"] == {"sector_industry": True, "supply_chain": True, "competitor": False}
    warned = [r.getMessage() for r in caplog.records if "look-ahead" in r.getMessage()]
    assert len(warned) == 1 and "competitor" in warned[0] and "supply_chain" not in warned[0]
    # a skipped relation gets no key
    _, skipped = build_edges(prices, uni, rel.clear(), GraphConfig(relations=["competitor", "sector_industry"]))
    assert skipped["point_in_time"] == {"sector_industry": False} and "competitor" in skipped["skipped"]


# ----------------------------------------------------------- property checks


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 9),
    k=st.integers(1, 10),
    include_negative=st.booleans(),
    data=st.data(),
)
def test_top_k_equals_stable_sort_with_ties(n, k, include_negative, data):
    # few distinct values, so ties are frequent
    values = data.draw(st.lists(st.sampled_from([-0.5, -0.2, 0.0, 0.2, 0.5, np.nan]), min_size=n * n, max_size=n * n))
    rho = np.array(values).reshape(n, n)
    e = top_k_neighbours(rho, k, include_negative)
    for row in range(n):
        score = np.abs(rho[row]) if include_negative else rho[row].copy()
        cand = [c for c in range(n) if c != row and score[c] > 0]
        want = sorted(cand, key=lambda c: (-score[c], c))[:k]
        assert sorted(e.src[e.dst == row].tolist()) == sorted(want)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=5), cap=st.integers(0, 12))
def test_ring_edges_symmetric_and_capped(sizes, cap):
    group = np.repeat(np.arange(len(sizes)), sizes)
    src, dst = ring_edges(group, np.full(group.size, cap))
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert len(pairs) == src.size and all(s != d for s, d in pairs)
    assert pairs == {(d, s) for s, d in pairs}
    assert (group[src] == group[dst]).all()
    deg = np.bincount(src, minlength=group.size)
    for g, size in enumerate(sizes):
        want = size - 1 if size - 1 <= cap else 2 * (cap // 2)
        assert (deg[group == g] == want).all()


def test_chunked_top_k_equals_full_matrix_top_k():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(40, 23)) + rng.normal(size=(40, 1))
    x[rng.random(x.shape) < 0.05] = np.nan
    full = top_k_neighbours(pairwise_corr(x, 30), 4, True)
    chunked = correlation_top_k(x, 30, 4, True, chunk=5)
    key = lambda e: sorted(zip(e.dst.tolist(), e.src.tolist()))
    assert key(chunked) == key(full) and full.src.size > 0
    np.testing.assert_allclose(np.sort(chunked.rho), np.sort(np.clip(full.rho, -1, 1)), atol=1e-12)
