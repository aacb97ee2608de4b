"""The data stages in bounded memory: streamed outputs equal the in-memory ones, bit for bit,
whatever the block size; a failure leaves nothing behind; peak memory follows the block size."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from alphagraph.runtime.config import FeaturesConfig, NormalizeConfig
from alphagraph.features.panel import build_panel
from alphagraph.features.stream import build_panel_file
from alphagraph.features.normalize import normalize_file, normalize_panel
from tests.leakage import toy_prices

CFG = FeaturesConfig(windows=[5, 10, 20], horizons=[1, 5])
NORM = NormalizeConfig(min_stocks=3)


@pytest.fixture(scope="module")
def prices_universe():
    prices, universe = toy_prices(n_stocks=14, n_days=160, seed=5)
    # an unsorted input: the streamed stage must still sort by (date, code)
    return prices.sample(fraction=1.0, shuffle=True, seed=1), universe


@pytest.fixture(scope="module")
def in_memory(prices_universe):
    prices, universe = prices_universe
    return build_panel(prices, universe, CFG)


@pytest.mark.parametrize("block_rows", [None, 300, 97])
def test_streamed_features_equal_in_memory(tmp_path, prices_universe, in_memory, block_rows):
    prices, universe = prices_universe
    panel, metrics = in_memory
    got = build_panel_file(prices, universe, CFG, tmp_path / "panel.parquet", block_rows=block_rows)
    out = pl.read_parquet(tmp_path / "panel.parquet")
    assert out.equals(panel) and out.schema == panel.schema
    assert got == metrics
    assert [p.name for p in tmp_path.iterdir()] == ["panel.parquet"]  # no temporary files left


@pytest.mark.parametrize("label", ["rankgauss", "zscore"])
@pytest.mark.parametrize("block_rows", [None, 250, 60])
def test_streamed_normalize_equals_in_memory(tmp_path, in_memory, label, block_rows):
    panel, _ = in_memory
    cfg = NormalizeConfig(min_stocks=10, label=label)
    # a thin date is dropped by both
    thin = panel["date"].unique().sort()[7]
    panel = panel.filter((pl.col("date") != thin) | (pl.col("code") < "C03"))
    panel.write_parquet(tmp_path / "features.parquet", row_group_size=500)
    expect, stats = normalize_panel(panel, cfg, [1, 5])
    assert stats["dates_dropped_min_stocks"] == 1
    got = normalize_file(tmp_path / "features.parquet", tmp_path / "norm.parquet", cfg, [1, 5], block_rows=block_rows)
    out = pl.read_parquet(tmp_path / "norm.parquet")
    assert out.equals(expect) and out.schema == expect.schema
    assert got == stats
    # blocks in memory too
    assert normalize_panel(panel, cfg, [1, 5], block_rows=block_rows)[0].equals(expect)


def _old_normalize(panel: pl.DataFrame, cfg: NormalizeConfig, horizons: list[int]) -> pl.DataFrame:
    """The previous implementation (polars ``.over("date")`` expressions), kept as the reference."""
    from alphagraph.features.normalize import MAD_TO_STD, _label, _rank_gauss_labels

    feats = [c for c in panel.columns if c.startswith("f_")]
    counts = panel.group_by("date").len()
    small = counts.filter(pl.col("len") < cfg.min_stocks)
    lf = panel.lazy().join(small.lazy().select("date"), on="date", how="anti")
    lf = lf.with_columns([pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in feats])
    lf = lf.with_columns(
        (pl.sum_horizontal([pl.col(c).is_null() for c in feats]) / max(len(feats), 1))
        .cast(pl.Float32)
        .alias("missing_share")
    )
    lf = lf.with_columns([(pl.col(c) - pl.col(c).median().over("date")).alias(c) for c in feats])

    def scaled(c):
        x = pl.col(c)
        mad = x.abs().median().over("date") * MAD_TO_STD
        std = x.std().over("date")
        scale = pl.when(mad > 1e-12).then(mad).when(std > 1e-12).then(std).otherwise(None)
        return (x / scale).clip(-cfg.clip, cfg.clip).fill_null(0.0).fill_nan(0.0).cast(pl.Float32).alias(c)

    lf = lf.with_columns([scaled(c) for c in feats]).with_columns([_label(h, cfg.label, cfg.clip) for h in horizons])
    out = lf.sort(["date", "code"]).collect()
    return _rank_gauss_labels(out, horizons) if cfg.label == "rankgauss" else out


@pytest.mark.parametrize("dtype", [pl.Float32, pl.Float64])
def test_normalize_bit_identical_to_the_polars_expressions(in_memory, dtype):
    panel, _ = in_memory
    f = [c for c in panel.columns if c.startswith("f_")]
    panel = panel.with_columns(pl.col(f).cast(dtype))
    # ties and a constant column exercise the even-count median and the std fallback
    panel = panel.with_columns(pl.col(f[0]).round(2), pl.lit(1.5).cast(dtype).alias(f[1]))
    panel = panel.with_columns(pl.when(pl.col("code") == "C01").then(2.5).otherwise(pl.col(f[1])).alias(f[1]))
    new, _ = normalize_panel(panel, NORM, [1, 5])
    assert new.equals(_old_normalize(panel, NORM, [1, 5]))


def test_failure_leaves_nothing_half_written(tmp_path, in_memory, monkeypatch):
    panel, _ = in_memory
    panel.write_parquet(tmp_path / "features.parquet")
    import alphagraph.features.normalize as norm

    calls = {"n": 0}
    real = norm._normalize_block

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(norm, "_normalize_block", failing)
    with pytest.raises(RuntimeError, match="boom"):
        normalize_file(tmp_path / "features.parquet", tmp_path / "norm.parquet", NORM, [1, 5], block_rows=200)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.parquet"]


# ------------------------------------------------------------------ memory

_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from alphagraph.runtime.config import FeaturesConfig, NormalizeConfig
    from alphagraph.features.stream import build_panel_file
    from alphagraph.features.normalize import normalize_file
    from tests.leakage import toy_prices

    def status(key):  # kB; VmHWM is this process's own peak (ru_maxrss also counts the parent's at fork)
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key + ":"))
        return int(line.split()[1])

    stage, block_rows, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cfg = FeaturesConfig(windows=[5, 10, 20, 30, 60], horizons=[1, 5])
    if stage == "features":
        prices, universe = toy_prices(n_stocks=120, n_days=600, seed=2)
    base = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
    if stage == "features":
        build_panel_file(prices, universe, cfg, workdir + "/features.parquet", block_rows=block_rows, n_threads=1)
    else:
        normalize_file(workdir + "/features.parquet", workdir + "/norm.parquet", NormalizeConfig(min_stocks=3), [1, 5],
                       block_rows=block_rows)
    print(json.dumps({"base_kb": base, "peak_kb": status("VmHWM")}))
    """
)


