"""A compact view of dvc experiments: the params that changed and the headline test metrics.

``dvc exp show`` prints every param, metric and dep of the project (hundreds of
columns: in a terminal each is squeezed to an ellipsis). Its own filters help::

    dvc exp show --only-changed --hide-workspace --drop 'Created|State|Executor|metrics/.*:(?!test\\.rank_ic_1d$)'

but each metric column is headed ``metrics/<model>.json:test.<metric>``,
``--only-changed`` hides the models a change left alone (the reference to judge
the others by), and none of these options can be set in ``.dvc/config``. This
prints, per metric, one row per experiment (each baseline commit first, as the
reference) with the params that differ between the rows and one column per model::

    python -m alphagraph.experiments.exps                       # experiments of HEAD
    python -m alphagraph.experiments.exps -A --md               # all commits, as Markdown
    python -m alphagraph.experiments.exps --metrics rank_ic_1d,sharpe_net_1d --models core,lgbm
    python -m alphagraph.experiments.exps --input saved.json    # a saved `dvc exp show --json`

Parsing is :func:`alphagraph.experiments.seeds.parse_exp_show`'s (test metrics of
``metrics/<model>.json``, params flattened to dotted keys).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alphagraph.runtime.errors import UserError, run_main
from alphagraph.reporting.report import DASH, MODELS, _fmt, _pct, markdown_table
from alphagraph.experiments.seeds import add_source_args, load_exp_show, parse_exp_show

# What a user compares first: RankIC at both horizons, Sharpe gross and net of costs, the top-k
# backtest's excess return (test windows pooled; every key of a model's `test` dict is allowed).
HEADLINE = ("rank_ic_1d", "rank_ic_5d", "sharpe_1d", "sharpe_net_1d", "topk_excess_return_1d")
RUN_ONE = "run one first, e.g. dvc exp run -S train.lr=5e-4"


@dataclass(frozen=True)
class Row:
    """One experiment (or the baseline commit it was run from) as shown."""

    name: str
    rev: str  # short sha
    baseline: bool
    params: dict[str, Any]  # every param, flattened (dotted keys)
    metrics: dict[str, dict[str, Any]]  # model -> test metric -> value


def experiment_rows(doc: Any) -> tuple[list[Row], list[str]]:
    """``(rows, skipped)``: each commit that has finished experiments, then those experiments.

    A commit without experiments is left out (with ``-A`` most are), and so is the
    workspace. ``skipped`` names queued, running and failed experiments.
    """
    records, skipped = parse_exp_show(doc, baselines=True)
    with_exps = {r["baseline"] for r in records if r["rev"] != r["baseline"]}
    rows = [
        Row(
            name=r["name"],
            rev=str(r["rev"])[:7],
            baseline=r["rev"] == r["baseline"],
            params=r["params"],
            metrics=r["metrics"],
        )
        for r in records
        if r["baseline"] in with_exps
    ]
    return rows, skipped


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def changed_params(rows: Sequence[Row], patterns: Sequence[str] = ("*",)) -> list[str]:
    """Params whose value is not the same in every row (absent counts as a value), in first-seen order."""
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    # "" is no JSON text: an absent param differs from every value, null included.
    changed = [k for k in keys if len({_canon(r.params[k]) if k in r.params else "" for r in rows}) > 1]
    return [k for k in changed if any(fnmatch.fnmatchcase(k, p) for p in patterns)]


def models_found(rows: Sequence[Row]) -> list[str]:
    """Models with test metrics in any row: the leaderboard's order, then the others by name."""
    found = {m for r in rows for m in r.metrics}
    return [m for m in MODELS if m in found] + sorted(found - set(MODELS))


# --------------------------------------------------------------------- output


def _param_cell(row: Row, key: str) -> str:
    if key not in row.params:
        return DASH
    value = row.params[key]
    return value if isinstance(value, str) else _canon(value)


def metric_cell(metric: str, value: Any) -> str:
    """RankIC/IC to 4 decimals (they live in the third); returns, drawdowns, turnover in %; the rest to 2."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return DASH
    if metric.startswith(("rank_ic_", "ic_")) and "icir" not in metric and "vs_oracle" not in metric:
        return _fmt(value, 4)
    if metric.startswith(("topk_excess_return", "max_drawdown", "turnover")):
        return _pct(value)
    return _fmt(value, 2)


def metric_table(rows: Sequence[Row], metric: str, models: Sequence[str], params: Sequence[str]) -> list[list[str]]:
    """Header then one line per row: experiment, rev, the changed params, the metric per model."""
    header = ["experiment", "rev", *params, *models]
    body = [
        [
            f"{r.name} (baseline)" if r.baseline else r.name,
            r.rev,
            *(_param_cell(r, k) for k in params),
            *(metric_cell(metric, r.metrics.get(m, {}).get(metric)) for m in models),
        ]
        for r in rows
    ]
    return [header, *body]


def _aligned(table: list[list[str]], n_left: int) -> list[str]:
    """Plain-text columns: the first ``n_left`` left-aligned (names, params), the numbers right-aligned."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    out = []
    for line in table:
        cells = [c.ljust(w) if i < n_left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def render(
    rows: Sequence[Row], metrics: Sequence[str], models: Sequence[str], params: Sequence[str], markdown: bool = False
) -> str:
    """One table per metric (test windows pooled); Markdown with ``markdown``."""
    n_left = 2 + len(params)
    parts = []
    for metric in metrics:
        table = metric_table(rows, metric, models, params)
        if markdown:
            align = ["---"] * n_left + ["---:"] * len(models)
            parts.append("\n".join([f"### test {metric}", "", *markdown_table(table[0], align, table[1:])]))
        else:
            parts.append("\n".join([f"test {metric}", *_aligned(table, n_left)]))
    if not params:
        parts.append("(no param differs between these runs)")
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------ CLI


def _names(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _check_known(kind: str, asked: Sequence[str], known: Sequence[str]) -> None:
    if unknown := [a for a in asked if a not in known]:
        raise UserError(f"--{kind}: no test metrics for {', '.join(unknown)} (found: {', '.join(known)})")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m alphagraph.experiments.exps",
        description="dvc experiments in a few columns: the params that changed and each model's headline test metrics.",
    )
    add_source_args(parser)
    parser.add_argument("--metrics", default=",".join(HEADLINE), help=f"comma-separated test metrics (default: {','.join(HEADLINE)})")
    parser.add_argument("--models", help="comma-separated models (default: every model found)")
    parser.add_argument("--params", default="*", help="comma-separated fnmatch patterns of the changed params to show (default: all)")
    parser.add_argument("--md", action="store_true", help="Markdown tables")
    args = parser.parse_args(argv)

    rows, skipped = experiment_rows(load_exp_show(args.input, args.all_commits))
    if skipped:
        print(f"skipped (queued, running, failed or search trials): {', '.join(skipped)}", file=sys.stderr)
    if not any(not r.baseline for r in rows):
        where = args.input or ("any commit" if args.all_commits else "HEAD (-A: all commits)")
        raise UserError(f"no finished experiments in {where}: {RUN_ONE}")
    models = models_found(rows)
    if asked := _names(args.models):
        _check_known("models", asked, models)
        models = asked
    metrics = _names(args.metrics) or list(HEADLINE)
    known = list(dict.fromkeys(k for r in rows for m in models for k in r.metrics.get(m, {})))
    _check_known("metrics", metrics, known)
    params = changed_params(rows, _names(args.params) or ["*"])
    sys.stdout.write(render(rows, metrics, models, params, markdown=args.md))


if __name__ == "__main__":
    run_main(main)
