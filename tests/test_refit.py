"""Retraining cadence (``split.refit_every``) and the neural models' warm start (``refit_warm_start``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from alphagraph.runtime.config import LgbmConfig, Params, SplitConfig
from alphagraph.runtime.errors import UserError
from alphagraph.runtime.io import write_json
from alphagraph.evaluation.split import Fold, SplitError, assign_split, folds_to_json, load_folds, make_folds
from alphagraph.train.outputs import TEST, TRAIN, VAL
from alphagraph.train.loop import LoopConfig, load_checkpoint
from tests.leakage import assert_unchanged_through, perturb_after, toy_prices, truncate_after
from tests.test_split import business_calendar

# ------------------------------------------------------------------ the split


def check_refit_folds(cal: list[dt.date], cfg: SplitConfig) -> list[Fold]:
    """Blocks tile each test window of the folds without refits; every block's train / val sit before it."""
    idx = {d: i for i, d in enumerate(cal)}
    plain = make_folds(cal, dataclasses.replace(cfg, refit_every=None))
    folds = make_folds(cal, cfg)
    assert [f.fold for f in folds] == list(range(len(folds)))  # consecutive numbering
    for k, window in enumerate(plain):
        blocks = [f for f in folds if f.window == k]
        assert [f.block for f in blocks] == list(range(len(blocks)))
        assert blocks[0].test[0] == window.test[0] and blocks[-1].test[1] == window.test[1]
        for prev, nxt in zip(blocks, blocks[1:]):
            assert idx[nxt.test[0]] == idx[prev.test[1]] + 1  # contiguous, no overlap
        sizes = [idx[f.test[1]] - idx[f.test[0]] + 1 for f in blocks]
        assert all(s == cfg.refit_every for s in sizes[:-1]) and 1 <= sizes[-1] <= cfg.refit_every
        assert blocks[0].train == window.train and blocks[0].val == window.val  # the first block is the old fold
    assert sum(1 for f in folds if f.window is not None) == len(folds)
    for f in folds:
        tr, va, te = ([idx[a], idx[b]] for a, b in (f.train, f.val, f.test))
        assert tr[0] <= tr[1] < va[0] <= va[1] < te[0] <= te[1]
        assert va[0] - tr[1] - 1 >= cfg.embargo_days and te[0] - va[1] - 1 >= cfg.embargo_days
        assert te[0] - va[1] - 1 == cfg.embargo_days  # fitted on data up to the embargo before the block
        assert va[1] - va[0] + 1 == cfg.val_days
        assert tr[1] - tr[0] + 1 >= cfg.min_train_days
        if cfg.max_train_days is not None:
            assert tr[1] - tr[0] + 1 <= cfg.max_train_days
    return folds


def test_default_like_blocks():
    folds = check_refit_folds(business_calendar(1500), SplitConfig(refit_every=63))
    assert len(folds) == 3 * 4  # 250 = 3 x 63 + 61


@pytest.mark.parametrize("refit", [1, 250, 400])
def test_block_sizes_at_the_edges(refit):
    folds = check_refit_folds(business_calendar(1500), SplitConfig(refit_every=refit, scheme="rolling", max_train_days=300))
    assert len(folds) == 3 * (250 if refit == 1 else 1)


@settings(max_examples=60, deadline=None)
@given(
    n_days=st.integers(100, 900),
    n_splits=st.integers(1, 4),
    val=st.integers(1, 120),
    test=st.integers(1, 120),
    embargo=st.integers(1, 25),
    min_train=st.integers(1, 300),
    max_train=st.one_of(st.none(), st.integers(1, 400)),
    refit=st.integers(1, 130),
    seed=st.integers(0, 100),
)
def test_property_blocks_on_random_calendars(n_days, n_splits, val, test, embargo, min_train, max_train, refit, seed):
    cal = business_calendar(n_days, seed)
    max_train = None if max_train is None else max(max_train, min_train)
    cfg = SplitConfig(n_splits=n_splits, min_train_days=min_train, max_train_days=max_train, val_days=val,
                      test_days=test, embargo_days=embargo, refit_every=refit)
    if n_days < min_train + 2 * embargo + val + n_splits * test:  # refits need no more days than the folds
        with pytest.raises(SplitError):
            make_folds(cal, cfg)
    else:
        check_refit_folds(cal, cfg)


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (SplitConfig(scheme="purged_kfold", refit_every=21), r"split\.refit_every: .*purged_kfold"),
        (SplitConfig(refit_every=0), r"split\.refit_every: must be >= 1"),
        (SplitConfig(refit_every=21, val_start="2020-06-01", test_start="2021-01-04"), r"split\.refit_every: .*fixed"),
    ],
)
def test_refit_errors_name_the_key(cfg, needle):
    with pytest.raises(SplitError, match=needle):
        make_folds(business_calendar(1500), cfg)


