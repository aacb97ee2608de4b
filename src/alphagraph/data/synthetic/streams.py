"""The synthetic market's randomness: one seeded generator per named stream."""

from __future__ import annotations

import zlib

import numpy as np


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per named stream, so adding a stream shifts nothing else."""
    key = zlib.crc32(stream.encode())
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(key,)))
