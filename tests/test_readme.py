"""The README's and the docs pages' claims that can be checked mechanically: every param they name
exists, every command they show is a real module or script that starts (``--help``), every link to a
page or a heading resolves, and the README stays short (the rest lives in docs/)."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from alphagraph.runtime.config import Params, to_dict
from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
TEXT = {page: page.read_text() for page in PAGES}
GROUPS = set(to_dict(Params()))
FILE = re.compile(r"\.(json|csv|parquet|py|yaml|md|pt|html|txt)$")
# Keys of the metrics files that share a name with a params group (the training record).
METRIC_KEYS = {"train.val_best_fold0"}
README_MAX_LINES = 200


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _resolves(node: object, parts: list[str]) -> bool:
    for part in parts:
        if dataclasses.is_dataclass(node) and part in {f.name for f in dataclasses.fields(node)}:
            node = getattr(node, part)
        else:
            # A mapping or list param (zoo.models, graph.relations, ...) ends the path: its keys are the user's.
            return isinstance(node, (dict, list, tuple))
    return True


def named_params(text: str) -> set[str]:
    """Dotted names in inline code whose first part is a params group (``train.lr``, ``eval.backtest.topk``)."""
    found = set()
    for snippet in re.findall(r"`([^`\n]+)`", text):
        for token in re.findall(r"(?<![\w./+-])([a-z_]+(?:\.[a-z_0-9]+)+)(?=[\s:=,)]|$)", snippet):
            if token.split(".")[0] in GROUPS and not FILE.search(token) and token not in METRIC_KEYS:
                found.add(token)
    return found


def test_the_pages_name_many_params():
    names = set().union(*(named_params(text) for text in TEXT.values()))
    assert len(names) > 50  # the pages name many: the extraction works
    assert named_params(TEXT[README])  # the README's own names are checked too
    assert not _resolves(Params(), ["train", "lrr"]) and not _resolves(Params(), ["eval", "backtest", "topkk"])


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_param_a_page_names_exists(page):
    unknown = sorted(n for n in named_params(TEXT[page]) if not _resolves(Params(), n.split(".")))
    assert not unknown, f"{_name(page)} names params that do not exist: {unknown}"


def commands() -> dict[str, list[str]]:
    """Each module (``python -m alphagraph...``) or script (``python bench/...py``, ``python stages/...py``)
    a page shows, with the pages that show it."""
    where: dict[str, list[str]] = {}
    for page, text in TEXT.items():
        mods = set(re.findall(r"python -m (alphagraph(?:\.\w+)+)", text))
        scripts = set(re.findall(r"python ((?:bench|stages)/\w+\.py)", text))
        for command in mods | scripts:
            where.setdefault(command, []).append(_name(page))
    return where


COMMANDS = commands()


def test_the_docs_show_the_commands():
    assert any(c.startswith("alphagraph.experiments.") for c in COMMANDS) and "stages/model.py" in COMMANDS


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_a_page_shows_starts(command):
    shown = ", ".join(COMMANDS[command])
    args = ["-m", command] if not command.endswith(".py") else [str(ROOT / command)]
    if command.endswith(".py"):
        assert (ROOT / command).exists(), f"{command} (shown in {shown}) does not exist"
    proc = subprocess.run([sys.executable, *args, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"{command} --help (shown in {shown}): {proc.stderr[-500:]}"


def test_the_readme_stays_short():
    lines = TEXT[README].count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (under {README_MAX_LINES})"


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens (outside code blocks)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M):
        out.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return out


def links(page: Path) -> list[tuple[str, str]]:
    """(target file, anchor) of each relative Markdown link of ``page`` to a page or a heading."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", TEXT[page]):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        found.append((path, anchor))
    return found


def test_the_readme_links_every_docs_page():
    linked = {(README.parent / path).resolve() for path, _ in links(README) if path}
    missing = [_name(p) for p in DOCS if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_link_resolves(page):
    broken = []
    for path, anchor in links(page):
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{path}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target.read_text()):
            broken.append(f"{path}#{anchor}: no such heading")
    assert not broken, f"{_name(page)}: broken links: {broken}"
