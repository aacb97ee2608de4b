import dataclasses
from pathlib import Path

import pytest
import yaml

from alphagraph.runtime.config import TRAINING_BOUNDS, ConfigError, Params, load_params, params_from_dict, to_dict

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_loads_and_is_complete():
    """Every key of the typed config is in params.yaml, so `dvc exp run -S` can set it."""
    params = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())

    def keys(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from keys(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    assert set(keys(to_dict(params))) == set(keys(raw))


def test_scientific_notation_string_is_a_float():
    # PyYAML's safe_load reads a hand-written 5e-4 as a string.
    raw = yaml.safe_load("train:\n  lr: 5e-4\n")
    assert raw["train"]["lr"] == "5e-4"
    assert params_from_dict(raw).train.lr == pytest.approx(5e-4)
    assert params_from_dict({"train": {"lr": 0.0005}}).train.lr == pytest.approx(5e-4)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"train": {"lrr": 1}}, "unknown key train.lrr"),
        ({"trian": {}}, "unknown key trian"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"data": {"synthetic": {"n_stocks": 2.5}}}, "data.synthetic.n_stocks: expected an integer"),
        ({"data": {"source": "csv"}}, "data.source: expected one of synthetic, file"),
        ({"graph": {"include_negative": "yes"}}, "graph.include_negative: expected true or false"),
        ({"features": {"horizons": 5}}, "features.horizons: expected a list"),
        ({"split": {"embargo_days": 3}}, "split.embargo_days: 3 is below"),
        ({"train": {"horizon_weights": [1.0]}}, "train.horizon_weights: has 1 weights for 4 horizons"),
        ({"data": 3}, "data: expected a mapping"),
        ({"eval": {"execution_lag": -1}}, "eval.execution_lag: must be 0"),
        ({"eval": {"backtest": {"annualization": 0}}}, "eval.backtest.annualization: must be"),
        ({"eval": {"backtest": {"delisting": "drop"}}}, "eval.backtest.delisting: expected one of sell, hold"),
        ({"eval": {"backtest": {"preset": "qlib", "annualization": 250}}}, "eval.backtest.annualization is 250.0, but"),
        ({"eval": {"execution_lag": 0, "backtest": {"preset": "qlib"}}}, "eval.execution_lag is 0, but"),
    ],
)
def test_bad_params_name_the_key(raw, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        params_from_dict(raw)


def test_embargo_counts_label_delay():
    with pytest.raises(ConfigError, match="split.embargo_days"):
        params_from_dict({"features": {"label_delay": 1}, "split": {"embargo_days": 20}})
    ok = params_from_dict({"features": {"label_delay": 1}, "split": {"embargo_days": 21}})
    assert ok.split.embargo_days == 21


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_params(bad)


def test_configs_are_frozen():
    p = Params()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.train.lr = 1.0  # type: ignore[misc]


def test_the_qlib_preset_sets_qlibs_conventions_and_keeps_the_rest():
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["eval"]["backtest"]["preset"] = "qlib"
    raw["eval"]["backtest"]["topk"] = 30
    p = params_from_dict(raw)
    assert (p.eval.execution_lag, p.eval.backtest.annualization, p.eval.backtest.delisting) == (1, 238.0, "hold")
    assert p.eval.backtest.replace_only is False
    assert p.eval.backtest.topk == 30  # not a convention: the user's
    base = load_params()
    assert (base.eval.execution_lag, base.eval.backtest.annualization, base.eval.backtest.delisting) == (1, 252.0, "sell")


# ------------------------------------------------- epochs, batch sizes, patience, rounds of every model group


def _violation(bound) -> float:
    """A value just outside ``bound``."""
    return bound.low if bound.low_open else bound.low - 1


@pytest.mark.parametrize(
    ("group", "bound"),
    [(group, b) for group, bounds in TRAINING_BOUNDS.items() for b in bounds],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_every_training_count_and_rate_is_bounded_with_the_key_named(group, bound):
    with pytest.raises(ConfigError, match=rf"^params: {group}\.{bound.name}: must be .*got .*; e\.g\. .*, the default$"):
        params_from_dict({group: {bound.name: _violation(bound)}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"epochs": -1}}, "train.epochs: must be >= 1 (training epochs per fold), got -1; e.g. 10, the default"),
        ({"gat": {"epochs": 0}}, "gat.epochs: must be >= 1 (training epochs per fold), got 0; e.g. 8, the default"),
        ({"train": {"batch_days": 0}}, "train.batch_days: must be >= 1 (trading days per optimizer step), got 0; e.g. 8, the default"),
        ({"tgcn": {"patience": -2}}, "tgcn.patience: must be >= 0"),
        ({"temporal": {"days_per_epoch": -1}}, "temporal.days_per_epoch: must be >= 0"),
        ({"lgbm": {"n_estimators": 0}}, "lgbm.n_estimators: must be >= 1 (boosting rounds)"),
        ({"lgbm": {"early_stopping_rounds": 0}}, "lgbm.early_stopping_rounds: must be >= 1"),
        ({"pretrain": {"batch_days": 0}}, "pretrain.batch_days: must be >= 1"),
        ({"export": {"batch_days": 0}}, "export.batch_days: must be >= 1"),
        ({"train": {"select_smoothing": 1.0}}, "train.select_smoothing: must be in [0, 1)"),
        ({"gat": {"lr": "nan"}}, "gat.lr: must be > 0"),
        ({"data": {"start": "2014-01-01", "end": "2013-01-01"}}, "data.end: 2013-01-01 is before data.start 2014-01-01: set data.end on or after"),
    ],
)
def test_a_bad_training_param_fails_on_load_naming_the_key_and_the_fix(raw, message):
    with pytest.raises(ConfigError) as info:
        params_from_dict(raw)
    assert str(info.value).startswith(f"params: {message}")
    assert "\n" not in str(info.value)


def test_every_epoch_batch_and_patience_param_of_every_group_is_bounded():
    """A new model group (or a new count in one) must join TRAINING_BOUNDS, or a 0 reaches the stage that trains."""
    import re

    countlike = re.compile(r"(^|_)(epochs|batch_days|days_per_epoch|patience|rounds|estimators)$")
    missing = []
    for f in dataclasses.fields(Params):
        cfg = getattr(Params(), f.name)
        if not dataclasses.is_dataclass(cfg):
            continue
        bounded = {b.name for b in TRAINING_BOUNDS.get(f.name, ())}
        missing += [f"{f.name}.{g.name}" for g in dataclasses.fields(cfg) if countlike.search(g.name) and g.name not in bounded]
    assert missing == []


def test_the_defaults_are_within_their_bounds():
    p = Params()
    for group, bounds in TRAINING_BOUNDS.items():
        for b in bounds:
            assert b.holds(getattr(getattr(p, group), b.name)), f"{group}.{b.name}"
