"""The model zoo's structure: one module and one params entry per model, checked params, clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from alphagraph.runtime.config import ZOO_MODULES, ConfigError, params_from_dict
from alphagraph.models.zoo import KINDS, zoo_module
from tests.conftest import ROOT


@pytest.mark.parametrize("module", ZOO_MODULES)
def test_every_zoo_module_has_the_stage_api_and_trains_its_kinds(module):
    mod = zoo_module(module)
    assert callable(mod.zoo_index) and callable(mod.train_zoo_fold)
    assert mod.__name__ == f"alphagraph.models.{module}"
    with pytest.raises(ValueError):
        mod.train_zoo_fold("not_a_kind", None, None, None, params_from_dict({}))


def test_the_default_zoo_is_valid_and_every_kind_is_one_entry_away():
    params = params_from_dict(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert params.zoo.models and all(name in KINDS[module] for name, module in params.zoo.models.items())
    for module, names in KINDS.items():
        for name in names:
            models = params.zoo.models | {name: module}
            assert params_from_dict({"zoo": {"models": models}}).zoo.models == models


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"zoo": {"models": {"lstm": "recurrent"}}}, "zoo.models.lstm: module must be one of lgbm, gat, core, temporal, tgcn, linear"),
        ({"zoo": {"models": {"tcn": "temporal"}}}, "zoo.models.tcn: the temporal module trains lstm, gru, alstm, transformer"),
        ({"zoo": {"models": {"ridge": "linear"}}}, "zoo.models.ridge: the linear module trains linear, linear_graph"),
        ({"linear": {"alphas": []}}, "linear.alphas: is empty"),
        ({"zoo": {"models": ["lstm"]}}, "zoo.models: expected a mapping"),
        ({"ensemble": {"members": ["lgbm", "lstm"]}}, "ensemble.members: ['lstm'] are not in zoo.models"),
        ({"ensemble": {"members": ["lgbm"]}}, "ensemble.members: an ensemble needs at least 2 models"),
        ({"tgcn": {"relations": ["rolling_correlation", "friends"]}}, "tgcn.relations: ['friends'] are not in graph.relations"),
        ({"temporal": {"horizon_weights": [1.0]}}, "temporal.horizon_weights: has 1 weights for 4 horizons"),
    ],
)
def test_zoo_params_are_checked_with_the_key_named(override, message):
    with pytest.raises(ConfigError, match=f"^params: {message}".replace("[", r"\[").replace("]", r"\]")):
        params_from_dict(override)


@pytest.mark.parametrize(("stage", "args", "message"), [
    ("model", ["--model", "gru"], "error: --model gru: not in zoo.models of params.yaml (lgbm, lgbm_graph, gat, core, transformer, linear, linear_graph)"),
    ("ensemble", [], "error: ensemble.members: no predictions data/predictions/lgbm.parquet"),
])
def test_stages_say_what_is_missing_in_one_line(tmp_path, stage, args, message):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), *args], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "metrics").exists() and not (tmp_path / "data" / "ensemble").exists()


def test_lightgbm_and_ridge_stages_do_not_import_torch():
    """torch takes seconds to import: the model stage's own imports and the modules of the models that do not
    train with it must not load it, and a torch model's module does."""
    code = (
        "import runpy, sys; runpy.run_path('stages/model.py', run_name='imports_only'); "
        "from alphagraph.models.zoo import TORCH_MODULES, zoo_module; "
        "[zoo_module(m) for m in ('lgbm', 'linear')]; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "zoo_module(TORCH_MODULES[0]); assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
