"""GraphIndex: node order, snapshot lookup, hetero/homogeneous graphs, batches."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from alphagraph.runtime.config import GraphConfig
from alphagraph.graph import GraphIndex, build_edges

D = [dt.date(2022, 3, 1) + dt.timedelta(days=i) for i in range(6)]
RELS = ["rolling_correlation", "sector_industry", "competitor", "supply_chain"]
FEATS = ["f_a", "f_b"]


def make_panel() -> pl.DataFrame:
    """6 days; C misses day 2; E lists on day 3. Rows of day 4 are deliberately not code-sorted."""
    rows = []
    for i, day in enumerate(D):
        codes = ["A", "B", "C", "D"] + (["E"] if i >= 3 else [])
        if i == 2:
            codes.remove("C")
        if i == 4:
            codes = codes[::-1]
        rows += [(day, c, float(10 * i + ord(c) - 64), float(-i), float(i)) for c in codes]
    return pl.DataFrame(rows, schema={"date": pl.Date, "code": pl.Utf8, "f_a": pl.Float32, "f_b": pl.Float32, "y_1d": pl.Float32}, orient="row")


def make_edges() -> pl.DataFrame:
    """Snapshots on days 0 and 3; supply_chain has no edges at all."""
    rows = [
        (D[0], "rolling_correlation", "A", "B", 0.9, -1),
        (D[0], "rolling_correlation", "C", "A", 0.5, 1),
        (D[0], "sector_industry", "A", "B", 1.0, 1),
        (D[0], "sector_industry", "B", "A", 1.0, 1),
        (D[0], "competitor", "D", "C", 0.7, 1),
        (D[3], "rolling_correlation", "E", "D", 0.4, 1),
        (D[3], "rolling_correlation", "C", "B", 0.6, -1),
        (D[3], "competitor", "A", "E", 0.2, 1),
        (D[3], "sector_industry", "D", "A", 0.5, 1),
    ]
    frame = pl.DataFrame(rows, schema=["snapshot", "relation", "src", "dst", "weight", "sign"], orient="row")
    return frame.with_columns(
        pl.col("weight").cast(pl.Float32), pl.col("sign").cast(pl.Int8), pl.lit(None, dtype=pl.Float32).alias("rho")
    )


@pytest.fixture(scope="module")
def index() -> GraphIndex:
    return GraphIndex(make_edges(), make_panel(), relations=RELS)


def edge_set(data, codes: list[str], rel: str | None = None) -> set[tuple]:
    src, dst = data.edge_index.tolist()
    return {(codes[s], codes[d]) for s, d in zip(src, dst)}


def test_snapshot_for_picks_latest_snapshot_not_after_date(index):
    assert index.snapshot_for(D[0]) == D[0]
    assert index.snapshot_for(D[2]) == D[0]
    assert index.snapshot_for(D[3]) == D[3]
    assert index.snapshot_for("2022-03-06") == D[3]
    assert index.snapshot_for(np.datetime64("2030-01-01")) == D[3]
    with pytest.raises(KeyError, match="no graph snapshot"):
        index.snapshot_for(D[0] - dt.timedelta(days=1))


def test_node_order_and_features_follow_panel_rows(index):
    panel = make_panel()
    for day in D:
        rows = panel.filter(pl.col("date") == day)
        g = index.homogeneous(day, FEATS, label_cols=["y_1d"])
        assert g.code == rows["code"].to_list()
        assert torch.equal(g.x, torch.tensor(rows.select(FEATS).to_numpy()))
        assert torch.equal(g.y[:, 0], torch.tensor(rows["y_1d"].to_numpy()))
        assert g.num_nodes == rows.height
    assert index.homogeneous(D[4], FEATS).code == ["E", "D", "C", "B", "A"]
    with pytest.raises(KeyError, match="not in the panel"):
        index.homogeneous(dt.date(2030, 1, 1), FEATS)


def test_hetero_has_every_relation_and_drops_non_trading_endpoints(index):
    h = index.hetero(D[2], FEATS)  # snapshot D0; C does not trade on D2
    codes = h["stock"].code
    assert h.edge_types == [("stock", r, "stock") for r in RELS]
    corr = h["stock", "rolling_correlation", "stock"]
    assert edge_set(corr, codes) == {("A", "B")}
    assert corr.edge_attr.tolist() == [[pytest.approx(0.9), -1.0]]
    for rel in ("competitor", "supply_chain"):  # competitor's only edge touches C; supply_chain is empty
        store = h["stock", rel, "stock"]
        assert store.edge_index.shape == (2, 0) and store.edge_index.dtype == torch.long
        assert store.edge_attr.shape == (0, 2)
    assert edge_set(h["stock", "sector_industry", "stock"], codes) == {("A", "B"), ("B", "A")}


def test_homogeneous_edge_type_and_attr_consistent(index):
    g = index.homogeneous(D[4], FEATS)  # snapshot D3, reversed row order
    codes = g.code
    assert g.edge_attr.shape == (g.edge_index.shape[1], 2 + len(RELS))
    assert torch.equal(g.edge_attr[:, 2:].argmax(1), g.edge_type)
    assert torch.equal(g.edge_attr[:, 2:].sum(1), torch.ones(g.edge_type.numel()))
    got = {
        (RELS[t], codes[s], codes[d], round(w, 4), sg)
        for (s, d), t, (w, sg) in zip(g.edge_index.T.tolist(), g.edge_type.tolist(), g.edge_attr[:, :2].tolist())
    }
    want = {
        (rel, s, d, round(w, 4), float(sg))
        for _, rel, s, d, w, sg, _ in make_edges().filter(pl.col("snapshot") == D[3]).iter_rows()
    }
    assert got == want


def test_batch_equals_per_day_graphs_concatenated(index):
    days = [D[4], D[1], D[2], D[4]]
    batch = index.batch(days, FEATS)
    singles = [index.homogeneous(d, FEATS) for d in days]
    assert batch.num_graphs == 4
    offset = np.cumsum([0] + [g.num_nodes for g in singles])
    assert torch.equal(batch.x, torch.cat([g.x for g in singles]))
    assert torch.equal(batch.edge_index, torch.cat([g.edge_index + int(o) for g, o in zip(singles, offset)], dim=1))
    assert torch.equal(batch.edge_attr, torch.cat([g.edge_attr for g in singles]))
    assert torch.equal(batch.edge_type, torch.cat([g.edge_type for g in singles]))
    assert torch.equal(batch.batch, torch.repeat_interleave(torch.arange(4), torch.tensor([g.num_nodes for g in singles])))
    assert batch.code == [g.code for g in singles]
    for got, want in zip(batch.to_data_list(), singles):
        assert torch.equal(got.edge_index, want.edge_index)


def test_days_before_first_snapshot_have_no_edges():
    edges = make_edges().filter(pl.col("snapshot") == D[3])
    g = GraphIndex(edges, make_panel()).hetero(D[1], FEATS)
    assert g.edge_types  # every relation present in the edges frame, empty
    assert all(g[et].edge_index.shape == (2, 0) for et in g.edge_types)


def test_default_relation_order_and_built_edges_roundtrip():
    rng = np.random.default_rng(0)
    n_days, codes = 60, [f"S{i}" for i in range(8)]
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_days, 8)) + rng.normal(0, 0.01, (n_days, 1)), axis=0))
    dates = [dt.date(2022, 1, 3) + dt.timedelta(days=i) for i in range(n_days)]
    prices = pl.DataFrame(
        {"date": [d for d in dates for _ in codes], "code": codes * n_days, "close": close.ravel()},
        schema_overrides={"date": pl.Date},
    )
    uni = pl.DataFrame({"code": codes, "sector": ["X"] * 8, "industry": ["a", "b"] * 4})
    rel = pl.DataFrame({"src": ["S0"], "dst": ["S1"], "relation": ["supply_chain"], "weight": [1.0]})
    edges, _ = build_edges(prices, uni, rel, GraphConfig(corr_window=20, top_k=2, rebuild_every=10))
    panel = prices.select("date", "code", pl.col("close").cast(pl.Float32).alias("f_a"))
    index = GraphIndex(edges, panel)
    assert index.relations == ["rolling_correlation", "sector_industry", "supply_chain"]
    g = index.homogeneous(dates[45], ["f_a"])
    snap = edges.filter(pl.col("snapshot") == index.snapshot_for(dates[45]))
    assert g.edge_index.shape[1] == snap.height
    sc = g.edge_type == 2
    assert [g.code[i] for i in g.edge_index[:, sc].flatten().tolist()] == ["S0", "S1"]


def test_gather_reads_the_rows_features_would_hold_without_materializing_them():
    panel = make_panel().with_columns(pl.when(pl.col("f_b") == -2).then(None).otherwise(pl.col("y_1d")).alias("y_1d"))
    shuffled = panel.sample(fraction=1.0, shuffle=True, seed=3)  # rows not grouped by date: a non-identity order
    # Float32 columns in one chunk (make_panel's) are read through zero-copy numpy views; in two chunks through polars.
    chunked = pl.concat([panel.head(7), panel.slice(7)], rechunk=False)
    cols = [*FEATS, "y_1d"]
    for frame in (panel, shuffled, chunked):
        idx = GraphIndex(make_edges(), frame, relations=RELS)
        pos = np.array([5, 0, 7, 7, 3, frame.height - 1])
        got, run = idx.gather(pos, cols), idx.gather(np.arange(4, 9), cols)
        assert not idx._features  # nothing held for the whole panel
        full = idx.features(cols)
        torch.testing.assert_close(got, full[torch.from_numpy(pos)], equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(run, full[4:9], equal_nan=True, rtol=0, atol=0)
        assert torch.isnan(full[:, 2]).sum() == 3  # the nulls (day 2: C is absent), as NaN
        # A batch's nodes carry their own panel rows' values.
        batch = idx.batch([D[4], D[2]], FEATS, ["y_1d"], codes=False)
        assert not hasattr(batch, "code") or batch.code is None
        want = torch.from_numpy(frame.select(FEATS).to_numpy()[batch.row.numpy()])
        torch.testing.assert_close(batch.x, want, rtol=0, atol=0)
        views = [c for c, v in idx._views.items() if v is not None]
        assert views == ([] if frame is chunked else FEATS), views


def test_a_batch_maps_only_its_own_days(index):
    before = index.mapped_days
    index.batch([D[1], D[4]], FEATS)
    assert index.mapped_days - before == 2


def test_gather_in_several_column_blocks_reads_the_same_values(monkeypatch):
    from alphagraph.graph import loader

    panel = make_panel()
    cols = [*FEATS, "y_1d"]
    idx = GraphIndex(make_edges(), panel, relations=RELS)
    pos = np.array([5, 0, 7, 7, 3, panel.height - 1])
    want = idx.gather(pos, cols)
    monkeypatch.setattr(loader, "GATHER_COLUMNS", 2)  # blocks of 2 columns, the last one short
    torch.testing.assert_close(idx.gather(pos, cols), want, equal_nan=True, rtol=0, atol=0)
    assert len(cols) % 2 == 1
