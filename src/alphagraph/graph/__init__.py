"""Graph snapshots (build) and fast per-day graph access for models (loader).

``GraphIndex`` is imported lazily, so the graph stage (build only) does not
pay for importing torch and torch-geometric.
"""

from __future__ import annotations

from typing import Any

from alphagraph.graph.build import EDGE_SCHEMA, RELATIONS, build_edges, empty_edges

__all__ = ["EDGE_SCHEMA", "RELATIONS", "GraphIndex", "build_edges", "empty_edges"]


def __getattr__(name: str) -> Any:
    if name == "GraphIndex":
        from alphagraph.graph.loader import GraphIndex

        return GraphIndex
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
