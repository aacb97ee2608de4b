"""Linear references (ridge per horizon): a planted relation, alpha chosen on validation only, leakage,
determinism, config errors and the zoo stage."""

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
from alphagraph.models.linear import (
    fit_linear_fold,
    fold_output,
    linear_index,
    train_zoo_fold,
    write_coefficients,
    zscored_targets,
)
from alphagraph.evaluation.split import Fold, assign_split
from tests.conftest import ROOT, SMALL_PARAMS, deep_merge
from tests.leakage import assert_unchanged_through, perturb_after, truncate_after
from tests.test_relational import perturb_edges_after

HORIZONS = (1, 5, 10, 20)  # the default features.horizons: the synthetic panel has every label


def with_alphas(params, alphas):
    return dataclasses.replace(params, linear=dataclasses.replace(params.linear, alphas=list(alphas)))


# ------------------------------------------------------------------ a planted linear market


def planted_panel(n_stocks: int = 60, n_days: int = 320, noise: float = 0.3, seed: int = 0) -> pl.DataFrame:
    """f_a and f_b correlated (0.9), signal f_a - 0.8 f_b, f_c pure noise, f_d noise with nulls; y = signal + noise.

    With correlated features the ridge direction moves with alpha (to f_a + 0.28 f_b-ish when shrunk hard),
    so the validation labels decide which alpha wins.
    """
    rng = np.random.default_rng(seed)
    days = np.busday_offset(np.datetime64("2020-01-01"), np.arange(n_days), roll="forward")
    shape = (n_days, n_stocks)
    a = rng.normal(size=shape)
    b = 0.9 * a + np.sqrt(1 - 0.81) * rng.normal(size=shape)
    signal = a - 0.8 * b
    d = rng.normal(size=shape)
    frame = {
        "date": np.repeat(days, n_stocks),
        "code": np.tile([f"S{i:03d}" for i in range(n_stocks)], n_days),
        "f_a": a.ravel(), "f_b": b.ravel(), "f_c": rng.normal(size=shape).ravel(),
        "f_d": np.where(rng.uniform(size=shape) < 0.1, np.nan, d).ravel(),
    }
    for h in HORIZONS:
        frame[f"y_{h}d"] = (signal + noise * np.sqrt(h) * rng.normal(size=shape)).ravel()
    panel = pl.DataFrame(frame).with_columns(pl.col("date").cast(pl.Date), pl.col("^f_.*$").cast(pl.Float32))
    return panel.with_columns(pl.col("f_d").fill_nan(None))


def planted_fold(panel: pl.DataFrame) -> Fold:
    d = panel["date"].unique().sort().to_list()
    return Fold(0, (d[0], d[159]), (d[180], d[239]), (d[260], d[319]))


@pytest.fixture(scope="module")
def planted():
    panel = planted_panel()
    return panel, planted_fold(panel), params_from_dict({})


def fit(panel, fold, params, name="linear"):
    return fit_linear_fold(name, linear_index(name, panel, params), fold, params)


def daily_spearman(frame: pl.DataFrame, a: str, b: str) -> float:
    return frame.group_by("date").agg(pl.corr(a, b, method="spearman"))[a].mean()


def test_recovers_a_planted_linear_relation(planted):
    panel, fold, params = planted
    result = fit(panel, fold, params)
    preds = result.predictions
    assert preds.columns == ["date", "code", "fold", "split", *[f"pred_{h}d" for h in HORIZONS]]
    assert set(preds["split"]) == {"val", "test"} and preds["pred_1d"].null_count() == 0
    truth = panel.with_columns(signal=pl.col("f_a") - 0.8 * pl.col("f_b")).select("date", "code", "signal")
    test = preds.filter(pl.col("split") == "test").join(truth, on=["date", "code"])
    assert test.height == 60 * 60
    assert daily_spearman(test, "pred_1d", "signal") > 0.9  # the direction, not just some signal
    labelled = test.join(panel.select("date", "code", "y_1d"), on=["date", "code"])
    assert daily_spearman(labelled, "pred_1d", "y_1d") > 0.7  # the ceiling: about 0.83
    w = dict(zip(result.features, result.coef[1]))
    assert w["f_a"] > 0 > w["f_b"] and abs(w["f_c"]) < 0.1 * w["f_a"]
    assert result.chosen_ic(1) > 0.7


