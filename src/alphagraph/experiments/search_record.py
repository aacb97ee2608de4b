"""What a finished trial leaves: its ``result.json`` and a DVC experiment, saved one at a time
(git's index and DVC's lock are shared by every worker of the repo)."""

from __future__ import annotations

import fcntl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alphagraph.runtime.io import write_json
from alphagraph.runtime.log import get_logger
from alphagraph.experiments.search_space import Search, _nested, tidy

log = get_logger("search")

SEARCHES = Path("searches")
LIVE_DIR = SEARCHES / "dvclive"  # not git-ignored: DVC refuses a dvc.yaml that git ignores
LOCK = Path(".dvc/tmp/alphagraph-search.lock")


def dvc_repo_ready() -> bool:
    """A git repo with a commit and DVC initialised, here (the repo root)."""
    if not (Path(".dvc").is_dir() and Path(".git").exists()):
        return False
    done = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True, check=False)
    return done.returncode == 0


@contextmanager
def repo_lock() -> Iterator[None]:
    """One DVC experiment save at a time in this repo (git's index and DVC's lock are shared)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class TrialRecorder:
    """Optuna callback after each finished trial: ``result.json``, and a DVC experiment from ``searches/dvclive/``."""

    search: Search
    out_dir: Path
    dvc_exp: bool

    def __call__(self, study: Any, trial: Any) -> None:
        state = trial.state.name.lower()
        steps = sorted(trial.intermediate_values)
        partial = trial.intermediate_values[steps[-1]] if steps else None
        result = {
            "study": study.study_name, "trial": trial.number, "state": state, "objective": self.search.objective,
            "value": trial.value, "last_reported": partial, "folds": trial.user_attrs.get("folds", {}),
            "params": {k: tidy(v) for k, v in trial.params.items()}, "error": trial.user_attrs.get("error"),
            "seconds": None if trial.datetime_complete is None or trial.datetime_start is None
            else round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1),
        }
        write_json(result, self.out_dir / f"trial-{trial.number}" / "result.json")
        if self.dvc_exp:
            try:
                self._save_experiment(study.study_name, trial, result)
            except Exception as exc:  # noqa: BLE001 - a failed save must not stop the search
                log.warning("trial %d: not saved as a DVC experiment (%s: %s)", trial.number, type(exc).__name__, exc)

    def _save_experiment(self, study: str, trial: Any, result: dict[str, Any]) -> None:
        from dvc.repo import Repo
        from dvclive import Live

        name = f"{study}-t{trial.number}"
        with repo_lock():
            with Live(dir=str(LIVE_DIR), dvcyaml=str(LIVE_DIR / "dvc.yaml"), save_dvc_exp=False) as live:
                live.log_params(_nested(result["params"]) | {"search": {
                    "study": study, "trial": trial.number, "model": self.search.model, "state": result["state"]}})
                # validation figures only: a trial has no test figures
                live.summary[f"val_{self.search.objective}"] = result["value"]
                live.summary["val_last_reported"] = result["last_reported"]
                for k, v in result["folds"].items():
                    live.summary[f"val_fold{k}"] = v
            with Repo(".") as repo:
                # targets: commit no pipeline stage (a missing output would fail the save)
                repo.experiments.save(
                    targets=[str(LIVE_DIR / "dvc.yaml")], name=name, force=True, include_untracked=[str(LIVE_DIR)],
                    message=f"search {study} trial {trial.number} ({result['state']})",
                )
        log.info("trial %d saved as DVC experiment %s", trial.number, name)
