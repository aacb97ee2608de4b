"""Classification heads are scored, and class-balanced, on the rows they are trained on."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from alphagraph.runtime import paths
from alphagraph.runtime.config import EvalConfig
from alphagraph.evaluation.evaluate import classification_stats, evaluate, signal_stats
from alphagraph.runtime.io import write_parquet
from alphagraph.train.data import ClassBalance, label_balance

# ------------------------------------------------------------ signal metrics

# 3 signal rows, 5 without; p >= 0.5 predicts a signal.
Y_SIG = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=float)
P_SIG = np.array([0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4, 0.5])


def test_signal_stats_by_hand():
    s = signal_stats(Y_SIG, P_SIG)
    # predicted: 0.9 (tp), 0.6 (tp), 0.7 (fp), 0.5 (fp, the threshold counts as a signal)
    assert s["precision"] == pytest.approx(2 / 4)
    assert s["recall"] == pytest.approx(2 / 3)
    # positive-negative pairs ordered right: 0.9 beats 5, 0.6 beats 4, 0.3 beats 2 of 15
    assert s["auc"] == pytest.approx(11 / 15)
    assert s["base_rate"] == pytest.approx(3 / 8)
    # a NaN label or probability drops the row
    y = np.append(Y_SIG, [np.nan, 1.0])
    p = np.append(P_SIG, [0.9, np.nan])
    assert signal_stats(y, p) == pytest.approx(s)


def test_signal_stats_undefined_cases():
    one_class = signal_stats(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4]))
    assert np.isnan(one_class["auc"]) and np.isnan(one_class["recall"])
    assert np.isnan(one_class["precision"])  # nothing predicted as a signal
    assert one_class["base_rate"] == 0.0
    assert signal_stats(np.array([np.nan]), np.array([0.5])) == {}


# ---------------------------------------------------------- via the evaluator

N_DATES, N_STOCKS = 4, 5


def hand_frames(p_signal: bool = True) -> tuple[pl.DataFrame, pl.DataFrame]:
    """20 test rows; 8 with sig = 1, on which p_up is right 6 times; on sig = 0 rows p_up is always wrong."""
    dates = [dt.date(2021, 1, 4) + dt.timedelta(days=i) for i in range(N_DATES)]
    n = N_DATES * N_STOCKS
    rows = pl.DataFrame(
        {"date": np.repeat(np.array(dates, dtype="datetime64[D]"), N_STOCKS), "code": np.tile(list("ABCDE"), N_DATES)}
    ).with_columns(pl.col("date").cast(pl.Date))
    ret = np.linspace(-0.02, 0.02, n) * np.where(np.arange(n) % 2, 1, -1)
    sig = np.array([1, 0, 1, 0, 0] * N_DATES, dtype=np.int8)  # 8 signal rows
    dirs = (ret > 0).astype(np.int8)
    right = np.where(dirs == 1, 0.8, 0.2)
    p_up = np.where(sig == 1, right, 1 - right)
    wrong_on_signal = np.flatnonzero(sig == 1)[:2]  # 2 of the 8 signal rows are called wrong
    p_up[wrong_on_signal] = 1 - p_up[wrong_on_signal]
    realized = rows.with_columns(
        ret_1d=pl.Series(ret), r_next=pl.Series(ret), dir_1d=pl.Series(dirs), sig_1d=pl.Series(sig)
    )
    preds = rows.with_columns(
        fold=pl.lit(0), split=pl.lit("test"), pred_1d=pl.Series(ret + 0.01 * np.sin(np.arange(n))),
        p_up_1d=pl.Series(p_up),
    )
    if p_signal:
        preds = preds.with_columns(p_signal_1d=pl.Series(np.where(sig == 1, 0.7, 0.3)))
    return preds, realized


def test_evaluator_writes_signal_metrics_pooled_and_per_fold():
    preds, realized = hand_frames()
    m, _ = evaluate(preds, realized, [1], EvalConfig())
    for group in ("test", "fold0"):
        g = m[group]
        # p_signal separates the classes perfectly
        assert (g["sig_precision_1d"], g["sig_recall_1d"], g["sig_auc_1d"]) == (1.0, 1.0, 1.0)
        assert g["sig_base_rate_1d"] == pytest.approx(8 / 20)
    # no signal head, or no signal labels: no signal metrics
    gat, _ = evaluate(hand_frames(p_signal=False)[0], realized, [1], EvalConfig())
    assert not any(k.startswith("sig_") for k in gat["test"])
    no_labels, _ = evaluate(preds, realized.drop("sig_1d"), [1], EvalConfig())
    assert not any(k.startswith("sig_") for k in no_labels["test"])


def test_undefined_signal_auc_is_null_in_metrics():
    preds, realized = hand_frames()
    m, _ = evaluate(preds, realized.with_columns(sig_1d=pl.lit(0, dtype=pl.Int8)), [1], EvalConfig())
    assert m["test"]["sig_auc_1d"] is None and m["test"]["sig_recall_1d"] is None
    assert m["test"]["sig_base_rate_1d"] == 0.0


def test_direction_of_a_hierarchical_model_is_scored_on_signal_rows_only():
    preds, realized = hand_frames()
    t = evaluate(preds, realized, [1], EvalConfig())[0]["test"]
    assert t["direction_on_signal_1d"] == 1
    assert t["direction_accuracy_1d"] == pytest.approx(6 / 8)
    assert sum(t[f"direction_confusion_{k}_1d"] for k in ("tn", "fp", "fn", "tp")) == 8
    # p_up on rows without a signal changes nothing
    rng = np.random.default_rng(0)
    noise = pl.Series(rng.uniform(0, 1, preds.height))
    moved = preds.with_columns(p_up_1d=pl.when(realized["sig_1d"] == 1).then("p_up_1d").otherwise(noise))
    t2 = evaluate(moved, realized, [1], EvalConfig())[0]["test"]
    assert {k: v for k, v in t2.items() if k.startswith("direction_")} == {
        k: v for k, v in t.items() if k.startswith("direction_")
    }


def test_direction_without_a_signal_head_is_scored_on_all_rows():
    preds, realized = hand_frames(p_signal=False)
    t = evaluate(preds, realized, [1], EvalConfig())[0]["test"]
    assert t["direction_on_signal_1d"] == 0
    # 6 right on the 8 signal rows, 12 wrong on the others
    assert t["direction_accuracy_1d"] == pytest.approx(6 / 20)
    expected = classification_stats(realized["dir_1d"].cast(pl.Float64).to_numpy(), preds["p_up_1d"].to_numpy())
    assert t["direction_roc_auc_1d"] == pytest.approx(expected["roc_auc"], abs=1e-6)
    assert sum(t[f"direction_confusion_{k}_1d"] for k in ("tn", "fp", "fn", "tp")) == 20


def test_realized_returns_carry_signal_labels(tmp_path, monkeypatch):
    from alphagraph.evaluation.walkforward import realized_returns

    preds, realized = hand_frames()
    prices = realized.select("date", "code", close=100 * (1 + pl.col("ret_1d")))
    monkeypatch.setattr(paths, "PRICES", tmp_path / "prices.parquet")
    write_parquet(prices, paths.PRICES)
    panel = realized.drop("r_next").with_columns(f_x=pl.lit(0.0))
    out = realized_returns(panel, [1])
    assert {"ret_1d", "dir_1d", "sig_1d", "r_next"} <= set(out.columns) and "f_x" not in out.columns
    assert "sig_1d" not in realized_returns(panel.drop("sig_1d"), [1]).columns


# ------------------------------------------------------------- class balance


def test_label_balance_by_hand():
    frame = pl.DataFrame(
        {
            "dir_1d": [1, 1, 0, 0, 0, 1, None, 1],
            "sig_1d": [1, 0, 1, 1, 0, 1, 1, None],
            "dir_5d": [1, 0, 0, 0, 1, 1, 1, 0],
            "sig_5d": [0, 0, 1, 1, 1, 1, 1, 1],
        }
    )
    every = label_balance(frame, ["dir_1d", "dir_5d"])
    np.testing.assert_array_equal(every.positives, [4, 4])
    np.testing.assert_array_equal(every.negatives, [3, 4])
    # sig = 1 rows only (a null signal does not count): 1d rows 0, 2, 3, 5 (6 has no direction); 5d rows 2..7
    on_signal = label_balance(frame, ["dir_1d", "dir_5d"], given=["sig_1d", "sig_5d"])
    np.testing.assert_array_equal(on_signal.positives, [2, 3])
    np.testing.assert_array_equal(on_signal.negatives, [2, 3])
    np.testing.assert_allclose(on_signal.pos_weight(), [1.0, 1.0])
    np.testing.assert_allclose(every.pos_weight(), [3 / 4, 1.0])
    assert ClassBalance(np.array([0]), np.array([3])).pos_weight()[0] == 1.0  # a class absent: no reweighting


@pytest.fixture(scope="module")
def tiny():
    from tests.test_train_loop import tiny_pipeline

    return tiny_pipeline()


def test_core_direction_balance_counts_signal_rows_signal_balance_all_rows(tiny):
    from alphagraph.models.core import core_fold_data, core_loss
    from alphagraph.train.outputs import TRAIN
    from tests.test_core import core_params

    params = core_params()
    data = core_fold_data(tiny.panel, tiny.index, tiny.fold, params)
    train = tiny.panel.filter(pl.Series(data.codes == TRAIN))
    for j, h in enumerate(params.features.horizons):
        on_signal = train.filter(pl.col(f"sig_{h}d") == 1)
        assert data.class_balance().positives[j] == (on_signal[f"dir_{h}d"] == 1).sum()
        assert data.class_balance().negatives[j] == (on_signal[f"dir_{h}d"] == 0).sum()
        assert data.signal_balance().positives[j] == (train[f"sig_{h}d"] == 1).sum()
        assert data.signal_balance().negatives[j] == (train[f"sig_{h}d"] == 0).sum()
    loss = core_loss(params.train, data)
    np.testing.assert_allclose(loss.pos_weight.numpy(), data.class_balance().pos_weight())
    np.testing.assert_allclose(loss.sig_pos_weight.numpy(), data.signal_balance().pos_weight())
    # the GAT's data (no signal head) still balances direction over every training row
    from alphagraph.models.gat import gat_fold_data

    gat = gat_fold_data(tiny.panel, tiny.index, tiny.fold, params).class_balance()
    expected = label_balance(train, [f"dir_{h}d" for h in params.features.horizons])
    np.testing.assert_array_equal(gat.positives, expected.positives)
    np.testing.assert_array_equal(gat.negatives, expected.negatives)
    assert (gat.positives > data.class_balance().positives).all()
