"""Shared fixtures: a tiny configuration and throwaway DVC copies of this repo."""

from __future__ import annotations

import os

# LightGBM and torch share 2 cores in one test process; busy-waiting OpenMP threads
# slowed both by ~10x. Must be set before either library is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# The synthetic market before noisy, dynamic relations and time-varying strengths: unit
# tests that check a model *can* learn the planted signal use it, so a small market still
# carries enough signal; the default run measures the realistic market.
EASY_MARKET: dict[str, Any] = {
    "supply_life_days": 0, "fund_rebalance_days": 0, "strength_variation": 0.0, "supply_nonlinearity": 0.0,
    "observed": {"weight_noise": 0.0, "missing_share": 0.0, "spurious_share": 0.0},
}

# Small enough for CI, large enough that every stage has something to learn.
TINY_PARAMS: dict[str, Any] = {
    "data": {"synthetic": {"n_stocks": 40, "n_days": 400, "n_sectors": 4, "n_funds": 10}},
    "normalize": {"min_stocks": 5},
    "split": {"n_splits": 2, "min_train_days": 100, "val_days": 60, "test_days": 60, "embargo_days": 20},
    "lgbm": {"min_data_in_leaf": 100, "n_estimators": 60},
    "gat": {"epochs": 2, "hidden": 16, "days_per_epoch": 48},
    "train": {"epochs": 2, "hidden": 16, "layers": 1, "seq_len": 5, "days_per_epoch": 48, "pearl": {"samples": 4, "dim": 8}},
    "temporal": {"epochs": 2, "hidden": 16, "seq_len": 10, "days_per_epoch": 48},
    "tgcn": {"epochs": 2, "hidden": 16, "seq_len": 5, "days_per_epoch": 48},
    # The default models, and a graph network besides.
    "zoo": {"models": {"lgbm": "lgbm", "lgbm_graph": "lgbm", "gat": "gat", "core": "core", "transformer": "temporal",
                       "linear": "linear", "linear_graph": "linear", "tgcn": "tgcn"}},
    # 40 stocks: a top-10 book (Qlib's top 50 of 300 is a sixth of its universe).
    "eval": {"backtest": {"topk": 10, "n_drop": 2}},
    # Folds one after another: a tiny fold trains in less time than a worker process takes to start
    # (tests/test_fold_workers.py runs the workers).
    "distributed": {"fold_workers": 1},
}


def deep_merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def repo_files() -> list[Path]:
    """The files a fresh clone would have (tracked + untracked-not-ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [Path(p) for p in listed if (ROOT / p).is_file()]


def run(cmd: list[str], cwd: Path, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's environment first on PATH (dvc stages call `python`).

    ``capture=False`` for commands that leave a daemon behind (``dvc queue start``): a
    captured pipe would stay open until the daemon exits.
    """
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
        OMP_WAIT_POLICY="PASSIVE",
    )
    if capture:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    else:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_dvc_repo(dst: Path, overrides: dict[str, Any], setup: Callable[[Path], None] | None = None) -> Path:
    """Copy the project into ``dst``, apply param overrides, and commit it as a new git+DVC repo.

    ``setup(dst)`` runs before the commit (e.g. to put a user's files under ``inputs/``).
    """
    for rel in repo_files():
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    if setup is not None:
        setup(dst)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    (dst / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, overrides), sort_keys=False))
    run(["git", "init", "-q"], dst)
    if not (dst / ".dvc").exists():
        run(["dvc", "init", "-q"], dst)
    run(["git", "add", "-A"], dst)
    run(["git", "commit", "-qm", "init"], dst)
    return dst


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A DVC copy of the repo with the tiny config, after one full `dvc repro`."""
    repo = make_dvc_repo(tmp_path_factory.mktemp("repo"), TINY_PARAMS)
    run(["dvc", "repro", "-q"], repo)
    return repo


# Three epochs a fold and no early stop: a killed run has an epoch left to resume.
TRAINING_PARAMS: dict[str, Any] = deep_merge(
    TINY_PARAMS, {"train": {"epochs": 3, "patience": 0}, "gat": {"epochs": 3, "patience": 0}}
)


@pytest.fixture(scope="session")
def training_workspace(tmp_path_factory) -> Path:
    """A DVC copy of the repo with the tiny config and every input of the training stages built."""
    repo = make_dvc_repo(tmp_path_factory.mktemp("training"), TRAINING_PARAMS)
    run(["dvc", "repro", "-q", "graph", "oracle", "pretrain"], repo)  # every input of the model stages
    return repo


class SmallPipeline:
    """The DAG's artifacts for a small synthetic market, built in-process."""

    def __init__(self, params):
        from alphagraph.data.ingest import ingest
        from alphagraph.features.panel import build_panel
        from alphagraph.graph.build import build_edges
        from alphagraph.features.normalize import normalize_panel
        from alphagraph.evaluation.split import make_folds

        self.params = params
        raw = ingest(params)
        self.prices, self.universe, self.relations, self.oracle = raw.prices, raw.universe, raw.relations, raw.oracle
        features, _ = build_panel(raw.prices, raw.universe, params.features)
        self.panel, _ = normalize_panel(features, params.normalize, params.features.horizons)
        self.folds = make_folds(self.panel["date"].unique().sort().to_list(), params.split)
        self.edges, _ = build_edges(raw.prices, raw.universe, raw.relations, params.graph)


SMALL_PARAMS: dict[str, Any] = {
    "data": {"synthetic": {"n_stocks": 80, "n_days": 700, "n_sectors": 4, "n_funds": 12, **EASY_MARKET}},
    "features": {"windows": [5, 10, 20, 60]},
    "normalize": {"min_stocks": 10},
    "split": {"n_splits": 2, "min_train_days": 200, "val_days": 120, "test_days": 120, "embargo_days": 20},
    "lgbm": {"min_data_in_leaf": 300, "n_estimators": 150},
}


@pytest.fixture(scope="session")
def small_pipeline() -> SmallPipeline:
    from alphagraph.runtime.config import params_from_dict

    return SmallPipeline(params_from_dict(SMALL_PARAMS))


@pytest.fixture(scope="session")
def make_small_pipeline() -> Callable[[dict[str, Any]], SmallPipeline]:
    """Builds the small pipeline with ``overrides`` merged into SMALL_PARAMS."""
    from alphagraph.runtime.config import params_from_dict

    return lambda overrides: SmallPipeline(params_from_dict(deep_merge(SMALL_PARAMS, overrides)))
