"""Graph snapshots (build) and fast per-day graph access for models (loader)."""

from alphagraph.graph.build import EDGE_SCHEMA, RELATIONS, build_edges, empty_edges
from alphagraph.graph.loader import GraphIndex

__all__ = ["EDGE_SCHEMA", "RELATIONS", "GraphIndex", "build_edges", "empty_edges"]
