"""The README's claims that can be checked mechanically: every param it names exists, every
command it shows is a real module or script that starts (``--help``)."""

import dataclasses
import re
import subprocess
import sys

import pytest

from alphagraph.config import Params, to_dict
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
GROUPS = set(to_dict(Params()))
CODE = re.findall(r"`([^`\n]+)`", README)
FILE = re.compile(r"\.(json|csv|parquet|py|yaml|md|pt|html|txt)$")
# Keys of the metrics files that share a name with a params group (the training record).
METRIC_KEYS = {"train.val_best_fold0"}


def _resolves(node: object, parts: list[str]) -> bool:
    for part in parts:
        if dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}:
            node = getattr(node, part)
        else:
            # A mapping or list param (zoo.models, graph.relations, ...) ends the path: its keys are the user's.
            return isinstance(node, (dict, list, tuple))
    return True


def named_params() -> set[str]:
    found = set()
    for snippet in CODE:
        for token in re.findall(r"(?<![\w./+-])([a-z_]+(?:\.[a-z_0-9]+)+)(?=[\s:=,)]|$)", snippet):
            if token.split(".")[0] in GROUPS and not FILE.search(token) and token not in METRIC_KEYS:
                found.add(token)
    return found


def test_every_param_the_readme_names_exists():
    names = named_params()
    assert len(names) > 50  # the README names many: the extraction works
    unknown = sorted(n for n in names if not _resolves(Params(), n.split(".")))
    assert not unknown, f"README names params that do not exist: {unknown}"
    assert not _resolves(Params(), ["train", "lrr"]) and not _resolves(Params(), ["eval", "backtest", "topkk"])


def commands() -> set[str]:
    mods = set(re.findall(r"python -m (alphagraph(?:\.\w+)+)", README))
    scripts = set(re.findall(r"python ((?:bench|stages)/\w+\.py)", README))
    return mods | scripts


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_command_the_readme_shows_starts(command):
    args = ["-m", command] if not command.endswith(".py") else [str(ROOT / command)]
    if command.endswith(".py"):
        assert (ROOT / command).exists(), command
    proc = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"{command} --help: {proc.stderr[-500:]}"