def test_targets_are_zscored_within_each_date():
    panel = pl.DataFrame({
        "date": [dt.date(2021, 1, 4)] * 3 + [dt.date(2021, 1, 5)] * 3 + [dt.date(2021, 1, 6)] * 2,
        "y_1d": [1.0, 2.0, 3.0, 10.0, None, 30.0, 5.0, 5.0],
    })
    z = zscored_targets(panel, np.arange(8), [1])[:, 0]
    np.testing.assert_allclose(z[:3], [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(z[[3, 5]], [-0.5 ** 0.5, 0.5 ** 0.5])
    assert np.isnan(z[4]) and np.isnan(z[6:]).all()  # no label; a constant date carries no ranking


# ------------------------------------------------------------------ alpha chosen on validation only


def rows_of(panel, fold, split, params):
    from alphagraph.evaluation.walkforward import label_reach

    keys = assign_split(panel.select("date", "code"), fold, label_reach(params)).filter(pl.col("split") == split)
    return panel.join(keys.select("date", "code"), on=["date", "code"], how="semi")


def relabel(panel, rows, y: str, values) -> pl.DataFrame:
    new = rows.select("date", "code").with_columns(pl.Series("__y", values, dtype=pl.Float64))
    out = panel.join(new, on=["date", "code"], how="left")
    return out.with_columns(pl.coalesce("__y", y).alias(y)).drop("__y")


def test_alpha_is_chosen_on_validation_rows_never_on_test_rows(planted):
    panel, fold, params = planted
    params = with_alphas(params, [0.01, 1000.0])
    base = fit(panel, fold, params)
    assert base.alpha[1] == 0.01  # with the planted labels the least shrunk direction wins
    # Test labels: noise, reversed, missing: nothing moves.
    test = rows_of(panel, fold, "test", params)
    rng = np.random.default_rng(5)
    noisy = panel
    for h in HORIZONS:
        noisy = relabel(noisy, test, f"y_{h}d", rng.normal(size=test.height) * 10 - test[f"y_{h}d"].to_numpy())
    noisy = noisy.with_columns(pl.when(pl.col("date") >= fold.test[1] - dt.timedelta(days=7)).then(None).otherwise(pl.col("y_5d")).alias("y_5d"))
    again = fit(noisy, fold, params)
    assert not noisy.equals(panel)
    assert again.alpha == base.alpha and again.val_rank_ic == base.val_rank_ic
    assert again.predictions.equals(base.predictions)
    assert all(np.array_equal(again.coef[h], base.coef[h]) for h in HORIZONS)
    # Validation labels that agree with the heavily shrunk fit: it is chosen, its predictions served.
    shrunk = fit(panel, fold, with_alphas(params, [1000.0]))
    val = rows_of(panel, fold, "val", params).sort("date", "code")
    served = val.join(shrunk.predictions, on=["date", "code"]).sort("date", "code")
    relabelled = relabel(panel, val, "y_1d", served["pred_1d"].cast(pl.Float64).to_numpy())
    moved = fit(relabelled, fold, params)
    assert moved.alpha[1] == 1000.0 and moved.alpha[5] == base.alpha[5]
    assert not moved.predictions["pred_1d"].equals(base.predictions["pred_1d"])
    # The fit itself is on train rows only: the same alpha gives the same coefficients.
    assert np.array_equal(moved.coef[1], shrunk.coef[1])


# ------------------------------------------------------------------ leakage


def perturb_panel_after(panel: pl.DataFrame, t: dt.date) -> pl.DataFrame:
    """Features and labels dated after t: rescaled, shifted and partly nulled."""
    later = pl.col("date") > t
    cols = [c for c in panel.columns if c.startswith(("f_", "y_"))]
    return panel.with_columns(
        pl.when(later & (pl.col("code").hash(1) % 7 == 0)).then(None)
        .when(later).then(pl.col(c) * 3.0 - 1.0).otherwise(pl.col(c)).alias(c)
        for c in cols
    )


@pytest.mark.parametrize("name", ["linear", "linear_graph"])
def test_future_data_changes_no_prediction_dated_on_or_before_t(small_pipeline, name):
    """A fold's predictions dated <= t (inside its test window) read nothing dated later: features,
    labels, prices, edges after t perturbed or cut off."""
    sp = small_pipeline
    params = with_alphas(sp.params, [0.1, 10.0])
    fold = sp.folds[0]
    test_days = sp.panel.filter(pl.col("date").is_between(*fold.test))["date"].unique().sort()
    t = test_days[test_days.len() // 2]

    def run(panel, prices, edges):
        index = linear_index(name, panel, params, edges, prices)
        return fit_linear_fold(name, index, fold, params).predictions

    base = run(sp.panel, sp.prices, sp.edges)
    noisy = run(perturb_panel_after(sp.panel, t), perturb_after(sp.prices, t, seed=1), perturb_edges_after(sp.edges, t, 2))
    assert_unchanged_through(base, noisy, t)
    assert not base.filter(pl.col("date") > t).equals(noisy.filter(pl.col("date") > t))  # the perturbation bites
    cut = run(truncate_after(sp.panel, t), truncate_after(sp.prices, t), sp.edges.filter(pl.col("snapshot") <= t))
    assert_unchanged_through(base, cut, t)


# ------------------------------------------------------------------ determinism, outputs


def test_reruns_are_bit_identical(small_pipeline, tmp_path):
    sp = small_pipeline
    runs = []
    for k in range(2):
        index = linear_index("linear_graph", sp.panel, sp.params, sp.edges, sp.prices)
        out, frames = train_zoo_fold("linear_graph", sp.panel, index, sp.folds[0], sp.params, tmp_path / f"run{k}")
        runs.append((out, frames, (tmp_path / f"run{k}" / "coefficients.json").read_bytes()))
    (a, fa, ja), (b, fb, jb) = runs
    assert a.predictions.equals(b.predictions) and fa["coefficients"].equals(fb["coefficients"]) and ja == jb
    assert any(f.startswith("f_rel_") for f in json.loads(ja)["features"])


def test_training_record_names_the_alpha_and_its_validation_rank_ic(planted, tmp_path):
    panel, fold, params = planted
    result = fit(panel, fold, params)
    curve, entries = fold_output(result).training_record(0)
    assert entries["alpha_1d_fold0"] == result.alpha[1] and entries["alpha_20d_fold0"] == result.alpha[20]
    assert entries["val_rank_ic_1d_fold0"] == entries["val_best_fold0"] == round(result.chosen_ic(1), 6)
    assert curve.columns == ["fold", "alpha", *[f"val_rank_ic_{h}d" for h in HORIZONS]]
    assert curve["alpha"].to_list() == sorted(params.linear.alphas)
    write_coefficients(result, tmp_path / "c.json")
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["features"] == ["f_a", "f_b", "f_c", "f_d"] and doc["horizons"]["1"]["alpha"] == result.alpha[1]
    assert doc["horizons"]["1"]["coef"] == result.coef[1].tolist()


def test_kind_and_inputs_are_checked(planted):
    panel, fold, params = planted
    with pytest.raises(ValueError, match="linear kind"):
        linear_index("ridge", panel, params)
    with pytest.raises(ValueError, match="edges and the prices"):
        linear_index("linear_graph", panel, params)
    with pytest.raises(ValueError, match="built for linear"):
        fit_linear_fold("linear_graph", linear_index("linear", panel, params), fold, params)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"alphas": []}, "linear.alphas: is empty"),
        ({"alphas": [1.0, 0.0]}, r"linear.alphas: every penalty must be a finite number > 0, got \[0.0\]"),
        ({"alphas": [-1]}, "linear.alphas: every penalty must be"),
        ({"alphas": ["inf"]}, "linear.alphas: every penalty must be"),
        ({"alphas": [1, 1.0]}, "linear.alphas: has duplicates"),
        ({"alphas": 1.0}, "linear.alphas: expected a list"),
        ({"num_threads": -1}, "linear.num_threads: must be >= 0"),
        ({"alpha": [1.0]}, "unknown key linear.alpha"),
    ],
)
def test_bad_linear_params_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        params_from_dict({"linear": override})


