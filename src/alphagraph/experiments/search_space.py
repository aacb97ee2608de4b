"""The search file (``search.yaml``): its parsing and validation against the base params, apart
from the study that runs it, so that a bad file fails before any trial trains."""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alphagraph.runtime.config import ConfigError, Params, params_from_dict, to_dict
from alphagraph.runtime.errors import UserError

UPSTREAM = ("data", "features", "normalize", "split", "graph")  # stages before the models: their artifacts are fixed
GROUPS = {"core": "train", "gat": "gat", "lgbm": "lgbm"}
ZOO_MODULES = ("temporal", "tgcn")  # zoo modules a search can train
METRIC = re.compile(r"^(rank_ic|ic|rank_icir|icir)_(\d+)d$")
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SEARCH_KEYS = ("study", "model", "objective", "direction", "trials", "sampler", "pruner", "holdout", "folds", "space")


def tidy(value: Any) -> Any:
    """A float to 10 significant digits (0.7000000000000001 -> 0.7): what a trial trains with and
    what ``best`` prints, so the printed command reproduces the trial exactly."""
    return float(f"{value:.10g}") if isinstance(value, float) else value


@dataclass(frozen=True)
class Dim:
    """One searched param: ``float`` / ``int`` (low, high, log, step) or ``categorical`` (choices)."""

    path: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.type == "float":
            return tidy(trial.suggest_float(self.path, self.low, self.high, log=self.log, step=self.step))
        if self.type == "int":
            return trial.suggest_int(self.path, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.path, list(self.choices))

    def endpoints(self) -> list[Any]:
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class Search:
    """A validated search file."""

    study: str
    model: str
    group: str  # the params group the model reads (train for core, a zoo model's module, ...)
    objective: str
    horizon: int
    direction: str
    trials: int
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    holdout: str
    folds: tuple[int, ...] | None
    space: tuple[Dim, ...]

    def signature(self) -> dict[str, Any]:
        """What a study's trials must share (stored on the study; a resumed study must match)."""
        return {
            "model": self.model, "objective": self.objective, "direction": self.direction, "holdout": self.holdout,
            "folds": None if self.folds is None else list(self.folds),
            "space": {d.path: _plain_dim(d) for d in self.space},
        }


def _plain_dim(d: Dim) -> dict[str, Any]:
    out = {k: v for k, v in dataclasses.asdict(d).items() if k != "path" and v not in (None, (), False)}
    if "choices" in out:
        out["choices"] = list(out["choices"])
    return out


def model_group(model: str, params: Params) -> str:
    """The params group ``model`` trains with; UserError for an unknown model."""
    if model in GROUPS:
        return GROUPS[model]
    if model in params.zoo.models:
        module = params.zoo.models[model]
        if module not in ZOO_MODULES:
            raise UserError(f"search: model {model} (zoo module {module}) cannot be searched; zoo modules: {', '.join(ZOO_MODULES)}")
        return module
    known = ", ".join(dict.fromkeys([*GROUPS, *params.zoo.models]))
    raise UserError(f"search: model {model!r} is not core, gat, lgbm or a zoo model of params.yaml (zoo.models); known: {known}")


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """``raw[a][b][c] = value`` for ``path = "a.b.c"`` (missing groups created)."""
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"search: {path}: {key} is not a params group")
    node[leaf] = value


def _leaf(tree: dict[str, Any], path: str) -> tuple[bool, str]:
    """Whether ``path`` names a leaf of the params tree, else what is wrong."""
    node: Any = tree
    done: list[str] = []
    for key in path.split("."):
        if not isinstance(node, dict):
            return False, f"{'.'.join(done)} is a value, not a group"
        if key not in node:
            where = ".".join(done) or "the top level"
            return False, f"unknown param (keys of {where}: {', '.join(sorted(node))})"
        node, done = node[key], [*done, key]
    if isinstance(node, dict):
        return False, f"a params group, not a value (its keys: {', '.join(sorted(node))})"
    return True, ""


def _number(value: Any, where: str, integer: bool) -> float | int:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        raise UserError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    return value