def test_json_records_window_and_block_and_round_trips(tmp_path):
    cal = business_calendar(300)
    cfg = SplitConfig(n_splits=2, min_train_days=50, val_days=30, test_days=30, embargo_days=5, refit_every=12)
    folds = make_folds(cal, cfg)
    doc = folds_to_json(folds, cfg)
    assert doc["refit_every"] == 12
    assert [(f["window"], f["block"]) for f in doc["folds"]] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    write_json(doc, tmp_path / "folds.json")
    assert load_folds(tmp_path / "folds.json") == folds
    # Off: the file is exactly as before refits existed.
    off = dataclasses.replace(cfg, refit_every=None)
    plain = folds_to_json(make_folds(cal, off), off)
    assert "refit_every" not in plain and all(set(f) == {"fold", "train", "val", "test"} for f in plain["folds"])


# ------------------------------------------------------------------ labels and leakage

REACH = 5
LEAK_CFG = SplitConfig(n_splits=2, min_train_days=60, val_days=30, test_days=50, embargo_days=REACH, refit_every=20)


def labelled(prices: pl.DataFrame) -> pl.DataFrame:
    """The panel a model fits: one feature and the 1- and 5-day forward returns (labels) per stock."""
    close = pl.col("close")
    nxt = {h: close.shift(-h).over("code", order_by="date") for h in (1, REACH)}
    return prices.sort("date", "code").select(
        "date", "code", f_ret_1=close / close.shift(1).over("code", order_by="date") - 1,
        y_1d=nxt[1] / close - 1, y_5d=nxt[REACH] / close - 1,
    )


def fit_rows(panel: pl.DataFrame, fold: Fold) -> pl.DataFrame:
    return assign_split(panel, fold, REACH).filter(pl.col("split").is_in(["train", "val"]))


def test_no_label_of_a_block_inside_its_train_or_val():
    prices, _ = toy_prices(n_days=260)  # late listing, delisting, suspensions
    panel = labelled(prices)
    cal = panel["date"].unique().sort().to_list()
    folds = make_folds(cal, LEAK_CFG)
    assert len(folds) == 2 * 3
    for fold in folds:
        rows = assign_split(panel, fold, REACH)
        # each row's label window, on its own stock's trading days
        ends = rows.join(panel.select("date", "code", end=pl.col("date").shift(-REACH).over("code", order_by="date")),
                         on=["date", "code"])
        for split, before in (("train", fold.val[0]), ("val", fold.test[0])):
            part = ends.filter(pl.col("split") == split)
            assert part.height > 0
            assert part.filter(pl.col("end").is_not_null() & (pl.col("end") >= before)).is_empty(), (fold, split)
        # the harness: data from the block's first test day on do not touch what the block's model fits
        t = cal[cal.index(fold.test[0]) - 1]
        base = fit_rows(panel, fold)
        for changed in (perturb_after(prices, t, seed=fold.fold), truncate_after(prices, t)):
            assert_unchanged_through(base, fit_rows(labelled(changed), fold), t)


def test_pooled_test_predictions_cover_the_same_days_as_without_refits():
    from alphagraph.models.lgbm import train_fold

    prices, _ = toy_prices(n_days=260)
    panel = labelled(prices)
    cal = panel["date"].unique().sort().to_list()
    cfg = LgbmConfig(n_estimators=5, min_data_in_leaf=20, early_stopping_rounds=5, num_threads=1)

    def pooled(split: SplitConfig) -> pl.DataFrame:
        parts = [train_fold(assign_split(panel, f, REACH), f.fold, [1, 5], cfg, 0).predictions for f in make_folds(cal, split)]
        return pl.concat(parts).filter(pl.col("split") == "test")

    refit, plain = pooled(LEAK_CFG), pooled(dataclasses.replace(LEAK_CFG, refit_every=None))
    assert refit.height == plain.height and refit.select("date", "code").is_duplicated().sum() == 0  # each row once
    assert refit.select("date", "code").sort("date", "code").equals(plain.select("date", "code").sort("date", "code"))
    assert refit["fold"].n_unique() == 6 and plain["fold"].n_unique() == 2


# ------------------------------------------------------------------ warm start


