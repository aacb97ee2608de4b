"""Artifact locations of the DAG (the same paths dvc.yaml declares)."""

from pathlib import Path

RAW = Path("data/raw")
PRICES = RAW / "prices.parquet"
UNIVERSE = RAW / "universe.parquet"
RELATIONS = RAW / "relations.parquet"
RELATIONS_TRUE = RAW / "relations_true.parquet"  # synthetic market only: the links behind the planted signal
ORACLE = RAW / "oracle.parquet"
BENCHMARK = RAW / "benchmark.parquet"  # the top-k backtest's benchmark: date, return
FEATURES_PANEL = Path("data/features/panel.parquet")
NORMALIZED_PANEL = Path("data/normalized/panel.parquet")
FOLDS = Path("data/splits/folds.json")
EDGES = Path("data/graph/edges.parquet")
METRICS = Path("metrics")
DETAIL = Path("reports/models")  # every figure of a model stage (per fold, val, train); not a DVC metric
PREDICTIONS = Path("data/predictions")
ENSEMBLE = Path("data/ensemble")  # the ensemble stage's predictions and weights (not in PREDICTIONS: it reads that folder)
MODELS = Path("models")
PLOTS = Path("plots")
EXPORT = Path("data/export")
