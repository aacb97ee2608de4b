"""Rank-average ensembles: alignment, equal weights, validation-fitted weights without test leakage."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from alphagraph.models import ensemble

H = [1, 5]
N_STOCKS, N_DAYS = 30, 120
# Walk-forward layout: fold 1 validates on fold 0's test days, as the real folds do.
WINDOWS = {0: {"val": range(0, 40), "test": range(40, 80)}, 1: {"val": range(40, 80), "test": range(80, 120)}}


def _dates() -> list[dt.date]:
    return [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(N_DAYS)]


def _labels(seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    dates, codes = _dates(), [f"S{i:03d}" for i in range(N_STOCKS)]
    grid = pl.DataFrame({"date": [d for d in dates for _ in codes], "code": codes * N_DAYS},
                        schema={"date": pl.Date, "code": pl.String})
    return grid.with_columns(pl.Series(f"ret_{h}d", rng.normal(0, 0.02, grid.height)) for h in H)


def _day_index() -> pl.Expr:
    """Day number 0..N_DAYS-1 of the ``date`` column."""
    return (pl.col("date") - pl.lit(dt.date(2020, 1, 1))).dt.total_days()


def _member(labels: pl.DataFrame, signal: float, scale: float, seed: int, p_up: bool = False) -> pl.DataFrame:
    """Predictions ``scale * (signal * z(label) + noise)`` on every fold's val and test rows."""
    rng = np.random.default_rng(seed)
    parts = []
    for fold, windows in WINDOWS.items():
        for split, days in windows.items():
            keep = labels.filter(_day_index().is_in(list(days)))
            preds = {
                f"pred_{h}d": scale * (signal * keep[f"ret_{h}d"].to_numpy() / 0.02 + rng.normal(0, 1, keep.height))
                for h in H
            }
            frame = keep.select("date", "code").with_columns(
                pl.lit(fold, dtype=pl.Int32).alias("fold"), pl.lit(split).alias("split"),
                *(pl.Series(k, v, dtype=pl.Float32) for k, v in preds.items()),
            )
            if p_up:
                frame = frame.with_columns(pl.lit(0.5, dtype=pl.Float32).alias(f"p_up_{h}d") for h in H)
            parts.append(frame)
    return pl.concat(parts).sort("fold", "date", "code")


@pytest.fixture(scope="module")
def data() -> dict[str, object]:
    labels = _labels()
    members = {
        "good": _member(labels, signal=3.0, scale=100.0, seed=1, p_up=True),
        "noise": _member(labels, signal=0.0, scale=0.01, seed=2),
    }
    return {"labels": labels, "members": members}


def test_weights_are_on_the_simplex(data: dict) -> None:
    fit = ensemble.fit_weights(data["members"], data["labels"], H)
    assert fit["models"] == ["good", "noise"]
    for fold in WINDOWS:
        for h in H:
            w = np.array(list(fit["weights"][fold][h].values()))
            assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    table = ensemble.weights_frame(fit)
    assert table.columns[:4] == ["fold", "horizon", "model", "weight"]
    assert table.height == len(WINDOWS) * len(H) * 2
    sums = table.group_by("fold", "horizon").agg(pl.col("weight").sum())["weight"].to_numpy()
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)


def test_informative_member_gets_most_weight(data: dict) -> None:
    fit = ensemble.fit_weights(data["members"], data["labels"], H)
    for fold in WINDOWS:
        for h in H:
            assert fit["weights"][fold][h]["good"] > 0.9, (fold, h, fit["weights"][fold][h])
            info = fit["info"][fold][h]
            assert info["method"] == "slsqp" and info["reason"] is None and info["n_days"] == 40
            assert info["val_ic"] > info["val_ic_equal"]


def test_test_labels_never_move_the_weights(data: dict) -> None:
    members, labels = data["members"], data["labels"]
    fit = ensemble.fit_weights(members, labels, H)
    pred = ensemble.weighted(members, fit["weights"], H)
    rng = np.random.default_rng(9)

    def scramble(first_day: int, last_day: int) -> pl.DataFrame:
        hit = _day_index().is_between(first_day, last_day)
        return labels.with_columns(
            pl.when(hit).then(pl.Series(rng.normal(0, 1, labels.height))).otherwise(pl.col(f"ret_{h}d")).alias(f"ret_{h}d")
            for h in H
        )

    # Days 80..119 are test days only: nothing may change.
    fit2 = ensemble.fit_weights(members, scramble(80, 119), H)
    assert fit2["weights"] == fit["weights"]
    assert ensemble.weighted(members, fit2["weights"], H).equals(pred)
    # Days 40..79 are fold 0's test days (and fold 1's validation days): fold 0 must not move.
    fit3 = ensemble.fit_weights(members, scramble(40, 79), H)
    assert fit3["weights"][0] == fit["weights"][0]
    fold0 = pl.col("fold") == 0
    assert ensemble.weighted(members, fit3["weights"], H).filter(fold0).equals(pred.filter(fold0))
    # Dropping every test-only label changes nothing either.
    only_val = labels.filter(_day_index() < 80)
    assert ensemble.fit_weights(members, only_val, H)["weights"] == fit["weights"]


def test_fit_is_deterministic_and_ignores_row_order(data: dict) -> None:
    members, labels = data["members"], data["labels"]
    fit = ensemble.fit_weights(members, labels, H)
    shuffled = {k: v.sample(fraction=1.0, shuffle=True, seed=3) for k, v in members.items()}
    again = ensemble.fit_weights(shuffled, labels.sample(fraction=1.0, shuffle=True, seed=4), H)
    assert again["weights"] == fit["weights"]
    assert ensemble.weighted(shuffled, again["weights"], H).equals(ensemble.weighted(members, fit["weights"], H))