@dataclasses.dataclass
class ToyBatch:
    x: torch.Tensor
    y: torch.Tensor
    split: torch.Tensor
    row: torch.Tensor
    batch: torch.Tensor

    def to(self, device: Any) -> ToyBatch:
        return self


class ToyData:
    """30 train, 10 val and 10 test days x 6 stocks; rows are day * 6 + stock."""

    horizons = [1]

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.n, days = 6, 50
        self.x = torch.randn(days, self.n, 3, generator=g)
        self.y = (self.x @ torch.tensor([1.0, -0.5, 0.2]) + 0.3 * torch.randn(days, self.n, generator=g))[..., None]
        self.day_code = torch.tensor([TRAIN] * 30 + [VAL] * 10 + [TEST] * 10, dtype=torch.int8)
        self.codes = self.day_code.repeat_interleave(self.n).numpy()
        dates = [dt.date(2020, 1, 1) + dt.timedelta(days=d) for d in range(days)]
        self.panel = pl.DataFrame({"date": [d for d in dates for _ in range(self.n)], "code": [f"S{s}" for _ in dates for s in range(self.n)]})

    def dates(self, *splits: str) -> np.ndarray:
        wanted = [{"train": TRAIN, "val": VAL, "test": TEST}[s] for s in splits]
        return np.flatnonzero(np.isin(self.day_code.numpy(), wanted))

    def batch(self, dates: Any) -> ToyBatch:
        d = torch.as_tensor(np.asarray(dates), dtype=torch.int64)
        return ToyBatch(
            x=self.x[d].reshape(-1, 3), y=self.y[d].reshape(-1, 1), split=self.day_code[d].repeat_interleave(self.n),
            row=(d[:, None] * self.n + torch.arange(self.n)).reshape(-1), batch=torch.arange(d.numel()).repeat_interleave(self.n),
        )

    def class_balance(self, split: str = "train") -> None:
        return None


