"""The HTML report page (alphagraph.reporting.page, alphagraph.reporting.figures) on small made-up workspaces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from alphagraph.reporting import figures as F
from alphagraph.reporting.report import leaderboard
from alphagraph.reporting.page import fmt, ic_points, pct, render_report

ROOT = Path(__file__).resolve().parents[1]
HORIZONS = [1, 5]
DAYS = 80
RELATIONS = ("sector_industry", "supply_chain")
RUN = {"data source": "synthetic", "stocks": "12", "test window": "2020-01-02 to 2020-04-22", "folds": "2"}
NS = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}

# Figures each model's section shows with the full workspace (see make_workspace).
FULL_FIGURES = {"oracle": 3, "lgbm": 4, "core": 8, "transformer": 6}
OVERVIEW_FIGURES = 4


def _csv(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)


def detail_metrics(model: str, rank_ic: float, topk: bool = True) -> dict:
    """A detail JSON's ``test`` and ``psi`` dicts (what the page reads)."""
    test = {"n_dates": DAYS, "rank_ic_1d_vs_oracle": rank_ic / 0.07}
    for k, h in enumerate(HORIZONS):
        test |= {f"rank_ic_{h}d": rank_ic * (1 - 0.2 * k), f"rank_icir_{h}d": 0.1 + 0.05 * k, f"ic_{h}d": rank_ic,
                 f"icir_{h}d": 0.12, f"sharpe_{h}d": 1.5, f"sharpe_net_{h}d": -0.5, f"max_drawdown_{h}d": 0.2,
                 f"turnover_{h}d": 2.0}
        if topk:
            test |= {f"topk_excess_return_{h}d": 0.05, f"topk_information_ratio_{h}d": 0.4,
                     f"topk_max_drawdown_{h}d": -0.12, f"topk_turnover_{h}d": None}
    psi = {f"pred_{h}d": 0.001 * (k + 1) for k, h in enumerate(HORIZONS)}
    psi |= {f"psi_alert_{h}d": 0 for h in HORIZONS}
    return {"test": test, "psi": psi}


# Not a test: pytest would collect a function named test_* at module level.


