"""Spread of the headline test metrics over seeds, from ``dvc exp show --json``.

One run is one draw: a RankIC lead of a few thousandths can flip with the seed.
Run each configuration over several seeds and aggregate::

    dvc exp run --queue -n core-nopearl -S train.pearl.mode=none -S seed=0,1,2
    dvc queue start                      # then wait for: dvc queue status
    python -m alphagraph.experiments.seeds --compare core lgbm

Grouping (``--by``):

* ``params`` (default): experiments with the same params apart from ``seed``
  and the speed/device knobs (:data:`IGNORED`: ``device``, ``*.num_threads``,
  ``*.blas_threads``), on the same baseline commit, are one group. A group is
  labelled by its name prefix when all its members share one, else by the params
  that differ between groups.
* ``name``: experiments whose names agree after dropping a trailing ``-<k>`` or
  ``-s<k>`` are one group (per baseline). ``dvc exp run -n NAME`` with a ``-S``
  grid names its runs ``NAME-1``, ``NAME-2``, ... (``-<k>`` counts the runs, it is
  not the seed); ``NAME-s<seed>`` is the convention for runs named by hand.

``seed`` is the models' seed only: the synthetic market is drawn by
``data.synthetic.market_seed``, so a seed grid retrains on one market (grid over
``market_seed`` too for the spread over market draws). ``--compare`` takes the
difference of two models within each run first, so what both models share in a
run cancels. ``device`` is grouped over although bf16 on
CUDA moves the figures slightly: mix devices in one group only knowingly.

The pure functions (:func:`aggregate`, :func:`paired`) take plain experiment
dicts ``{"name", "baseline", "params", "metrics": {model: {metric: value}}}``;
:func:`parse_exp_show` builds them from the dvc JSON.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alphagraph.runtime.errors import UserError, run_main
from alphagraph.runtime.io import write_json
from alphagraph.reporting.report import MODELS, _fmt, markdown_table

# Test-dict metrics aggregated by default (pooled test windows of metrics/<model>.json).
HEADLINE = ("rank_ic_1d", "rank_ic_5d", "rank_icir_1d", "sharpe_1d", "sharpe_net_1d")

# Params that change no result, only speed or where it runs: runs that differ
# only in these are the same configuration.
IGNORED = ("seed", "device", "*.num_threads", "*.blas_threads")

PARAMS_FILE = "params.yaml"
SEED = "seed"
_NAME_SUFFIX = re.compile(r"-s?\d+$")
DASH = "—"


class SeedWarning(UserWarning):
    """A group with one seed (std null), or a seed run twice in a group (the repeat is dropped)."""


# ---------------------------------------------------------------------- parsing


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys (``train.pearl.mode``); lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def _file_data(files: Any) -> dict[str, Any]:
    """``{path: data}`` of a params/metrics block of dvc's JSON, skipping files dvc could not read."""
    if not isinstance(files, Mapping):
        return {}
    return {path: doc["data"] for path, doc in files.items() if isinstance(doc, Mapping) and isinstance(doc.get("data"), Mapping)}