class ToyModel(torch.nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.fixed = torch.nn.Parameter(torch.full((2,), float(seed)), requires_grad=False)  # a per-fold fit (wide ridge)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"reg": self.net(batch.x) + 0 * self.fixed.sum()}


def mse(out: dict[str, torch.Tensor], batch: Any, mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    loss = ((out["reg"][mask] - batch.y[mask]) ** 2).mean()
    return loss, {"loss": loss.item()}


TOY_FOLDS = [
    Fold(k, (dt.date(2020, 1, 1),) * 2, (dt.date(2020, 1, 2),) * 2, (dt.date(2020, 1, 3),) * 2, window=k // 2, block=k % 2)
    for k in range(3)  # window 0: blocks 0, 1; window 1: block 0
]


def run_toy(tmp_path: Path, monkeypatch, refit_epochs: int | None, folds=TOY_FOLDS) -> tuple[Any, dict[int, Any]]:
    """Train the toy folds through StageWork; per fold, the weights and epochs ``fit`` started with."""
    from alphagraph.train.resume import StageWork
    from alphagraph.train import fold as fold_mod
    from alphagraph.train.loop import fit as real_fit

    seen: dict[int, Any] = {}

    def spy(model, data, loss_fn, cfg, **kw):
        seen[int(kw["desc"].split()[-1])] = ({k: v.clone() for k, v in model.state_dict().items()}, cfg.epochs)
        return real_fit(model, data, loss_fn, cfg, **kw)

    monkeypatch.setattr(fold_mod, "fit", spy)
    cfg = LoopConfig(epochs=4, lr=1e-2, batch_days=5, eval_batch_days=10, patience=0, num_threads=1, device="cpu", warmup_epochs=0.5)
    work = StageWork("toy", Params(), [], root=tmp_path)
    inits: dict[int, dict[str, torch.Tensor]] = {}

    def train_one(fold: Fold, run_dir: Path):
        model = ToyModel(seed=fold.fold + 1)
        inits[fold.fold] = {k: v.clone() for k, v in model.state_dict().items()}
        return fold_mod.train_fold(model, ToyData(), mse, cfg, fold.fold, run_dir), {}

    results = work.run_folds(folds, train_one, refit_epochs)
    return work, {"seen": seen, "inits": inits, "results": results}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> bool:
    return all(torch.equal(a[k], b[k]) for k in (keys or a))


def test_a_later_block_starts_from_the_previous_folds_best_weights(tmp_path, monkeypatch):
    work, run = run_toy(tmp_path, monkeypatch, refit_epochs=2)
    seen, inits = run["seen"], run["inits"]
    best0 = load_checkpoint(work.dir / "fold0" / "best.pt", "cpu")["model"]
    trained = ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    # block 1 of window 0: fold 0's best weights, its own frozen parameter, refit_epochs epochs
    assert same(seen[1][0], best0, trained) and not same(seen[1][0], inits[1], trained)
    assert torch.equal(seen[1][0]["fixed"], inits[1]["fixed"]) and seen[1][1] == 2
    # first blocks: from scratch, the full epochs
    assert same(seen[0][0], inits[0]) and seen[0][1] == 4
    assert same(seen[2][0], inits[2]) and seen[2][1] == 4
    results = {f.fold: out for f, out, _ in run["results"]}
    assert results[1].result.extra == {"warm_start_from": 0} and results[1].result.epochs_run == 2
    assert results[0].result.extra == {} and results[0].result.epochs_run == 4
    _, entries = results[1].training_record(1)
    assert entries["warm_start_from_fold1"] == 0


def test_warm_start_off_trains_every_fold_from_scratch(tmp_path, monkeypatch):
    _, run = run_toy(tmp_path, monkeypatch, refit_epochs=None)
    assert all(same(run["seen"][k][0], run["inits"][k]) and run["seen"][k][1] == 4 for k in range(3))


def test_warm_start_needs_the_previous_block(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="needs block 0 of test window 0"):
        run_toy(tmp_path, monkeypatch, refit_epochs=2, folds=TOY_FOLDS[1:])


def test_warm_start_reuses_a_finished_fold_after_a_restart(tmp_path, monkeypatch):
    """Fold 0 finished in an earlier run: fold 1 still starts from its best.pt, as in one uninterrupted run."""
    work, first = run_toy(tmp_path, monkeypatch, refit_epochs=2)
    expected = {f.fold: out.predictions for f, out, _ in first["results"]}
    for k in (1, 2):  # as if killed before folds 1 and 2 finished
        shutil.rmtree(work.dir / f"fold{k}")
    _, again = run_toy(tmp_path, monkeypatch, refit_epochs=2)
    assert 0 not in again["seen"] and sorted(again["seen"]) == [1, 2]
    assert same(again["seen"][1][0], load_checkpoint(work.dir / "fold0" / "best.pt", "cpu")["model"], ["net.0.weight"])
    for f, out, _ in again["results"]:
        assert out.predictions.equals(expected[f.fold])


# ------------------------------------------------------------------ a killed stage resumes


def test_a_killed_refit_stage_resumes_with_identical_metrics(training_workspace, tmp_path):
    from tests.conftest import run
    from tests.test_resume import finish, stage, wait_for

    repo = tmp_path / "ws"  # a copy: the shared workspace keeps its folds
    shutil.copytree(training_workspace, repo, symlinks=True, ignore=shutil.ignore_patterns(".alphagraph"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"]["refit_every"] = 30  # test_days 60: two blocks per window, folds 0-3
    params["gat"] |= {"refit_warm_start": True, "refit_epochs": 2}
    (repo / "params_refit.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["python", "stages/split.py", "--params", "params_refit.yaml"], repo)
    folds = json.loads((repo / "data" / "splits" / "folds.json").read_text())["folds"]
    assert [(f["window"], f["block"]) for f in folds] == [(0, 0), (0, 1), (1, 0), (1, 1)]

    rc, out = finish(stage(repo, "gat", "--params", "params_refit.yaml"))
    assert rc == 0, out
    assert "fold 1: warm start from fold 0's model, 2 epochs" in out and "fold 3: warm start from fold 2" in out
    report = repo / "reports" / "models" / "gat.json"
    expected = json.loads(report.read_text())
    report.unlink()

    proc = stage(repo, "gat", "--params", "params_refit.yaml")
    wait_for(repo, ".alphagraph/work/gat/*/fold1/last.pt", proc)  # fold 0 done, warm-started fold 1 after an epoch
    proc.send_signal(signal.SIGKILL)
    rc, _ = finish(proc)
    killed = rc == -signal.SIGKILL
    rc, out = finish(stage(repo, "gat", "--params", "params_refit.yaml"))
    assert rc == 0, out
    assert json.loads(report.read_text()) == expected
    assert not (repo / ".alphagraph").exists()
    if not killed:  # a tiny config: the kill should land mid-stage; say so when it did not
        pytest.skip("the stage finished before SIGKILL arrived")
    assert "fold 0: finished in an earlier run, reused" in out
    assert re.search(r"fold 1: resumed from \S+last\.pt after epoch [12]", out), out
