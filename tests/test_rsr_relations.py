"""RSR's Wikidata relations (.npy) -> the file source's relations file -> wikidata graph edges."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from alphagraph.experiments.benchmark import PROTOCOL, comparison, protocol_params, uses_wikidata
from alphagraph.runtime.config import RELATION_NAMES, params_from_dict, relation_names
from alphagraph.data.ingest import ingest
from alphagraph.data.rsr_relations import convert, load_relation_array, main, relation_rows
from alphagraph.data.validate import DataError
from alphagraph.graph.build import TABLE_RELATIONS, build_edges
from tests.test_file_source import make_prices

TICKERS = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")
N_PATHS = 3
# (source, target, path type), as RSR's connections: directed, a pair may share several types.
LINKS = [
    (0, 1, 0), (1, 0, 0), (0, 1, 2),  # AAA-BBB: types 0 and 2, both directions
    (2, 3, 1),                        # CCC-DDD: one direction only
    (1, 4, 0), (4, 1, 1),             # BBB-EEE: a different type each way
    (4, 4, 2),                        # a path type on the diagonal: not a link
]                                     # FFF: no link
PAIRS_PATHS = {("AAA", "BBB"): 2.0, ("CCC", "DDD"): 1.0, ("BBB", "EEE"): 2.0}


def rsr_array(n: int = len(TICKERS), links: list[tuple[int, int, int]] = LINKS, n_paths: int = N_PATHS) -> np.ndarray:
    """Built as preprocess/wikidata.py builds it: one-hot path types, then the self channel."""
    a = np.zeros([n, n, n_paths + 1], dtype=int)
    for i, j, k in links:
        a[i][j][k] = 1
    for i in range(n):
        a[i][i][-1] = 1
    return a


def write_inputs(tmp_path: Path, array: np.ndarray | None = None, tickers: tuple[str, ...] = TICKERS) -> tuple[Path, Path]:
    npy, tic = tmp_path / "NASDAQ_wiki_relation.npy", tmp_path / "NASDAQ_tickers.csv"
    np.save(npy, rsr_array() if array is None else array)
    tic.write_text("\n".join(tickers) + "\n")
    return npy, tic


def both_directions(pairs: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {**pairs, **{(d, s): w for (s, d), w in pairs.items()}}


def as_dict(rows: pl.DataFrame) -> dict[tuple[str, str], float]:
    return {(s, d): w for s, d, w in rows.select("src", "dst", "weight").iter_rows()}


# ------------------------------------------------------------------- conversion


def test_converts_pairs_in_both_directions(tmp_path: Path) -> None:
    npy, tic = write_inputs(tmp_path)
    out = tmp_path / "out" / "relations.csv"
    rows = convert(npy, tic, out)
    back = pl.read_csv(out)
    assert back.columns == ["src", "dst", "relation", "weight"]
    assert back.height == rows.height == 2 * len(PAIRS_PATHS)
    assert set(back["relation"]) == {"wikidata"}
    assert as_dict(back) == both_directions(dict.fromkeys(PAIRS_PATHS, 1.0))  # default weight: 1
    assert (back["src"] != back["dst"]).all()  # no self links (self channel, diagonal path types)
    assert back.select("src", "dst").rows() == sorted(back.select("src", "dst").rows())


def test_paths_weight_counts_distinct_path_types_either_direction(tmp_path: Path) -> None:
    rows = relation_rows(rsr_array(), list(TICKERS), weight="paths")
    assert as_dict(rows) == both_directions(PAIRS_PATHS)


def test_parquet_output_and_relation_name(tmp_path: Path) -> None:
    npy, tic = write_inputs(tmp_path)
    convert(npy, tic, tmp_path / "rel.parquet", relation="competitor")
    assert set(pl.read_parquet(tmp_path / "rel.parquet")["relation"]) == {"competitor"}


def test_rows_are_read_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block smaller than the array gives the same rows (memory-mapped NYSE array)."""
    import alphagraph.data.rsr_relations as mod

    npy, _ = write_inputs(tmp_path)
    whole = relation_rows(load_relation_array(npy), list(TICKERS), weight="paths")
    monkeypatch.setattr(mod, "ROW_BLOCK", 4)
    assert relation_rows(load_relation_array(npy), list(TICKERS), weight="paths").equals(whole)


def test_header_line_and_blank_lines_of_the_tickers_file(tmp_path: Path) -> None:
    npy, tic = write_inputs(tmp_path)
    tic.write_text("ticker\n" + "\n".join(TICKERS[:3]) + "\n\n" + "\n".join(TICKERS[3:]) + "\n")
    assert as_dict(convert(npy, tic, tmp_path / "r.csv")) == both_directions(dict.fromkeys(PAIRS_PATHS, 1.0))


@pytest.mark.parametrize(
    ("array", "tickers", "match"),
    [
        (np.zeros((6, 6), dtype=int), TICKERS, "a 2-D array of shape \\(6, 6\\), expected RSR's"),
        (np.zeros((6, 5, 4), dtype=int), TICKERS, "not square"),
        (np.zeros((6, 6, 1), dtype=int), TICKERS, "no path-type channel"),
        (rsr_array(), TICKERS[:5], "the array has 6 tickers .* but the tickers file lists 5"),
        (rsr_array(links=[(0, 1, N_PATHS)]), TICKERS, "the last channel links ticker 0 to ticker 1"),
        (rsr_array(links=[]), TICKERS, "no two distinct tickers are linked"),
        (rsr_array(), ("AAA", "BBB", "AAA", "DDD", "EEE", "FFF"), "'AAA' listed more than once"),
        (np.full((6, 6, 4), np.nan), TICKERS, "NaN or infinite"),
        (np.full((6, 6, 4), "a"), TICKERS, "dtype <U1, expected 0/1 numbers"),
    ],
)
def test_bad_inputs_are_one_line_errors(tmp_path: Path, array: np.ndarray, tickers: tuple[str, ...], match: str) -> None:
    npy, tic = write_inputs(tmp_path, array, tickers)
    with pytest.raises(DataError, match=match) as info:
        convert(npy, tic, tmp_path / "r.csv")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r.csv").exists()


