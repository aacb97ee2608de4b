"""Typed configuration: ``params.yaml`` loaded once into frozen dataclasses.

Unknown keys and ill-typed values are rejected with a message that names the
full key (``train.lr``). Numbers are coerced the way a user means them: PyYAML's
safe_load reads a hand-written ``5e-4`` as the *string* "5e-4", while
``dvc exp run -S train.lr=5e-4`` writes ``0.0005``; both must mean 0.0005.

The schema is :mod:`alphagraph.runtime.params`, the cross-field rules
:mod:`alphagraph.runtime.checks`; both are re-exported here, the path every
caller imports from.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from alphagraph.runtime.checks import (
    LOOP_BOUNDS,
    SEQ_LEN,
    TRAINING_BOUNDS,
    Bound,
    check_device,
    check_params,
    relation_names,
)
from alphagraph.runtime.params import (
    KINDS,
    QLIB_PRESET,
    RELATION_NAMES,
    ZOO_MODULES,
    BacktestConfig,
    ColumnsConfig,
    ConfigError,
    DataConfig,
    DistributedConfig,
    EnsembleConfig,
    EvalConfig,
    ExportConfig,
    FeasibleConfig,
    FeaturesConfig,
    GatConfig,
    GraphConfig,
    LgbmConfig,
    LgbmGraphConfig,
    LinearConfig,
    LoopParams,
    NormalizeConfig,
    ObservedRelationsConfig,
    Params,
    PearlConfig,
    PretrainConfig,
    SignalConfig,
    SplitConfig,
    SyntheticConfig,
    TGCNConfig,
    TemporalConfig,
    TrainConfig,
    ZooConfig,
)

__all__ = [
    "apply_preset",
    "load_params",
    "params_from_dict",
    "to_dict",
    "KINDS",
    "LOOP_BOUNDS",
    "QLIB_PRESET",
    "RELATION_NAMES",
    "SEQ_LEN",
    "TRAINING_BOUNDS",
    "ZOO_MODULES",
    "BacktestConfig",
    "Bound",
    "ColumnsConfig",
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "EnsembleConfig",
    "EvalConfig",
    "ExportConfig",
    "FeasibleConfig",
    "FeaturesConfig",
    "GatConfig",
    "GraphConfig",
    "LgbmConfig",
    "LgbmGraphConfig",
    "LinearConfig",
    "LoopParams",
    "NormalizeConfig",
    "ObservedRelationsConfig",
    "Params",
    "PearlConfig",
    "PretrainConfig",
    "SignalConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TGCNConfig",
    "TemporalConfig",
    "TrainConfig",
    "ZooConfig",
    "check_device",
    "relation_names",
]


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read ``params.yaml`` into :class:`Params`, validating every key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return params_from_dict(raw or {}, source=str(path))


def params_from_dict(raw: Any, source: str = "params") -> Params:
    """Build :class:`Params` from a plain dict (the parsed YAML)."""
    params = _build(Params, raw, prefix="", source=source)
    params = apply_preset(params, source)
    # The zoo groups' null horizon weights are the core model's (one list to change with features.horizons).
    for group in ("temporal", "tgcn"):
        cfg = getattr(params, group)
        if cfg.horizon_weights is None:
            params = dataclasses.replace(params, **{group: dataclasses.replace(cfg, horizon_weights=params.train.horizon_weights)})
    check_params(params, source)
    return params


def apply_preset(params: Params, source: str = "params") -> Params:
    """``eval.backtest.preset: qlib``: :data:`QLIB_PRESET`'s values replace the defaults they name."""
    if params.eval.backtest.preset != "qlib":
        return params
    defaults = Params()
    tree = to_dict(params)
    for key, value in QLIB_PRESET.items():
        *groups, leaf = key.split(".")
        node, default = tree, defaults
        for g in groups:
            node, default = node[g], getattr(default, g)
        if node[leaf] not in (value, getattr(default, leaf)):
            raise ConfigError(
                f"{source}: {key} is {node[leaf]!r}, but eval.backtest.preset qlib sets {value!r}:"
                " set the preset to none to choose your own"
            )
        node[leaf] = value
    return _build(Params, tree, prefix="", source=source)


def to_dict(obj: Any) -> Any:
    """Plain dict of a config dataclass (for hashing and schema files)."""
    return dataclasses.asdict(obj)


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(raw).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]!s} (known keys: {', '.join(sorted(names))})"
        )
    kwargs = {
        key: _coerce(hints[key], value, f"{prefix}{key}", source) for key, value in raw.items()
    }
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, key + ".", source)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key, source)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{source}: {key}: expected one of {', '.join(map(str, choices))}, got {value!r}"
            )
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key}: expected a list, got {value!r}")
        (item,) = get_args(tp)
        return [_coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: expected a mapping, got {value!r}")
        key_tp, value_tp = get_args(tp)
        return {_coerce(key_tp, k, key, source): _coerce(value_tp, v, f"{key}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise ConfigError(f"{source}: {key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: {key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: {key}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module
