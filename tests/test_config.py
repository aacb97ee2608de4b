import dataclasses
from pathlib import Path

import pytest
import yaml

from alphagraph.config import ConfigError, Params, load_params, params_from_dict, to_dict

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
    assert p.eval.backtest.topk == 30  # not a convention: the user's
    base = load_params()
    assert (base.eval.execution_lag, base.eval.backtest.annualization, base.eval.backtest.delisting) == (1, 252.0, "sell")
