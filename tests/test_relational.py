"""Relational features (lgbm_graph): hand-computed values, snapshot rule, leakage, config, the stage."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import sys

import numpy as np
import polars as pl
import pytest
import yaml

from alphagraph.runtime.config import ConfigError, params_from_dict
from alphagraph.runtime.errors import UserError
from alphagraph.graph import EDGE_SCHEMA
from alphagraph.graph.relational import (
    RelationalSpec,
    column_names,
    relational_features,
    relational_raw,
    snapshot_map,
    spec_from_params,
    standardize,
)
from tests.conftest import ROOT, SMALL_PARAMS, deep_merge
from tests.leakage import assert_unchanged_through, perturb_after, truncate_after

# ------------------------------------------------------------------ a tiny market by hand

D = [dt.date(2021, 1, 4) + dt.timedelta(days=i) for i in range(6)]  # d0 .. d5, every day trades
CLOSE = {  # None: no price row (B is suspended on d4, so its d5 return spans the gap)
    "A": [10.0, 11.0, 12.1, 12.1, 13.31, 13.31],
    "B": [20.0, 18.0, 18.0, 19.8, None, 21.78],
    "C": [5.0] * 6,
    "D": [8.0, 8.8, 8.8, 8.8, 7.92, 7.92],
}
FX = {"A": 1.0, "B": -2.0, "C": 0.5, "D": 3.0}  # a normalized feature, the same every day but D's on d1
SC, CORR = "supply_chain", "rolling_correlation"
SPEC = RelationalSpec(relations=[SC, CORR], neighbour_features=["f_x"], rebuild_every=3)  # snapshots d0, d3


def tiny_prices() -> pl.DataFrame:
    rows = [(D[i], c, v) for c, vs in CLOSE.items() for i, v in enumerate(vs) if v is not None]
    return pl.DataFrame(rows, schema={"date": pl.Date, "code": pl.Utf8, "close": pl.Float64}, orient="row").sort(
        "date", "code"
    )


def tiny_panel() -> pl.DataFrame:
    p = tiny_prices().select("date", "code")
    fx = pl.col("code").replace_strict(FX, return_dtype=pl.Float32)
    # D's feature missing on d1: a neighbour without the value is skipped
    return p.with_columns(pl.when((pl.col("code") == "D") & (pl.col("date") == D[1])).then(None).otherwise(fx).alias("f_x"))


def edge_rows(rows: list[tuple]) -> pl.DataFrame:
    """(snapshot, relation, src, dst, weight, sign) -> the edges schema."""
    frame = pl.DataFrame(rows, schema=["snapshot", "relation", "src", "dst", "weight", "sign"], orient="row")
    return frame.with_columns(rho=None).select(pl.col(c).cast(t) for c, t in EDGE_SCHEMA.items())


def tiny_edges() -> pl.DataFrame:
    return edge_rows(
        [
            # snapshot d0: A, B supply C; C supplies D; correlations into B, one negative
            (D[0], SC, "A", "C", 0.6, 1),
            (D[0], SC, "B", "C", 0.4, 1),
            (D[0], SC, "C", "D", 1.0, 1),
            (D[0], CORR, "A", "B", 0.5, -1),
            (D[0], CORR, "D", "B", 0.25, 1),
            # snapshot d3: A no longer supplies C, D does; A supplies D; no correlation edges at all
            (D[3], SC, "B", "C", 1.0, 1),
            (D[3], SC, "D", "C", 0.5, 1),
            (D[3], SC, "A", "D", 2.0, 1),
        ]
    )


def at(frame: pl.DataFrame, day: int, code: str, col: str):
    return frame.filter((pl.col("date") == D[day]) & (pl.col("code") == code))[col].item()


@pytest.fixture(scope="module")
def raw() -> pl.DataFrame:
    return relational_raw(tiny_panel(), tiny_prices(), tiny_edges(), SPEC)


def test_hand_computed_supply_chain(raw):
    col = lambda what: f"f_rel_{SC}_{what}"
    # d1 (snapshot d0): C <- A (0.6, ret +0.1), B (0.4, ret -0.1)
    assert at(raw, 1, "C", col("ret_1d")) == pytest.approx((0.6 * 0.1 + 0.4 * -0.1) / 1.0)
    assert at(raw, 1, "C", col("ret_1d_sum")) == pytest.approx(0.6 * 0.1 + 0.4 * -0.1)
    assert at(raw, 1, "C", col("degree")) == 2
    assert at(raw, 1, "C", col("ret_5d")) is None  # nobody has 5 days of history yet
    assert at(raw, 1, "C", col("x")) == pytest.approx(0.6 * 1.0 + 0.4 * -2.0)
    # d4 (snapshot d3): C <- B (1.0, suspended: no return, skipped), D (0.5, ret -0.1)
    assert at(raw, 4, "C", col("ret_1d")) == pytest.approx(-0.1)
    assert at(raw, 4, "C", col("ret_1d_sum")) == pytest.approx(0.5 * -0.1)
    assert at(raw, 4, "C", col("degree")) == 2  # B is still an in-neighbour of the snapshot
    assert at(raw, 4, "C", col("x")) == pytest.approx(0.5 * 3.0 / 0.5)  # B has no panel row on d4
    # d5: B's return spans its suspension, 21.78 / 19.8 - 1
    assert at(raw, 5, "C", col("ret_1d")) == pytest.approx((1.0 * 0.1 + 0.5 * 0.0) / 1.5)
    assert at(raw, 5, "C", col("ret_1d_sum")) == pytest.approx(0.1)
    # B has only 4 earlier rows: no 5-day return, skipped in the weights too
    assert at(raw, 5, "C", col("ret_5d")) == pytest.approx(0.5 * (7.92 / 8 - 1) / 0.5)
    # D <- C (d0 snapshot), D <- A (d3 snapshot, weight 2)
    assert at(raw, 2, "D", col("ret_1d")) == pytest.approx(0.0)
    assert at(raw, 4, "D", col("ret_1d")) == pytest.approx(0.1)
    assert at(raw, 4, "D", col("ret_1d_sum")) == pytest.approx(0.2)
    assert at(raw, 5, "D", col("ret_5d")) == pytest.approx(13.31 / 10 - 1)
    # A has no suppliers: degree 0, every value null; d0 has no returns at all
    assert at(raw, 3, "A", col("degree")) == 0
    assert at(raw, 3, "A", col("ret_1d")) is None and at(raw, 3, "A", col("ret_1d_sum")) is None
    assert at(raw, 0, "C", col("ret_1d")) is None and at(raw, 0, "C", col("ret_1d_sum")) is None
    assert at(raw, 0, "C", col("x")) == pytest.approx(0.6 * 1.0 + 0.4 * -2.0)


def test_hand_computed_signed_correlation(raw):
    col = lambda what: f"f_rel_{CORR}_{what}"
    # d1: B <- A (weight 0.5, sign -1, ret +0.1), D (0.25, +1, ret +0.1, f_x missing on d1)
    assert at(raw, 1, "B", col("ret_1d")) == pytest.approx((-0.5 * 0.1 + 0.25 * 0.1) / 0.75)
    assert at(raw, 1, "B", col("ret_1d_sum")) == pytest.approx(-0.5 * 0.1 + 0.25 * 0.1)
    assert at(raw, 1, "B", col("x")) == pytest.approx(-0.5 * 1.0 / 0.5)  # D skipped: normalized by A's |w| only
    assert at(raw, 2, "B", col("x")) == pytest.approx((-0.5 * 1.0 + 0.25 * 3.0) / 0.75)


def test_snapshot_rule_latest_snapshot_on_or_before_the_date(raw):
    smap = snapshot_map(tiny_prices(), tiny_edges(), pl.Series(D), rebuild_every=3)
    assert smap["snapshot"].to_list() == [D[0], D[0], D[0], D[3], D[3], D[3]]
    # d2 still uses d0's edges (A -> C), d3 already d3's (A gone, D in)
    sc = f"f_rel_{SC}_ret_1d"
    assert at(raw, 2, "C", sc) == pytest.approx((0.6 * 0.1 + 0.4 * 0.0) / 1.0)
    assert at(raw, 3, "C", sc) == pytest.approx((1.0 * 0.1 + 0.5 * 0.0) / 1.5)
    # d3 has no correlation edges: B has none from d3 on, not d0's left over
    for day in (3, 5):  # (B has no row on d4)
        assert at(raw, day, "B", f"f_rel_{CORR}_degree") == 0
    assert at(raw, 3, "B", f"f_rel_{CORR}_ret_1d") is None
    assert at(raw, 2, "B", f"f_rel_{CORR}_degree") == 2


def test_edges_off_the_snapshot_rule_are_an_error():
    stray = pl.concat([tiny_edges(), edge_rows([(D[2], SC, "A", "C", 1.0, 1)])])
    with pytest.raises(UserError, match="graph.rebuild_every"):
        relational_raw(tiny_panel(), tiny_prices(), stray, SPEC)


def test_rows_keep_the_panel_order_and_names():
    panel = tiny_panel().sample(fraction=1.0, shuffle=True, seed=3)
    out = relational_features(panel, tiny_prices(), tiny_edges(), SPEC, clip=5.0)
    assert out.select("date", "code").equals(panel.select("date", "code"))
    assert out.columns[2:] == column_names(SPEC)
    assert all(c.startswith("f_rel_") for c in column_names(SPEC))
    assert len(column_names(SPEC)) == 2 * (2 + 1 + 1 + 1)


def test_standardize_per_date_clip_and_nulls():
    frame = pl.DataFrame(
        {
            "date": [D[0]] * 4 + [D[1]] * 3,
            "x": [1.0, 2.0, 3.0, None, 5.0, 5.0, 5.0],
            "y": [0.0, 0.0, 0.0, 1000.0, 1.0, 2.0, 3.0],
        }
    )
    out = standardize(frame, ["x", "y"], clip=1.2)
    x = out["x"].to_list()
    assert x[0] == pytest.approx(-1.0) and x[1] == pytest.approx(0.0) and x[2] == pytest.approx(1.0)
    assert x[3] is None  # null stays null
    assert x[4:] == [0.0, 0.0, 0.0]  # constant on the date
    y = out["y"].to_list()
    assert y[3] == pytest.approx(1.2) and y[0] == pytest.approx(-0.5)  # clipped; (0 - 250) / 500
    assert out["x"].dtype == pl.Float32


def test_unknown_neighbour_feature_names_the_param():
    spec = dataclasses.replace(SPEC, neighbour_features=["f_nope"])
    with pytest.raises(UserError, match="lgbm_graph.neighbour_features"):
        relational_raw(tiny_panel(), tiny_prices(), tiny_edges(), spec)


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"lgbm_graph": {"relations": ["supply_chains"]}}, "lgbm_graph.relations: unknown relation 'supply_chains'"),
        (
            {"graph": {"relations": ["supply_chain"]}, "lgbm_graph": {"relations": ["competitor"]}},
            "lgbm_graph.relations: known relation 'competitor' is not in graph.relations",
        ),
        ({"lgbm_graph": {"relations": []}}, "lgbm_graph.relations: is empty"),
        ({"lgbm_graph": {"relations": ["competitor", "competitor"]}}, "lgbm_graph.relations: has duplicates"),
        ({"lgbm_graph": {"neighbour_features": ["rvol_20"]}}, "lgbm_graph.neighbour_features: 'rvol_20' is not"),
        ({"lgbm_graph": {"neighbour_features": ["f_rel_x"]}}, "lgbm_graph.neighbour_features: 'f_rel_x' is not"),
        ({"lgbm_graph": {"neighbour_features": ["f_a", "f_a"]}}, "lgbm_graph.neighbour_features: has duplicates"),
        ({"lgbm_graph": {"neighbour_features": "f_rvol_20"}}, "lgbm_graph.neighbour_features: expected a list"),
        ({"lgbm_graph": {"relation": None}}, "unknown key lgbm_graph.relation"),
    ],
)
def test_bad_lgbm_graph_params_name_the_key(raw, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("[", r"\[")):
        params_from_dict(raw)


def test_spec_defaults_to_graph_relations():
    p = params_from_dict({"graph": {"relations": ["supply_chain", "competitor"]}})
    assert spec_from_params(p).relations == ["supply_chain", "competitor"]
    p = params_from_dict({"lgbm_graph": {"relations": ["supply_chain"]}})
    spec = spec_from_params(p)
    assert spec.relations == ["supply_chain"] and spec.rebuild_every == p.graph.rebuild_every


# ------------------------------------------------------------------ leakage on a small market


def perturb_edges_after(edges: pl.DataFrame, t: dt.date, seed: int) -> pl.DataFrame:
    """Later snapshots: weights rescaled, signs flipped, a third of the edges dropped, new ones added."""
    rng = np.random.default_rng(seed)
    late = edges.filter(pl.col("snapshot") > t)
    changed = late.with_columns(
        weight=(pl.col("weight") * pl.Series(rng.uniform(0.1, 3.0, late.height), dtype=pl.Float32)),
        sign=pl.Series(rng.choice([-1, 1], late.height), dtype=pl.Int8),
    ).filter(pl.Series(rng.uniform(size=late.height) > 1 / 3))
    shuffled = late.with_columns(src=pl.col("src").shuffle(seed=seed))  # edges that did not exist
    return pl.concat([edges.filter(pl.col("snapshot") <= t), changed, shuffled.filter(pl.col("src") != pl.col("dst"))])


def test_future_perturbation_changes_no_feature_dated_on_or_before_t(small_pipeline):
    sp = small_pipeline
    spec = spec_from_params(sp.params)
    panel = sp.panel.select("date", "code", *spec.neighbour_features)
    dates = panel["date"].unique().sort()
    base = relational_features(panel, sp.prices, sp.edges, spec, clip=5.0)
    covered = base.select(pl.col(f"f_rel_{r}_ret_1d").is_not_null().mean() for r in spec.relations).row(0)
    assert min(covered) > 0.5, covered  # the check is not vacuous
    snaps = sp.edges["snapshot"].unique().sort()
    k = int(snaps.search_sorted(dates[300]))
    between = dates.filter((dates > snaps[k]) & (dates < snaps[k + 1]))[0]
    for t in (snaps[k], between):  # a snapshot day, a day between two snapshots
        noisy_panel = panel.with_columns(
            pl.when(pl.col("date") > t).then(pl.col(c) * 3.0 - 1.0).otherwise(pl.col(c)).alias(c) for c in spec.neighbour_features
        )
        after = relational_features(noisy_panel, perturb_after(sp.prices, t, seed=1), perturb_edges_after(sp.edges, t, 2), spec, 5.0)
        assert_unchanged_through(base, after, t)
        assert not base.filter(pl.col("date") > t).equals(after.filter(pl.col("date") > t))  # the perturbation bites
        cut = relational_features(
            truncate_after(panel, t), truncate_after(sp.prices, t), sp.edges.filter(pl.col("snapshot") <= t), spec, 5.0
        )
        assert_unchanged_through(base, cut, t)


def test_reruns_are_bit_identical(small_pipeline):
    sp = small_pipeline
    spec = spec_from_params(sp.params)
    a = relational_raw(sp.panel, sp.prices, sp.edges, spec)
    b = relational_raw(sp.panel, sp.prices, sp.edges, spec)
    assert a.equals(b)  # float sums in a fixed order (joins do not fix one)


def reference_raw(panel, prices, edges, spec) -> pl.DataFrame:
    """The definition written as joins and group-bys (edge x day rows): the slow, obvious form."""
    from alphagraph.graph.relational import PREFIX, neighbour_values, value_names

    keys = panel.select("date", "code")
    smap = snapshot_map(prices, edges, keys["date"], spec.rebuild_every)
    values = neighbour_values(prices, panel, spec)
    out = keys.with_row_index("_row")
    for rel in spec.relations:
        e = edges.filter(pl.col("relation") == rel).select(
            "snapshot", "src", "dst",
            w=pl.col("weight").cast(pl.Float64).abs() * pl.col("sign").cast(pl.Float64),
            a=pl.col("weight").cast(pl.Float64).abs(),
        )
        day = smap.join(e, on="snapshot").join(values, left_on=["date", "src"], right_on=["date", "code"], how="left")
        aggs = [pl.len().cast(pl.Int32).alias(f"{PREFIX}{rel}_degree")]
        for col, suffix in value_names(spec):
            num, den = (pl.col("w") * pl.col(col)).sum(), pl.col("a").filter(pl.col(col).is_not_null()).sum()
            aggs.append(pl.when(den > 0).then(num / den).alias(f"{PREFIX}{rel}_{suffix}"))
        has = pl.col("last_ret_1d").is_not_null()
        aggs.append(pl.when(has.any()).then((pl.col("w") * pl.col("last_ret_1d")).sum()).alias(f"{PREFIX}{rel}_ret_1d_sum"))
        agg = day.group_by("date", "dst").agg(aggs)
        out = out.join(agg, left_on=["date", "code"], right_on=["date", "dst"], how="left")
        out = out.with_columns(pl.col(f"{PREFIX}{rel}_degree").fill_null(0))
    return keys.hstack(out.sort("_row").select(column_names(spec)))


def test_sparse_products_match_the_join_definition(small_pipeline):
    """The grid-and-sparse-product computation gives the join definition's values (up to the
    order of float sums) and its nulls, on a market with suspensions, listings and delistings."""
    sp = small_pipeline
    spec = spec_from_params(sp.params)
    got, want = relational_raw(sp.panel, sp.prices, sp.edges, spec), reference_raw(sp.panel, sp.prices, sp.edges, spec)
    assert got.columns == want.columns and got.schema == want.schema
    assert got.select("date", "code").equals(want.select("date", "code"))
    for c in column_names(spec):
        assert got[c].is_null().equals(want[c].is_null()), c
        if c.endswith("_degree"):
            assert got[c].equals(want[c]), c
        else:
            np.testing.assert_allclose(got[c].drop_nulls().to_numpy(), want[c].drop_nulls().to_numpy(), rtol=1e-9, atol=1e-12, err_msg=c)
    assert got.select(pl.col(column_names(spec)).null_count()).sum_horizontal().item() > 0  # nulls were exercised


# ------------------------------------------------------------------ the stage


def load_stage(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_stage", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lgbm_graph_stage_predicts_every_val_and_test_row(small_pipeline, tmp_path, monkeypatch):
    from alphagraph.runtime import paths
    from alphagraph.data.benchmark import equal_weight_benchmark
    from alphagraph.runtime.io import write_json, write_parquet
    from alphagraph.evaluation.split import assign_split, folds_to_json

    sp = small_pipeline
    monkeypatch.chdir(tmp_path)
    overrides = deep_merge(SMALL_PARAMS, {"lgbm": {"n_estimators": 40, "early_stopping_rounds": 10}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(overrides))
    write_parquet(sp.panel, paths.NORMALIZED_PANEL)
    write_parquet(sp.prices, paths.PRICES)
    write_parquet(equal_weight_benchmark(sp.prices), paths.BENCHMARK)
    write_parquet(sp.edges, paths.EDGES)
    write_json(folds_to_json(sp.folds, sp.params.split), paths.FOLDS)
    monkeypatch.setattr(sys, "argv", ["model.py", "--model", "lgbm_graph"])
    load_stage("model").main()

    preds = pl.read_parquet(paths.PREDICTIONS / "lgbm_graph.parquet")
    reach = max(sp.params.features.horizons) + sp.params.features.label_delay
    for fold in sp.folds:
        want = assign_split(sp.panel, fold, reach).filter(pl.col("split").is_in(["val", "test"]))
        got = preds.filter(pl.col("fold") == fold.fold)
        assert got.height == want.height
        assert got.join(want, on=["date", "code", "split"], how="anti").is_empty()
        assert got.select(pl.col("^pred_.*$").is_null().sum()).sum_horizontal().item() == 0
    metrics = json.loads((paths.DETAIL / "lgbm_graph.json").read_text())
    spec = spec_from_params(sp.params)
    assert metrics["relational"]["features"] == len(column_names(spec))
    assert set(metrics["relational"]["coverage"]) == set(spec.relations)
    assert (paths.PLOTS / "lgbm_graph" / "rank_ic.csv").exists()
    assert (tmp_path / "metrics/timings/lgbm_graph.json").exists()
    importance = pl.concat([pl.read_csv(f) for f in sorted((paths.MODELS / "lgbm_graph").glob("fold*/importance.csv"))])
    assert importance["fold"].unique().sort().to_list() == [f.fold for f in sp.folds]
    rel_gain = importance.filter(pl.col("feature").str.starts_with("f_rel_"))["gain"].sum()
    assert set(column_names(spec)) <= set(importance["feature"]) and rel_gain > 0
    assert not (paths.METRICS / "lgbm.json").exists()  # the plain model's outputs are untouched