def _parse_dim(path: str, spec: Any, where: str) -> Dim:
    if not isinstance(spec, dict):
        raise UserError(f"{where}: expected a mapping like {{type: float, low: 0.001, high: 0.01}}, got {spec!r}")
    kind = spec.get("type")
    allowed = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
               "categorical": {"type", "choices"}}
    if kind not in allowed:
        raise UserError(f"{where}.type: one of float, int, categorical, got {kind!r}")
    extra = sorted(set(spec) - allowed[kind])
    if extra:
        raise UserError(f"{where}: unknown key {extra[0]} for type {kind} (allowed: {', '.join(sorted(allowed[kind]))})")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}.choices: expected a non-empty list")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise UserError(f"{where}.choices: only null, booleans, numbers and strings, got {bad[0]!r}")
        return Dim(path, kind, choices=tuple(choices))
    integer = kind == "int"
    for key in ("low", "high"):
        if key not in spec:
            raise UserError(f"{where}: {key} is required for type {kind}")
    low, high = _number(spec["low"], f"{where}.low", integer), _number(spec["high"], f"{where}.high", integer)
    if not low < high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    use_log = spec.get("log", False)
    if not isinstance(use_log, bool):
        raise UserError(f"{where}.log: expected true or false, got {use_log!r}")
    if use_log and low <= 0:
        raise UserError(f"{where}: log: true needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, f"{where}.step", integer)
        if step <= 0:
            raise UserError(f"{where}.step: must be > 0, got {step}")
        if use_log and (kind == "float" or step != 1):
            raise UserError(f"{where}: step and log: true cannot be combined")
    return Dim(path, kind, low=low, high=high, log=use_log, step=step)


def load_search(path: str | Path, base: dict[str, Any]) -> Search:
    """Read and validate a search file against the base params ``base`` (the parsed params.yaml)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: search file not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of {', '.join(SEARCH_KEYS)}")
    unknown = sorted(set(doc) - set(SEARCH_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]} (known keys: {', '.join(SEARCH_KEYS)})")
    params = params_from_dict(base)
    study = str(doc.get("study") or path.stem)
    if not STUDY_NAME.match(study):
        raise UserError(f"{path}: study {study!r}: letters, digits, '_', '.', '-' only (it names files and DVC experiments)")
    model = doc.get("model", "core")
    group = model_group(str(model), params)
    objective = str(doc.get("objective", "rank_ic_1d"))
    m = METRIC.match(objective)
    if not m:
        raise UserError(f"{path}: objective {objective!r}: one of rank_ic_{{h}}d, ic_{{h}}d, rank_icir_{{h}}d, icir_{{h}}d")
    horizon = int(m.group(2))
    if horizon not in params.features.horizons:
        raise UserError(f"{path}: objective {objective}: horizon {horizon} is not in features.horizons {params.features.horizons}")
    direction = doc.get("direction", "maximize")
    if direction not in ("maximize", "minimize"):
        raise UserError(f"{path}: direction: maximize or minimize, got {direction!r}")
    trials = doc.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise UserError(f"{path}: trials: a positive integer, got {trials!r}")
    sampler = _options(doc.get("sampler"), f"{path}: sampler", {"tpe": {"seed", "startup_trials"}, "random": {"seed"}}, "tpe")
    pruner = _options(
        doc.get("pruner"), f"{path}: pruner",
        {"median": {"startup_trials", "warmup_steps"}, "percentile": {"startup_trials", "warmup_steps", "percentile"}, "none": set()},
        "median",
    )
    for key in ("seed", "startup_trials", "warmup_steps"):
        for opts in (sampler, pruner):
            if key in opts and opts[key] is not None and (isinstance(opts[key], bool) or not isinstance(opts[key], int) or opts[key] < 0):
                raise UserError(f"{path}: {key}: a non-negative integer, got {opts[key]!r}")
    if "percentile" in pruner and not (isinstance(pruner["percentile"], (int, float)) and 0 < pruner["percentile"] < 100):
        raise UserError(f"{path}: pruner.percentile: a number in (0, 100), got {pruner['percentile']!r}")
    holdout = doc.get("holdout", "first_test")
    if holdout not in ("first_test", "fold"):
        raise UserError(f"{path}: holdout: first_test (no fold reads any test day) or fold (each fold stops at its own test window), got {holdout!r}")
    folds = doc.get("folds")
    if folds is not None:
        if not isinstance(folds, list) or not folds or any(isinstance(k, bool) or not isinstance(k, int) for k in folds):
            raise UserError(f"{path}: folds: null (every usable fold) or a list of fold numbers, got {folds!r}")
        folds = tuple(dict.fromkeys(folds))
    space = doc.get("space")
    if not isinstance(space, dict) or not space:
        raise UserError(f"{path}: space: a non-empty mapping of param path -> {{type: ..., ...}}")
    tree = to_dict(params)
    dims = []
    for key, spec in space.items():
        key = str(key)
        where = f"{path}: space.{key}"
        top = key.split(".")[0]
        if top in UPSTREAM:
            raise UserError(
                f"{where}: {top} is read by an upstream stage (data, features, normalize, split and graph build the"
                " artifacts every trial trains on), so it cannot be searched in-process; grid it as pipeline"
                f" experiments instead: dvc exp run --queue -S '{key}=A,B,C' && dvc queue start"
            )
        ok, why = _leaf(tree, key)
        if not ok:
            raise UserError(f"{where}: {why}")
        if top != group:
            raise UserError(f"{where}: model {model} does not read {top}.* (its params group is {group}.*)")
        dim = _parse_dim(key, spec, where)
        for value in dim.endpoints():  # each bound / choice must be a valid value of the param
            raw = copy.deepcopy(base)
            set_path(raw, key, value)
            try:
                params_from_dict(raw, source="params.yaml")
            except ConfigError as exc:
                raise UserError(f"{where}: value {value!r} is not valid: {exc}") from None
        dims.append(dim)
    return Search(study, str(model), group, objective, horizon, direction, trials, sampler, pruner, holdout, folds, tuple(dims))


def _options(spec: Any, where: str, kinds: dict[str, set[str]], default: str) -> dict[str, Any]:
    spec = {"type": default} if spec is None else spec
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or spec.get("type", default) not in kinds:
        raise UserError(f"{where}: type one of {', '.join(kinds)}, got {spec!r}")
    kind = spec.get("type", default)
    extra = sorted(set(spec) - kinds[kind] - {"type"})
    if extra:
        raise UserError(f"{where}: unknown key {extra[0]} for {kind} (allowed: {', '.join(sorted(kinds[kind])) or 'none'})")
    return {**spec, "type": kind}


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in values.items():
        set_path(out, path, value)
    return out