def make_workspace(root: Path, models: tuple[str, ...] = ("oracle", "lgbm", "core", "transformer"),
                   topk: bool = True, wins: bool = True, oracle_available: bool = True) -> pl.DataFrame:
    """A tiny run under ``root`` (plots/, reports/models/) and its leaderboard frame."""
    rng = np.random.default_rng(7)
    dates = pl.date_range(pl.date(2020, 1, 2), pl.date(2020, 1, 2) + pl.duration(days=DAYS - 1), eager=True)
    metrics = {}
    for i, model in enumerate(models):
        plots = root / "plots" / model
        if model == "oracle" and not oracle_available:
            # A file source: the oracle stage writes header-only files and an unavailable metrics file.
            _csv(pl.DataFrame(schema={"date": pl.Date, "rank_ic_1d": pl.Float64}), plots / "rank_ic.csv")
            _csv(pl.DataFrame(schema={"date": pl.Date, "cum_return_1d": pl.Float64}), plots / "cum_return.csv")
            metrics[model] = {"available": False}
            continue
        mean = 0.07 if model == "oracle" else 0.01 * (i + 1)
        _csv(pl.DataFrame({"date": dates} | {f"rank_ic_{h}d": rng.normal(mean, 0.1, DAYS) for h in HORIZONS}),
             plots / "rank_ic.csv")
        _csv(pl.DataFrame({"date": dates} | {f"cum_return_{h}d": np.cumsum(rng.normal(1e-3, 0.01, DAYS))
                                             for h in HORIZONS}), plots / "cum_return.csv")
        if topk:
            cols = {"date": dates, "benchmark": rng.normal(3e-4, 0.01, DAYS)}
            for h in HORIZONS:
                ex = rng.normal(2e-4, 0.004, DAYS)
                cols |= {f"excess_{h}d": ex, f"cum_excess_{h}d": np.cumsum(ex), f"turnover_{h}d": np.full(DAYS, 0.1)}
            _csv(pl.DataFrame(cols), plots / "topk.csv")
        if model == "lgbm":
            _csv(pl.DataFrame({"feature": [f"f_{j}" for j in range(20)], "gain_share": np.linspace(0.1, 0.01, 20)}),
                 plots / "importance.csv")
        if model in ("core", "transformer"):
            for fold in (0, 1):
                epochs = np.arange(1, 5)
                _csv(pl.DataFrame({"fold": fold, "epoch": epochs, "val_rank_ic_1d": rng.normal(0.02, 0.01, 4),
                                   "val_rank_ic_5d": rng.normal(0.02, 0.01, 4), "best_epoch": [1, 2, 2, 2]}),
                     plots / "training" / f"fold{fold}.csv")
            _csv(pl.DataFrame({"feature": [f"f_{j}" for j in range(18)], "rank_ic": rng.normal(0.02, 0.01, 18),
                               "drop": np.linspace(0.003, -0.001, 18), "rank_shift": np.linspace(0.2, 0.0, 18)}),
                 plots / "importance.csv")
            lags = 5 if model == "core" else 10
            _csv(pl.DataFrame({"fold": np.repeat([0, 1], lags), "lag": np.tile(np.arange(lags), 2),
                               "attention": np.full(2 * lags, 1 / lags) + rng.normal(0, 0.01, 2 * lags)}),
                 plots / "attention_lag.csv")
        if model == "core":
            _csv(pl.DataFrame({"fold": np.repeat([0, 1], 2), "layer": 0, "relation": list(RELATIONS) * 2,
                               "weight": [0.6, 0.4, 0.45, 0.55], "attention": 0.9}), plots / "relations.csv")
            half = DAYS // 2
            _csv(pl.DataFrame({"fold": np.repeat([0, 1], half * 2), "date": np.repeat(dates.to_numpy(), 2),
                               "relation": list(RELATIONS) * DAYS, "weight": rng.uniform(0.3, 0.7, 2 * DAYS),
                               "attention": 0.9}), plots / "relation_attention.csv")
            links = [{"fold": 1, "date": str(dates[-1]), "code": f"S{c:02d}", "relation": rel,
                      "neighbour": f"S{(c + k + 1) % 12:02d}", "attention": float(rng.uniform(0.05, 0.6))}
                     for c in range(12) for rel in RELATIONS for k in range(3)]
            _csv(pl.DataFrame(links), plots / "stock_attention.csv")
        detail = detail_metrics(model, mean, topk)
        (root / "reports" / "models").mkdir(parents=True, exist_ok=True)
        (root / "reports" / "models" / f"{model}.json").write_text(json.dumps(detail))
        metrics[model] = detail
    if wins:
        present = [m for m in models if metrics[m].get("available") is not False]
        rows = [{"model": m, "sector": f"sector_{s}", "rank_ic": float(rng.normal(0.01, 0.02)), "t": 1.0,
                 "n_days": DAYS, "mean_stocks": 4.0} for m in present for s in range(3)]
        _csv(pl.DataFrame(rows), root / "plots" / "report" / "sector_rank_ic.csv")
        rows = [{"model": m, "regime": g, "rank_ic": float(rng.normal(0.01, 0.02)), "t": 1.5, "n_days": DAYS // 2,
                 "mean_stocks": 12.0} for m in present for g in ("calm", "turbulent")]
        _csv(pl.DataFrame(rows), root / "plots" / "report" / "regime_rank_ic.csv")
    board = leaderboard(metrics, HORIZONS)
    if topk and "topk_excess_return_1d" not in board.columns:  # a leaderboard from before the backtest
        board = board.with_columns(
            topk_excess_return_1d=pl.lit(0.05), topk_information_ratio_1d=pl.lit(0.4),
            topk_max_drawdown_1d=pl.lit(-0.12), topk_turnover_1d=pl.lit(None, dtype=pl.Float64))
    return board


def sections(page: str) -> dict[str, str]:
    """``{section id: its HTML}`` of the page's top-level sections."""
    parts = re.split(r'(?=<section id=")', page)
    return {re.match(r'<section id="([^"]+)"', p).group(1): p for p in parts if p.startswith("<section id=")}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, str]:
    root = tmp_path_factory.mktemp("run")
    board = make_workspace(root)
    return root, board, render_report(root, board, HORIZONS, RUN)