def _peak_growth_mb(stage: str, block_rows: int, workdir: Path) -> float:
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, stage, str(block_rows), str(workdir)],
        capture_output=True, text=True, cwd=root, check=True,
        env={**__import__("os").environ, "POLARS_MAX_THREADS": "1", "ALPHAGRAPH_THREADS": "1"},
    )
    got = json.loads(res.stdout.strip().splitlines()[-1])
    return (got["peak_kb"] - got["base_kb"]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_memory_follows_the_block_not_the_panel(tmp_path):
    """120 stocks x 600 days x 199 columns: ~55 MB of float32 features.

    Whole-panel processing (one block) needs several copies of that; small blocks must
    stay well under it. Peak RSS growth of a child process over its state before the
    stage (interpreter, imports and the prices), compared between a tiny and a whole-panel
    block size: a ratio of memory, not of time, so a busy machine does not move it.
    """
    whole = _peak_growth_mb("features", 10**9, tmp_path)
    small = _peak_growth_mb("features", 3_000, tmp_path)
    assert whole > 100, whole  # the whole panel's feature columns, and more
    assert small < 0.5 * whole, (small, whole)
    whole_n = _peak_growth_mb("normalize", 10**9, tmp_path)
    small_n = _peak_growth_mb("normalize", 3_000, tmp_path)
    assert small_n < 0.5 * whole_n, (small_n, whole_n)
    out = pl.scan_parquet(tmp_path / "norm.parquet").select(pl.len()).collect().item()
    assert out > 40_000
    assert np.isfinite(whole)


def test_features_failure_leaves_nothing_behind(tmp_path, prices_universe, monkeypatch):
    """An error in a later block of stocks: no output, no temporary block files."""
    import alphagraph.features.stream as stream

    prices, universe = prices_universe
    calls = {"n": 0}
    real = stream._compute

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "_compute", failing)
    with pytest.raises(RuntimeError, match="boom"):
        build_panel_file(prices, universe, CFG, tmp_path / "out" / "panel.parquet", block_rows=200)
    assert calls["n"] == 3
    assert list((tmp_path / "out").iterdir()) == []