def test_equal_weight_of_a_model_with_itself_is_its_ranking(data: dict) -> None:
    good = data["members"]["good"]
    out = ensemble.equal_weight({"a": good, "b": good}, H)
    assert out.columns == ["date", "code", "fold", "split", *(f"pred_{h}d" for h in H)]  # no p_up
    assert out.schema["fold"] == pl.Int32 and out.schema["pred_1d"] == pl.Float32
    ranks = ensemble.rank_scores(good, H).select(out.columns).with_columns(
        pl.col(f"pred_{h}d").cast(pl.Float32) for h in H
    ).sort("fold", "date", "code")
    assert out.equals(ranks)
    joined = out.join(good, on=["fold", "split", "date", "code"], suffix="_raw")
    rho = joined.group_by("fold", "date").agg(pl.corr("pred_1d", "pred_1d_raw", method="spearman"))["pred_1d"]
    np.testing.assert_allclose(rho.to_numpy(), 1.0, atol=1e-9)
    # Rank scores live in (-0.5, 0.5) whatever the model's scale.
    assert out["pred_1d"].abs().max() < 0.5


def test_rows_missing_from_a_member_are_dropped(data: dict) -> None:
    good, noise = data["members"]["good"], data["members"]["noise"]
    gone = noise.filter(pl.col("code") == "S003").head(7)
    out = ensemble.equal_weight({"good": good, "noise": noise.join(gone, on=["fold", "split", "date", "code"], how="anti")}, H)
    assert out.height == good.height - gone.height
    assert out.join(gone, on=["fold", "split", "date", "code"], how="semi").is_empty()


def test_null_member_prediction_nulls_the_ensemble(data: dict) -> None:
    good, noise = data["members"]["good"], data["members"]["noise"]
    first = pl.int_range(pl.len()) == 0
    noise = noise.with_columns(pl.when(first).then(None).otherwise(pl.col("pred_1d")).alias("pred_1d"))
    out = ensemble.equal_weight({"good": good, "noise": noise}, H)
    assert out["pred_1d"].null_count() == 1 and out["pred_5d"].null_count() == 0


def test_degenerate_cases_fall_back_to_equal_weights(data: dict) -> None:
    members, labels = data["members"], data["labels"]
    flat = members["noise"].with_columns(pl.lit(1.0, dtype=pl.Float32).alias(f"pred_{h}d") for h in H)
    fit = ensemble.fit_weights({"good": members["good"], "flat": flat}, labels, H)
    for fold in WINDOWS:
        assert fit["weights"][fold][1] == {"good": 0.5, "flat": 0.5}
        assert fit["info"][fold][1]["method"] == "equal" and "constant" in fit["info"][fold][1]["reason"]
    # Labels only on fold 1's test days: no validation labels anywhere.
    test_only = labels.filter(_day_index() >= 80)
    fit = ensemble.fit_weights(members, test_only, H)
    assert all(fit["info"][f][h]["reason"] == "no validation rows with labels" for f in WINDOWS for h in H)
    assert all(fit["weights"][f][h] == {"good": 0.5, "noise": 0.5} for f in WINDOWS for h in H)
    # Too few validation days to trust a fit.
    fit = ensemble.fit_weights(members, labels, H, min_days=41)
    assert "min_days" in fit["info"][0][1]["reason"]
    table = ensemble.weights_frame(fit)
    assert set(table["method"]) == {"equal"}


def test_weighted_needs_weights_for_every_fold(data: dict) -> None:
    members = data["members"]
    with pytest.raises(ValueError, match="no weights for fold 1"):
        ensemble.weighted(members, {0: {h: {"good": 1.0, "noise": 0.0} for h in H}}, H)
    with pytest.raises(ValueError, match="missing columns"):
        ensemble.equal_weight({"a": members["good"].drop("pred_5d")}, H)
    with pytest.raises(ValueError, match="share a"):
        ensemble.equal_weight({"a": pl.concat([members["good"], members["good"].head(1)])}, H)


def test_weighted_applies_fold_weights(data: dict) -> None:
    members = data["members"]
    weights = {0: {h: {"good": 1.0, "noise": 0.0} for h in H}, 1: {h: {"good": 0.0, "noise": 1.0} for h in H}}
    out = ensemble.weighted(members, weights, H)
    ranks = {k: ensemble.rank_scores(v, H).with_columns(pl.col("pred_1d").cast(pl.Float32)) for k, v in members.items()}
    for fold, name in ((0, "good"), (1, "noise")):
        got = out.filter(pl.col("fold") == fold).sort("date", "code")["pred_1d"]
        want = ranks[name].filter(pl.col("fold") == fold).sort("date", "code")["pred_1d"]
        assert got.equals(want)


def test_mean_ic_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(5)
    day = np.repeat(np.arange(6), 15)
    scores = rng.normal(size=(len(day), 3))
    y = scores[:, 0] + rng.normal(size=len(day))
    c, cov, v = ensemble.daily_moments(scores, y, day)
    w = np.array([0.2, 0.5, 0.3])
    f, g = ensemble.mean_ic(w, c, cov, v)
    eps = 1e-6
    fd = [(ensemble.mean_ic(w + eps * e, c, cov, v)[0] - ensemble.mean_ic(w - eps * e, c, cov, v)[0]) / (2 * eps)
          for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-8)
    # And the objective is the mean daily Pearson IC.
    combo = scores @ w
    direct = np.mean([np.corrcoef(combo[day == d], y[day == d])[0, 1] for d in range(6)])
    assert f == pytest.approx(direct, rel=1e-10)