def _record(data: Mapping[str, Any], name: str, rev: str, baseline: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for path, tree in _file_data(data.get("params")).items():
        # Keys of other params files keep their file name, as `dvc exp show` does.
        params |= flatten(tree, "" if path == PARAMS_FILE else f"{path}:")
    metrics = {}
    for path, doc in _file_data(data.get("metrics")).items():
        test = doc.get("test")
        p = Path(path)
        # A model file has a pooled `test` dict; an unavailable oracle has none.
        if p.parent.name == "metrics" and isinstance(test, Mapping):
            metrics[p.stem] = dict(test)
    return {"name": name, "rev": rev, "baseline": baseline, "params": params, "metrics": metrics}


def parse_exp_show(doc: Any, baselines: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """``(experiments, skipped)`` from ``dvc exp show --json`` (dvc 3: a list of commits).

    Each commit is ``{rev, name, data, error, experiments}``; ``experiments`` is a
    list of ``{name, executor, revs: [{rev, name, data, error}]}``. Queued, running
    and failed experiments (no data, or an error) are skipped and named in
    ``skipped``. ``baselines`` also returns the commits themselves (not the
    workspace), which hold the committed run.
    """
    if not isinstance(doc, list):
        raise UserError(f"dvc exp show JSON: expected a list of commits, got {type(doc).__name__}")
    out, skipped = [], []
    for commit in doc:
        if not isinstance(commit, Mapping):
            continue
        base = str(commit.get("rev"))
        if baselines and base != "workspace" and isinstance(commit.get("data"), Mapping):
            out.append(_record(commit["data"], commit.get("name") or base[:7], base, base))
        for exp in commit.get("experiments") or []:
            revs = exp.get("revs") or []
            head = revs[0] if revs else {}
            name = exp.get("name") or head.get("name") or str(head.get("rev", "?"))[:7]
            data = head.get("data")
            # A running experiment already shows metrics: the workspace's copies, not its own yet.
            state = (exp.get("executor") or {}).get("state") if isinstance(exp.get("executor"), Mapping) else None
            if state not in (None, "success") or head.get("error") or not isinstance(data, Mapping) or not data.get("metrics"):
                skipped.append(name)
                continue
            rec = _record(data, name, str(head.get("rev")), base)
            # A search trial (alphagraph.experiments.search) logs validation figures only; the metrics files it
            # carries are the workspace's, not its own.
            if any(k.endswith(":search.study") for k in rec["params"]):
                skipped.append(name)
                continue
            out.append(rec)
    return out, skipped


def run_exp_show(all_commits: bool = False) -> Any:
    """The parsed output of ``dvc exp show --json`` in the current directory."""
    cmd = ["dvc", "exp", "show", "--json", *(["-A"] if all_commits else [])]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError("dvc not found: activate the project's virtual environment, or pass --input FILE") from None
    if done.returncode != 0:
        raise UserError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise UserError(f"{' '.join(cmd)}: output is not JSON ({exc})") from None


# --------------------------------------------------------------------- grouping


def _ignored(key: str, ignore: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(key, pat) for pat in ignore)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def name_prefix(name: str) -> str:
    """``core-nopearl-2`` and ``core-nopearl-s2`` -> ``core-nopearl``."""
    return _NAME_SUFFIX.sub("", name)


def group_experiments(
    experiments: Sequence[Mapping[str, Any]], by: str = "params", ignore: Sequence[str] = IGNORED
) -> list[dict[str, Any]]:
    """Groups ``{"group", "baseline", "params", "members"}`` in first-seen order.

    ``params`` holds the group's values of the params that differ between
    groups (and ``seeds`` is added by :func:`aggregate`). A second run of one seed
    in a group is dropped with a warning: it would count one draw twice.
    """
    if by not in ("params", "name"):
        raise UserError(f"--by must be 'params' or 'name', got {by!r}")
    config = [{k: v for k, v in e.get("params", {}).items() if not _ignored(k, ignore)} for e in experiments]
    keys: dict[tuple, list[int]] = {}
    for i, e in enumerate(experiments):
        what = name_prefix(e["name"]) if by == "name" else tuple(sorted((k, _canon(v)) for k, v in config[i].items()))
        keys.setdefault((e.get("baseline"), what), []).append(i)

    # Params whose value is not the same in every group: what tells the groups apart.
    all_keys = sorted({k for c in config for k in c})
    varying = [k for k in all_keys if len({_canon(c.get(k)) for c in config}) > 1]
    groups = []
    for (baseline, _), idx in keys.items():
        members, seen = [], set()
        for i in idx:
            seed = experiments[i].get("params", {}).get(SEED)
            if seed is not None and seed in seen:
                warnings.warn(
                    f"{experiments[i]['name']}: seed {seed} already in its group; left out", SeedWarning, stacklevel=2
                )
                continue
            seen.add(seed)
            members.append(experiments[i])
        first = config[idx[0]]
        groups.append({"baseline": baseline, "params": {k: first.get(k) for k in varying}, "members": members})
    _label(groups)
    return groups


def _label(groups: list[dict[str, Any]]) -> None:
    """Set each group's ``group``: its shared name prefix, else its distinguishing params."""
    prefixes = [{name_prefix(m["name"]) for m in g["members"]} for g in groups]
    several_baselines = len({g["baseline"] for g in groups}) > 1
    labels = []
    for g, pre in zip(groups, prefixes):
        label = next(iter(pre)) if len(pre) == 1 else ""
        # A prefix names a group only if no other group on its baseline has it too.
        if not label or sum(p == pre and o["baseline"] == g["baseline"] for p, o in zip(prefixes, groups)) > 1:
            label = ", ".join(f"{k}={_canon(v)}" for k, v in g["params"].items()) or "all"
        short = str(g["baseline"])[:7]
        if several_baselines and not label.startswith(short):
            label = f"{short}:{label}"
        labels.append(label)
    # Still ambiguous (one name reused with other params): number them.
    for i, (g, label) in enumerate(zip(groups, labels)):
        dupes = [j for j, other in enumerate(labels) if other == label]
        g["group"] = label if len(dupes) == 1 else f"{label} #{dupes.index(i) + 1}"


# ------------------------------------------------------------------ aggregation


def _stats(values: Iterable[float | None]) -> dict[str, Any]:
    """``mean, std`` (ddof=1, null with one value), ``n`` of the finite values."""
    x = np.array([v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)], dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    return {
        "mean": float(x.mean()) if n else None,
        "std": float(x.std(ddof=1)) if n > 1 else None,
        "n": n,
    }


def _models(groups: Sequence[Mapping[str, Any]], models: Sequence[str] | None) -> list[str]:
    if models is not None:
        return list(models)
    found = {m for g in groups for e in g["members"] for m in e.get("metrics", {})}
    return [m for m in MODELS if m in found] + sorted(found - set(MODELS))


def aggregate(
    experiments: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = HEADLINE,
    models: Sequence[str] | None = None,
    by: str = "params",
    ignore: Sequence[str] = IGNORED,
) -> list[dict[str, Any]]:
    """Per group: ``{"group", "baseline", "params", "seeds", "members", "metrics": {model: {metric: stats}}}``.

    ``stats`` is ``{"mean", "std", "n"}`` over the group's seeds (std with
    ddof=1). ``models`` defaults to every model found, in leaderboard order. No
    experiments raises :class:`UserError`; a one-seed group warns
    (:class:`SeedWarning`) and has null std.
    """
    if not experiments:
        raise UserError(
            "no finished experiments to aggregate: run a seed grid first, e.g. "
            "dvc exp run --queue -n NAME -S seed=0,1,2 && dvc queue start"
        )
    groups = group_experiments(experiments, by, ignore)
    names = _models(groups, models)
    out = []
    for g in groups:
        members = g["members"]
        if len(members) < 2:
            warnings.warn(f"group {g['group']}: one seed only, std is null", SeedWarning, stacklevel=2)
        table = {
            model: {m: _stats(e.get("metrics", {}).get(model, {}).get(m) for e in members) for m in metrics}
            for model in names
            if any(model in e.get("metrics", {}) for e in members)
        }
        out.append(
            {
                "group": g["group"],
                "baseline": g["baseline"],
                "params": g["params"],
                "seeds": [e.get("params", {}).get(SEED) for e in members],
                "members": [e["name"] for e in members],
                "metrics": table,
            }
        )
    return out


def paired(
    experiments: Sequence[Mapping[str, Any]],
    a: str,
    b: str,
    metrics: Sequence[str] = HEADLINE,
    by: str = "params",
    ignore: Sequence[str] = IGNORED,
) -> list[dict[str, Any]]:
    """Per group: model ``a`` minus model ``b`` within each run, then ``{"mean", "std", "n"}`` over seeds.

    Pairing within a run takes out what both models share (the market draw,
    the split), so the spread is that of the difference alone. Rows
    ``{"group", "a", "b", "metrics": {metric: stats}}``; groups where no run has
    both models are left out.
    """
    if not experiments:
        raise UserError("no finished experiments to compare")
    out = []
    for g in group_experiments(experiments, by, ignore):
        both = [e["metrics"] for e in g["members"] if a in e.get("metrics", {}) and b in e.get("metrics", {})]
        if not both:
            continue
        diffs = {m: _stats(_diff(run[a].get(m), run[b].get(m)) for run in both) for m in metrics}
        out.append({"group": g["group"], "a": a, "b": b, "metrics": diffs})
    if not out:
        raise UserError(f"no experiment has metrics for both {a} and {b}")
    return out


def _diff(x: Any, y: Any) -> float | None:
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
    return float(x) - float(y) if ok else None


# ---------------------------------------------------------------------- output


def _decimals(metric: str) -> int:
    # RankIC lives in the third decimal; ICIR and Sharpe in the first.
    return 4 if metric.startswith(("rank_ic_", "ic_")) and "icir" not in metric else 2


def _cell(stats: Mapping[str, Any] | None, metric: str) -> str:
    if not stats or stats.get("mean") is None:
        return DASH
    d = _decimals(metric)
    std = stats.get("std")
    return f"{_fmt(stats['mean'], d)} ± {_fmt(std, d)}" if std is not None else _fmt(stats["mean"], d)


def to_markdown(rows: Sequence[Mapping[str, Any]], comparisons: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> str:
    """Markdown tables: mean ± std (ddof=1) over seeds per group and model, then the paired differences."""
    header = ["group", "model", "seeds", *metrics]
    align = ["---", "---", "---:"] + ["---:"] * len(metrics)
    body = []
    for r in rows:
        for model, stats in r["metrics"].items():
            n = max((s["n"] for s in stats.values()), default=0)
            body.append([r["group"], model, str(n), *(_cell(stats.get(m), m) for m in metrics)])
    lines = ["Test metrics over seeds: mean ± std (ddof=1), seeds = runs with the model.", "", *markdown_table(header, align, body)]
    if comparisons:
        body = []
        for c in comparisons:
            n = max((s["n"] for s in c["metrics"].values()), default=0)
            body.append([c["group"], f"{c['a']} − {c['b']}", str(n), *(_cell(c["metrics"].get(m), m) for m in metrics)])
        lines += [
            "",
            "Paired differences within each run (same seed, same market): mean ± std over seeds.",
            "",
            *markdown_table(["group", "difference", "seeds", *metrics], align, body),
        ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------- CLI


def dvc_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.dvc/``; None outside a DVC repository."""
    for d in (start, *start.parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def load_exp_show(source: str | None, all_commits: bool = False) -> Any:
    """``dvc exp show --json`` run here (``source`` None), or read from a file ('-': stdin)."""
    if source is not None:
        try:
            return json.loads(sys.stdin.read() if source == "-" else Path(source).read_text())
        except OSError as exc:
            raise UserError(f"{source}: cannot read ({exc.strerror or exc})") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{source}: not JSON ({exc})") from None
    # Checked here rather than left to dvc: its message comes after a second of start-up.
    if dvc_root(Path.cwd()) is None:
        raise UserError(
            f"{Path.cwd()}: not inside a DVC repository (no .dvc/ here or above); "
            "run this from the project's directory, or pass --input FILE"
        )
    try:
        return run_exp_show(all_commits=all_commits)
    except UserError as exc:
        # dvc's stderr can run to many lines; its first says what went wrong.
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), str(exc))
        raise UserError(first) from None


def add_source_args(parser: argparse.ArgumentParser) -> None:
    """``--input`` and ``-A``: where the experiments come from (for :func:`load_exp_show`)."""
    parser.add_argument("--input", help="a saved `dvc exp show --json` file ('-' for stdin); default: run it here")
    parser.add_argument("-A", "--all-commits", action="store_true", help="experiments of all commits (dvc exp show -A)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alphagraph.experiments.seeds",
        description="Mean and std over seeds of the headline test metrics of dvc experiments.",
    )
    add_source_args(parser)
    parser.add_argument("--baselines", action="store_true", help="also count the commits' own runs")
    parser.add_argument("--by", choices=("params", "name"), default="params", help="how runs are grouped (default params)")
    parser.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                        help=f"more params to ignore when grouping (fnmatch; always: {', '.join(IGNORED)})")
    parser.add_argument("--metrics", default=",".join(HEADLINE), help="comma-separated test metrics")
    parser.add_argument("--models", help="comma-separated models (default: all found)")
    parser.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="paired difference A - B per run, over seeds (repeatable)")
    parser.add_argument("--out", help="also write the aggregates as JSON here")
    args = parser.parse_args(argv)

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    ignore = (*IGNORED, *args.ignore)
    experiments, skipped = parse_exp_show(load_exp_show(args.input, args.all_commits), baselines=args.baselines)
    if skipped:
        print(f"skipped (queued, running, failed or search trials): {', '.join(skipped)}", file=sys.stderr)
    if not experiments:
        where = args.input or ("any commit" if args.all_commits else "HEAD (-A: all commits)")
        raise UserError(
            f"no finished experiments in {where}: run a seed grid first, e.g. "
            "dvc exp run --queue -n NAME -S seed=0,1,2 && dvc queue start"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SeedWarning)
        rows = aggregate(experiments, metrics, models, args.by, ignore)
        found = {m for r in rows for m in r["metrics"]}
        for a, b in args.compare:
            if unknown := [m for m in (a, b) if m not in found]:
                raise UserError(f"--compare: no metrics for {', '.join(unknown)} (found: {', '.join(sorted(found))})")
        comparisons = [c for a, b in args.compare for c in paired(experiments, a, b, metrics, args.by, ignore)]
    # paired() regroups the same runs, so a warning can come twice.
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"warning: {message}", file=sys.stderr)
    sys.stdout.write(to_markdown(rows, comparisons, metrics))
    if args.out:
        write_json(_rounded({"groups": rows, "comparisons": comparisons}), args.out)


def _rounded(obj: Any) -> Any:
    """Floats to 6 decimals, as the metrics files have them (no float noise in the JSON)."""
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return round(obj, 6) if isinstance(obj, float) else obj


if __name__ == "__main__":
    run_main(main)