def test_every_model_has_a_section_with_its_figures(full: tuple[Path, pl.DataFrame, str]) -> None:
    _, board, page = full
    found = sections(page)
    for model in board["model"].to_list():
        section = found[f"model-{model}"]
        assert section.count("<figure") == FULL_FIGURES[model], model
        assert section.count("<figcaption") == FULL_FIGURES[model], model
    assert sections(page)["overview"].count("<figure") == OVERVIEW_FIGURES
    core = found["model-core"]
    for key in ("core-ic", "core-cum", "core-topk", "core-train", "core-imp", "core-relw", "core-relt", "core-lag"):
        assert f'id="fig-{key}"' in core
    assert 'class="links"' in core and "supply_chain" in core
    assert 'id="fig-transformer-lag"' in found["model-transformer"]
    assert 'id="fig-lgbm-imp"' in found["model-lgbm"] and "share of split gain" in found["model-lgbm"]
    assert "moves the model&#x27;s ranking" in found["model-core"] or "moves the model's ranking" in found["model-core"]


def test_page_header_leaderboard_and_wins(full: tuple[Path, pl.DataFrame, str]) -> None:
    _, board, page = full
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    for key, value in RUN.items():
        assert f"<dt>{key}</dt><dd>{value}</dd>" in page
    table = sections(page)["leaderboard"]
    assert table.count("<tr") == board.height + 2  # two header rows
    assert "Top-k, with cost" in table and "oracle (ceiling)" in table
    assert "—" in table  # topk_turnover_1d is null: an em dash, not "None" or "nan"
    assert "None" not in page and "nan" not in page.replace("nanosecond", "")
    wins = sections(page)["wins"]
    assert "sector_2" in wins and "turbulent" in wins and "sectors won" in wins
    assert 'href="#model-core"' in page


def test_oracle_is_dashed_grey_and_labelled(full: tuple[Path, pl.DataFrame, str]) -> None:
    _, _, page = full
    oracle = sections(page)["model-oracle"]
    assert "oracle (ceiling)" in oracle and 'class="swatch dashed"' in oracle
    assert F.model_colors(["oracle", "lgbm"])["oracle"] == F.ORACLE_COLOR
    # The overview's long-short figure draws the oracle's line grey and dashed.
    overview = sections(page)["overview"]
    cum = overview[overview.index('id="fig-ov-cum"'):overview.index("</figure>")]
    assert re.search(r'style="[^"]*stroke-dasharray[^"]*stroke: #8a8a8a', cum)


def test_file_source_has_no_oracle(tmp_path: Path) -> None:
    board = make_workspace(tmp_path, oracle_available=False)
    assert "oracle" not in board["model"].to_list()
    page = render_report(tmp_path, board, HORIZONS, RUN)
    assert "model-oracle" not in sections(page)
    assert "oracle (ceiling)" not in page and "of oracle" not in page
    assert sections(page)["model-lgbm"].count("<figure") == FULL_FIGURES["lgbm"]


def test_absent_optional_files_leave_their_figures_out(tmp_path: Path) -> None:
    board = make_workspace(tmp_path, topk=False, wins=False)
    for model in ("core", "transformer"):
        for name in ("attention_lag.csv", "relations.csv", "stock_attention.csv", "importance.csv"):
            (tmp_path / "plots" / model / name).unlink(missing_ok=True)
    (tmp_path / "plots" / "core" / "training" / "fold0.csv").write_text("")  # an empty file counts as absent
    (tmp_path / "plots" / "transformer" / "training" / "fold0.csv").unlink()
    (tmp_path / "plots" / "transformer" / "training" / "fold1.csv").unlink()
    (tmp_path / "plots" / "lgbm" / "rank_ic.csv").unlink()
    (tmp_path / "reports" / "models" / "lgbm.json").unlink()
    page = render_report(tmp_path, board, HORIZONS, RUN)
    found = sections(page)
    assert "wins" not in found and 'href="#wins"' not in page
    assert "Top-k" not in found["leaderboard"] and "ov-topk" not in page and "top-k" not in page.lower()
    assert found["model-lgbm"].count("<figure") == 2  # long-short and importance (no top-k, no daily IC)
    assert found["model-transformer"].count("<figure") == 2  # daily IC and long-short
    core = found["model-core"]
    assert core.count("<figure") == 4  # daily IC, long-short, training (fold 1), relation weight over time
    assert 'class="links"' not in core
    assert found["overview"].count("<figure") == 3  # long-short, IC decay, PSI