def test_missing_files_and_bad_names(tmp_path: Path) -> None:
    npy, tic = write_inputs(tmp_path)
    with pytest.raises(DataError, match="nope.npy: file not found \\(--npy\\)"):
        convert(tmp_path / "nope.npy", tic, tmp_path / "r.csv")
    with pytest.raises(DataError, match="nope.csv: file not found \\(--tickers\\)"):
        convert(npy, tmp_path / "nope.csv", tmp_path / "r.csv")
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(DataError, match="cannot read a NumPy .npy array"):
        convert(tmp_path / "text.npy", tic, tmp_path / "r.csv")
    with pytest.raises(DataError, match="unknown relation name 'wiki'"):
        convert(npy, tic, tmp_path / "r.csv", relation="wiki")
    with pytest.raises(DataError, match="expected .csv or .parquet"):
        convert(npy, tic, tmp_path / "r.txt")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npy, tic = write_inputs(tmp_path)
    out = tmp_path / "inputs" / "relations.csv"
    main(["--npy", str(npy), "--tickers", str(tic), "--out", str(out), "--weight", "paths"])
    assert "wrote 6 rows (3 linked pairs, 5 tickers with a link" in capsys.readouterr().out
    assert as_dict(pl.read_csv(out)) == both_directions(PAIRS_PATHS)


def test_cli_error_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    _, tic = write_inputs(tmp_path)
    cmd = [sys.executable, "-m", "alphagraph.data.rsr_relations", "--npy", str(tmp_path / "nope.npy"),
           "--tickers", str(tic), "--out", str(tmp_path / "r.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and "file not found (--npy)" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------- file source and graph


def test_relation_name_is_known_everywhere() -> None:
    assert "wikidata" in RELATION_NAMES and "wikidata" in relation_names()
    assert set(TABLE_RELATIONS) == set(RELATION_NAMES)
    params_from_dict({"graph": {"relations": ["rolling_correlation", "wikidata"]}})


def test_file_source_ingests_the_output_and_the_graph_builds_wikidata_edges(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    npy, tic = write_inputs(tmp_path)
    relations = tmp_path / "relations.csv"
    convert(npy, tic, relations, weight="paths")
    prices = tmp_path / "prices.csv"
    make_prices(TICKERS, n_days=6).write_csv(prices)
    params = params_from_dict({
        "data": {"source": "file", "path": str(prices), "tickers_path": str(tic), "relations_path": str(relations)},
        "graph": {"relations": ["wikidata"], "rebuild_every": 2},
    })
    raw = ingest(params)
    assert as_dict(raw.relations) == both_directions(PAIRS_PATHS)
    assert not raw.point_in_time_relations
    with caplog.at_level(logging.INFO, logger="alphagraph"):
        edges, metrics = build_edges(raw.prices, raw.universe, raw.relations, params.graph)
    assert set(edges["relation"]) == {"wikidata"}
    assert edges["snapshot"].n_unique() == metrics["snapshots"] == 3
    for _, snap in edges.group_by("snapshot"):
        assert {(s, d): pytest.approx(w) for s, d, w in snap.select("src", "dst", "weight").iter_rows()} == both_directions(PAIRS_PATHS)
    assert metrics["relations"]["wikidata"]["edges_total"] == 3 * 2 * len(PAIRS_PATHS)
    assert metrics["point_in_time"] == {"wikidata": False}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("Wikidata company links were collected once, after the sample" in m and "look-ahead" in m for m in warned)


# -------------------------------------------------------------------- benchmark


def test_benchmark_protocol_with_and_without_relations() -> None:
    plain = protocol_params("inputs/rsr_nasdaq/prices", None, None, True)
    assert "data.relations_path" not in plain and plain["graph.relations"] == PROTOCOL["graph.relations"]
    wiki = protocol_params("inputs/rsr_nasdaq/prices", None, None, True, "inputs/rsr_nasdaq/relations.csv")
    assert wiki["data.relations_path"] == "inputs/rsr_nasdaq/relations.csv"
    assert wiki["graph.relations"] == [*PROTOCOL["graph.relations"], "wikidata"]
    assert PROTOCOL["graph.relations"] == ["rolling_correlation", "sector_industry"]  # not mutated
    params_from_dict({"graph": {"relations": wiki["graph.relations"]}})


def test_benchmark_comparison_says_whether_wiki_relations_are_used(tmp_path: Path) -> None:
    assert "Wiki relations are not used" in comparison(tmp_path)
    assert not uses_wikidata(tmp_path)
    (tmp_path / "graph.json").write_text(json.dumps({"relations": {"rolling_correlation": {}, "wikidata": {}}}))
    assert uses_wikidata(tmp_path)
    text = comparison(tmp_path)
    assert "Wiki relations are used" in text and "not used" not in text and "look-ahead" in text
    assert "Wiki relations are not used" in comparison(tmp_path, wiki=False)