# ------------------------------------------------------------------ the zoo stage


def test_the_zoo_stage_trains_linear_graph(small_pipeline, tmp_path, monkeypatch):
    from alphagraph.runtime import paths
    from alphagraph.data.benchmark import equal_weight_benchmark
    from alphagraph.runtime.io import write_json, write_parquet
    from alphagraph.evaluation.split import folds_to_json

    sp = small_pipeline
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(deep_merge(SMALL_PARAMS, {"zoo": {"models": {"linear": "linear", "linear_graph": "linear"}}, "ensemble": {"members": ["linear", "linear_graph"]}})))
    write_parquet(sp.panel, paths.NORMALIZED_PANEL)
    write_parquet(sp.prices, paths.PRICES)
    write_parquet(equal_weight_benchmark(sp.prices), paths.BENCHMARK)
    write_parquet(sp.edges, paths.EDGES)
    write_json(folds_to_json(sp.folds, sp.params.split), paths.FOLDS)
    spec = importlib.util.spec_from_file_location("model_stage", ROOT / "stages" / "model.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    monkeypatch.setattr(sys, "argv", ["model.py", "--model", "linear_graph"])
    stage.main()

    preds = pl.read_parquet(paths.PREDICTIONS / "linear_graph.parquet")
    reach = max(sp.params.features.horizons) + sp.params.features.label_delay
    for fold in sp.folds:
        want = assign_split(sp.panel, fold, reach).filter(pl.col("split").is_in(["val", "test"]))
        got = preds.filter(pl.col("fold") == fold.fold)
        assert got.height == want.height and got.join(want, on=["date", "code", "split"], how="anti").is_empty()
        assert got.select(pl.col("^pred_.*$").is_null().sum()).sum_horizontal().item() == 0
        assert (paths.MODELS / "linear_graph" / f"fold{fold.fold}" / "coefficients.json").exists()
    detail = json.loads((paths.DETAIL / "linear_graph.json").read_text())
    assert {f"alpha_{h}d_fold{k}" for h in sp.params.features.horizons for k in range(len(sp.folds))} <= set(detail["train"])
    assert detail["test"]["rank_ic_1d"] > 0.02  # the easy market carries signal a linear model finds
    coefs = pl.read_csv(paths.PLOTS / "linear_graph" / "coefficients.csv")
    assert coefs["feature"].str.starts_with("f_rel_").any() and set(coefs["fold"]) == set(range(len(sp.folds)))
    read = json.loads((tmp_path / "metrics/timings/linear_graph.json").read_text())
    assert read  # the stage ran to its end