def test_model_without_any_file_and_escaping(tmp_path: Path) -> None:
    board = make_workspace(tmp_path, models=("lgbm",), topk=False, wins=False)
    odd = "x<script>&\"y"
    board = pl.concat([board, board.with_columns(model=pl.lit(odd))])
    page = render_report(tmp_path, board, HORIZONS, {"note": "<b>bold</b> & co"})
    assert "<script" not in page and "<b>bold</b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert "x&lt;script&gt;&amp;&quot;y" in page
    assert "No figures" in page


def test_no_external_url_and_unique_ids(full: tuple[Path, pl.DataFrame, str]) -> None:
    _, _, page = full
    urls = re.findall(r"(\S+)=\"(https?://[^\"]*)\"", page)
    assert urls and all(attr.startswith("xmlns") and url in NS for attr, url in urls)
    assert page.count("http") == len(urls)  # no URL anywhere else (metadata, comments, CSS, links)
    assert "<script" not in page and "<img" not in page and "<?xml" not in page and "<!--" not in page
    ids = Counter(re.findall(r'\sid="([^"]+)"', page))
    assert not [i for i, n in ids.items() if n > 1]
    # Every reference inside an svg points at an id on the page.
    refs = set(re.findall(r'(?:url\(#|href="#)([^)"]+)', page))
    assert refs <= set(ids)


def test_render_is_deterministic(full: tuple[Path, pl.DataFrame, str]) -> None:
    root, board, page = full
    assert render_report(root, board, HORIZONS, RUN) == page
    # In a fresh interpreter with another hash seed: the bytes DVC hashes must not depend on the process.
    board.write_parquet(root / "board.parquet")
    code = (
        "import sys, polars as pl; from pathlib import Path; from alphagraph.reporting.page import render_report;"
        "root = Path(sys.argv[1]);"
        f"sys.stdout.write(render_report(root, pl.read_parquet(root / 'board.parquet'), {HORIZONS!r}, {RUN!r}))"
    )
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, env=env, check=True,
                         cwd=ROOT)
    assert out.stdout == page


def test_ic_points_standard_error() -> None:
    details = {"m": {"test": {"n_dates": 100, "rank_ic_1d": 0.02, "rank_icir_1d": 0.1, "rank_ic_5d": 0.03}},
               "empty": {}}
    points = ic_points(details, [1, 5, 10])
    assert points.height == 2
    row = points.filter(pl.col("horizon") == 1).row(0, named=True)
    assert row["se"] == pytest.approx((0.02 / 0.1) / 10)
    assert points.filter(pl.col("horizon") == 5)["se"][0] is None  # no ICIR: no error bar


def test_formatting() -> None:
    assert fmt(None) == fmt(float("nan")) == fmt("x") == fmt(True) == "—"
    assert fmt(-0.00001, 4) == "0.0000" and fmt(-0.5, 2) == "−0.50" and fmt(3, 1) == "3.0"
    assert pct(0.1234) == "12.3%" and pct(None) == "—" and pct(-0.05, 0) == "−5%"


def test_svg_is_cleaned_and_small() -> None:
    dates = pl.date_range(pl.date(2020, 1, 1), pl.date(2022, 12, 31), eager=True)
    frame = pl.DataFrame({"date": dates, "rank_ic_1d": np.random.default_rng(0).normal(0.01, 0.1, len(dates))})
    svg = F.daily_rank_ic(frame, "rank_ic_1d", "#4878d0", "k1")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<metadata" not in svg and "matplotlib.org" not in svg and ' width="' not in svg.split(">")[0]
    assert 'aria-labelledby="k1-cap"' in svg
    assert not re.search(r"\d\.\d{2,}", " ".join(re.findall(r'\sd="([^"]*)"', svg)))  # paths rounded to 0.1
    assert len(svg) < 60_000  # ~1,100 daily points and a rolling mean
