"""Atomic artifact writes and small readers.

Every artifact is written to a temporary file in its target folder and renamed
into place, so a stage that fails leaves no half-written file behind. An
exception or SIGTERM (:func:`alphagraph.runtime.errors.run_main` turns it into an
exit) removes the temporary; one left by SIGKILL is removed the next time
the same artifact is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries that :func:`atomic_path` / :func:`atomic_dir` left beside ``path`` when killed.

    Only names of their exact shape (``.{name}.XXXXXXXX[.tmp]``) are touched:
    one artifact is written by one stage at a time, so these belong to no live run.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    shape = re.compile(rf"^\.{re.escape(path.name)}\.[A-Za-z0-9_]{{8}}(\.tmp)?$")
    removed = []
    for p in path.parent.iterdir():
        if shape.match(p.name):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
            removed.append(p)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_parquet(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to Parquet atomically (zstd, statistics on)."""
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, compression="zstd", statistics=True)
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write JSON atomically: sorted keys, indented, ending with a newline (DVC metrics)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_parquet(path: str | Path, columns: list[str] | None = None, contiguous: bool = False) -> pl.DataFrame:
    """Read a Parquet artifact with a clear error when it is missing.

    ``contiguous``: every column in one chunk (a file has one per row group), so numeric columns
    without nulls are zero-copy numpy arrays, which the models' batch reads index
    (:meth:`alphagraph.graph.loader.GraphIndex.gather`); the copy is transient, at read time.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: artifact not found (did the upstream stage run?)")
    frame = pl.read_parquet(path, columns=columns)
    return frame.rechunk() if contiguous else frame


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: artifact not found (did the upstream stage run?)")
    return json.loads(path.read_text())


MEMORY_TARGET = 1 << 30
"""Bytes of working memory one block of a streaming stage may use (``$ALPHAGRAPH_MEMORY_MB`` overrides it)."""


def memory_target() -> int:
    """The working-memory target of the streaming data stages, in bytes."""
    env = os.environ.get("ALPHAGRAPH_MEMORY_MB")
    return int(float(env) * (1 << 20)) if env else MEMORY_TARGET


SINK_KEYS = ("date", "code")
SINK_CODEC = "none"
"""Codec of a :class:`ParquetSink`'s value columns. Float features barely compress (zstd keeps
~75% of the bytes, lz4 ~88%) while zstd costs ~2x lz4's time to write and to read back."""


def sink_options(columns: list[str]) -> dict[str, Any]:
    """pyarrow writer options of a :class:`ParquetSink`: the key columns dictionary-encoded, zstd and
    with statistics (they stay small and let readers skip row groups by date); the value columns
    plain, :data:`SINK_CODEC`, without statistics (min/max of float columns cost time, and nothing
    filters on them)."""
    keys = [c for c in SINK_KEYS if c in columns]
    codec = {c: ("zstd" if c in keys else SINK_CODEC) for c in columns}
    return {"compression": codec, "use_dictionary": keys, "write_statistics": keys}


class ParquetSink:
    """Append DataFrames to one Parquet file (:func:`sink_options`), written atomically.

    Rows go to a temporary file beside ``path``; it replaces ``path`` only when the
    ``with`` block ends without an exception (otherwise it is deleted). Encoding and
    compression run on a background thread (Arrow releases the GIL), so the next block
    is computed meanwhile; at most one block waits to be written.
    """

    def __init__(self, path: str | Path, row_group_size: int = 1 << 18, required: Iterable[str] = ()):
        self.path = Path(path)
        self.row_group_size = row_group_size
        # columns that never hold a null: written as required (no definition levels to encode)
        self.required = set(required)
        self.writer = None
        self._ctx = None
        self._pool = None
        self._pending = None

    def __enter__(self) -> ParquetSink:
        self._ctx = atomic_path(self.path)
        self.tmp = self._ctx.__enter__()
        # the writer creates the file itself: on ext4, opening the empty placeholder with
        # truncation marks it for a flush of all its data at close (auto_da_alloc), which
        # stalls the stage for about a second per GB written
        self.tmp.unlink()
        self._pool = ThreadPoolExecutor(max_workers=1)
        return self

    def write(self, df: pl.DataFrame | pa.Table) -> None:
        table = df if isinstance(df, pa.Table) else df.to_arrow()
        if self.required:
            fields = []
            for field, column in zip(table.schema, table.columns):
                if field.name in self.required:
                    if column.null_count:
                        raise ValueError(f"{self.path}: column {field.name} has nulls but was declared required")
                    field = field.with_nullable(False)
                fields.append(field)
            table = pa.Table.from_arrays(table.columns, schema=pa.schema(fields, metadata=table.schema.metadata))
        self._wait()
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema, **sink_options(table.column_names))
        self._pending = self._pool.submit(self.writer.write_table, table, row_group_size=self.row_group_size)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._wait()
            self._pool.shutdown()
            if self.writer is not None:
                self.writer.close()
            elif exc_type is None:
                raise ValueError(f"{self.path}: nothing to write")
        except BaseException:
            if self.writer is not None:
                self.writer.close()
            self._ctx.__exit__(*sys.exc_info())
            raise
        return bool(self._ctx.__exit__(exc_type, exc, tb))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_csv(df: pl.DataFrame, path: str | Path) -> Path:
    """Write a CSV atomically (plot data for ``dvc plots``)."""
    with atomic_path(path) as tmp:
        df.write_csv(tmp)
    return Path(path)
