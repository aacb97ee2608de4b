"""The RSR benchmark per market (NASDAQ, NYSE): protocol, paths, the --market flag, the report."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alphagraph.experiments import benchmark
from alphagraph.experiments.benchmark import (
    MARKETS,
    PROTOCOL,
    comparison,
    main,
    market_by_name,
    protocol_params,
    zoo_models,
)
from alphagraph.runtime.config import ZooConfig, params_from_dict
from alphagraph.runtime.errors import UserError

NASDAQ, NYSE = MARKETS["NASDAQ"], MARKETS["NYSE"]
METRICS = {"ic_1d": 0.0321, "rank_ic_1d": 0.0345, "icir_1d": 0.456, "sharpe_1d": 3.21, "sharpe_net_1d": -1.23}


def fake_metrics(folder: Path, models: dict[str, dict[str, float]]) -> Path:
    """``metrics/<model>.json`` with a ``test`` section, as the model stages write them."""
    folder.mkdir(parents=True, exist_ok=True)
    for model, test in models.items():
        (folder / f"{model}.json").write_text(json.dumps({"test": test, "val": {"ic_1d": 9.9}}))
    return folder


# ------------------------------------------------------------------ the market table


def test_the_markets_differ_only_in_their_names_sizes_and_figures() -> None:
    assert list(MARKETS) == ["NASDAQ", "NYSE"] and all(m.name == key for key, m in MARKETS.items())
    assert (NASDAQ.stocks, NYSE.stocks) == (1026, 1737)
    for m, slug in ((NASDAQ, "nasdaq"), (NYSE, "nyse")):
        assert m.inputs == Path(f"inputs/rsr_{slug}")
        assert m.experiment == f"rsr-{slug}"
        assert m.report == Path(f"reports/rsr_{slug}.md")
        assert m.code_pattern == f"{m.name}_(.+)_30Y"
        assert m.tickers_file == f"{m.name}_tickers_qualify_dr-0.98_min-5_smooth.csv"
        assert m.industry_file == f"{m.name}_industry_ticker.json"
        assert m.wiki_file == f"{m.name}_wiki_relation.npy"
    with pytest.raises(dataclasses.FrozenInstanceError):
        NYSE.stocks = 1  # type: ignore[misc]


def test_the_nasdaq_figures_are_kept_and_nyse_has_its_own() -> None:
    assert benchmark.PUBLISHED is NASDAQ.published
    assert NASDAQ.published["StockMixer"] == (0.043, 0.501, 0.545, 1.465)
    assert NASDAQ.published["LSTM"] == (0.032, 0.354, 0.514, 0.892)
    assert list(NYSE.published) == list(NASDAQ.published)  # the same eight models of Table 2
    assert NYSE.published["StockMixer"] == (0.029, 0.351, 0.539, 1.454)
    assert NYSE.published["STHAN-SR"] == (0.029, 0.344, 0.542, 1.228)
    for m in MARKETS.values():
        assert "Table 2" in m.source and m.name in m.source
        for ic, ric, prec, sr in m.published.values():
            assert 0 < ic < 0.05 and 0 < ric < 0.6 and 0.5 < prec < 0.56 and 0 < sr < 2


@pytest.mark.parametrize("name", ["NASDAQ", "nasdaq", "Nyse", " nyse "])
def test_the_market_name_is_case_insensitive(name: str) -> None:
    assert market_by_name(name) is MARKETS[name.strip().upper()]


def test_an_unknown_market_names_the_flag_and_the_allowed_values() -> None:
    with pytest.raises(UserError, match=r"^--market: unknown market 'LSE'; allowed: NASDAQ, NYSE"):
        market_by_name("LSE")


def test_the_protocol_differs_between_markets_only_in_the_price_files_pattern() -> None:
    args = ("inputs/x/prices", "inputs/x/tickers.csv", "inputs/x/universe.csv")
    for raw_dir in (False, True):
        for relations in (None, "inputs/x/relations.csv"):
            a = protocol_params(*args, raw_dir, relations, market=NASDAQ)
            b = protocol_params(*args, raw_dir, relations, market=NYSE)
            assert a == protocol_params(*args, raw_dir, relations)  # NASDAQ is the default
            differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
            assert differ == ({"data.code_pattern"} if raw_dir else set())
            assert {k: v for k, v in b.items() if k in PROTOCOL and k != "graph.relations"} == {
                k: v for k, v in PROTOCOL.items() if k != "graph.relations"
            }
    assert protocol_params(*args, True, market=NYSE)["data.code_pattern"] == "NYSE_(.+)_30Y"
    assert protocol_params(*args, True)["data.code_pattern"] == "NASDAQ_(.+)_30Y"
    params_from_dict({"data": {"code_pattern": NYSE.code_pattern}})


# ------------------------------------------------------------------------ the CLI


def test_a_bad_market_is_one_line_and_exit_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "alphagraph.experiments.benchmark", "--market", "LSE", "--prices", "nope"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: --market: unknown market 'LSE'; allowed: NASDAQ, NYSE (any case)"
    ]
    assert not (tmp_path / "inputs").exists() and not (tmp_path / "reports").exists()  # checked before anything


def test_prices_are_required_unless_report_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--prices: required"):
        main(["--market", "nyse"])


def run_main_without_dvc(monkeypatch: pytest.MonkeyPatch, argv: list[str], ignored: bool = False) -> list[list[str]]:
    """``main(argv)`` with ``dvc exp run`` and ``git check-ignore`` faked; the commands it ran."""
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append(list(cmd))
        code = (0 if ignored else 1) if cmd[:2] == ["git", "check-ignore"] else 0
        return subprocess.CompletedProcess(cmd, code)

    monkeypatch.setattr(benchmark.subprocess, "run", fake_run)
    main(argv)
    return calls


@pytest.mark.parametrize("flag", ["NYSE", "nyse"])
def test_the_nyse_run_uses_its_own_inputs_experiment_pattern_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    src = tmp_path / "src"
    (src / "google_finance").mkdir(parents=True)
    (src / "google_finance" / "NYSE_AAA_30Y.csv").write_text("2013-01-02,1,1,1,1,1\n")
    (src / NYSE.tickers_file).write_text("AAA\n")
    (src / "universe.csv").write_text("code,sector,industry\nAAA,x,x\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    fake_metrics(work / "metrics", {"lgbm": METRICS})
    calls = run_main_without_dvc(monkeypatch, [
        "--market", flag, "--prices", str(src / "google_finance"), "--tickers", str(src / NYSE.tickers_file),
        "--universe", str(src / "universe.csv"),
    ])
    (dvc,) = [c for c in calls if c[0] == "dvc"]
    assert dvc[:5] == ["dvc", "exp", "run", "-n", "rsr-nyse"]
    assert dvc[5::2] == ["-S"] * len(dvc[6::2])
    sets = dict(a.split("=", 1) for a in dvc[6::2])
    assert sets["data.path"] == "inputs/rsr_nyse/prices"
    assert sets["data.tickers_path"] == "inputs/rsr_nyse/tickers.csv"
    assert sets["data.universe_path"] == "inputs/rsr_nyse/universe.csv"
    assert sets["data.code_pattern"] == "NYSE_(.+)_30Y"
    assert (work / "inputs/rsr_nyse/prices/NYSE_AAA_30Y.csv").exists()
    assert (work / "inputs/rsr_nyse/.gitignore").read_text() == "*\n"  # not ignored by the repository: kept off git
    assert not (work / "inputs/rsr_nasdaq").exists()
    report = (work / "reports/rsr_nyse.md").read_text()
    assert not (work / "reports/rsr_nasdaq.md").exists()
    assert report.startswith("# RSR NYSE benchmark") and "alphagraph lgbm | 0.0321" in report
    assert report in capsys.readouterr().out


def test_the_default_market_is_nasdaq_and_name_overrides_the_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.csv"
    prices.write_text("date,code,open,high,low,close,volume\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    calls = run_main_without_dvc(monkeypatch, ["--prices", str(prices)], ignored=True)
    (dvc,) = [c for c in calls if c[0] == "dvc"]
    assert dvc[3:5] == ["-n", "rsr-nasdaq"] and "data.path=inputs/rsr_nasdaq/prices.csv" in dvc
    assert not any(a.startswith("data.code_pattern=") for a in dvc)  # a long file: no pattern
    assert not (work / "inputs/rsr_nasdaq/.gitignore").exists()  # already ignored by the repository
    assert (work / "reports/rsr_nasdaq.md").read_text().startswith("# RSR NASDAQ benchmark")
    calls = run_main_without_dvc(monkeypatch, ["--prices", str(prices), "--name", "mine"], ignored=True)
    assert [c for c in calls if c[0] == "dvc"][0][3:5] == ["-n", "mine"]


def test_report_only_writes_each_markets_own_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fake_metrics(tmp_path / "metrics", {"gat": METRICS})
    main(["--market", "NYSE", "--report-only"])
    main(["--report-only"])
    nyse, nasdaq = (tmp_path / "reports/rsr_nyse.md").read_text(), (tmp_path / "reports/rsr_nasdaq.md").read_text()
    assert "1,737 NYSE stocks" in nyse and "1,026 NASDAQ stocks" in nasdaq
    assert "alphagraph gat" in nyse and "alphagraph gat" in nasdaq
    assert not (tmp_path / "inputs").exists()


# --------------------------------------------------------------------- the report


@pytest.mark.parametrize("name", list(MARKETS))
def test_the_comparison_shows_our_models_and_the_markets_published_figures(tmp_path: Path, name: str) -> None:
    m = MARKETS[name]
    metrics = fake_metrics(tmp_path, {"lgbm": METRICS, "core": {"ic_1d": 0.01}})
    text = comparison(metrics, wiki=False, market=m, models=("lgbm", "gat", "core"))
    lines = text.splitlines()
    assert lines[0] == f"# RSR {name} benchmark"
    assert f"{m.stocks:,} {name} stocks" in text
    assert "| alphagraph lgbm | 0.0321 | 0.0345 | 0.4560 | 3.21 | -1.23 |  |  |" in lines
    assert "| alphagraph core | 0.0100 | — | — | — | — |  |  |" in lines
    assert "alphagraph gat" not in text  # no metrics file: left out
    for model, (ic, ric, _, sr) in m.published.items():
        assert f"| {model} (published) | {ic:.3f} |  |  |  |  | {ric:.3f} | {sr:.3f} |" in lines
    assert f"Published figures: StockMixer (Fan & Shen, AAAI 2024), Table 2, {name} column." in text
    assert "not bundled" not in text
    other = next(o for o in MARKETS.values() if o is not m)
    assert f"{other.published['StockMixer'][1]:.3f}" not in text  # not the other market's figures


def test_the_nyse_report_shows_the_bundled_figures(tmp_path: Path) -> None:
    text = comparison(fake_metrics(tmp_path, {}), wiki=False, market=NYSE, models=())
    assert "| StockMixer (published) | 0.029 |  |  |  |  | 0.351 | 1.454 |" in text
    assert "| ESTIMATE (published) | 0.030 |  |  |  |  | 0.327 | 1.115 |" in text
    assert "| RSR-I (published) | 0.026 |  |  |  |  | 0.284 | 0.098 |" in text
    assert "0.098, is as printed" in text


def test_a_market_without_bundled_figures_says_so(tmp_path: Path) -> None:
    bare = dataclasses.replace(NYSE, published={}, source="", note="")
    text = comparison(fake_metrics(tmp_path, {"lgbm": METRICS}), wiki=False, market=bare, models=("lgbm",))
    assert "Published figures not bundled for NYSE" in text
    assert "(published)" not in text and "alphagraph lgbm" in text


def test_the_report_shows_every_zoo_model_with_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert zoo_models() == tuple(ZooConfig().models)  # no params.yaml: the default zoo
    repo_params = Path(__file__).resolve().parents[1] / "params.yaml"
    assert set(zoo_models(repo_params)) >= {"lgbm", "lgbm_graph", "gat", "core", "transformer", "linear"}
    raw = yaml.safe_load(repo_params.read_text())
    raw["zoo"]["models"] = {"lgbm": "lgbm", "gat": "gat", "core": "core", "lgbm_graph": "lgbm", "tgcn": "tgcn"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert zoo_models() == ("lgbm", "gat", "core", "lgbm_graph", "tgcn")
    fake_metrics(tmp_path / "metrics", {m: METRICS for m in ("tgcn", "lgbm", "linear")})
    text = comparison(tmp_path / "metrics", wiki=False, market=NYSE)
    ours = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| alphagraph ")]
    assert ours == ["| alphagraph lgbm", "| alphagraph tgcn"]  # the zoo's order; linear is not in this zoo
