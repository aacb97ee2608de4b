"""RSR's Wikidata company relations (``*_wiki_relation.npy``) -> a relations file of the file source.

The GitHub repository fulifeng/Temporal_Relational_Stock_Ranking ships, in
``data/relation.tar.gz``, ``relation/wikidata/NASDAQ_wiki_relation.npy`` (and
``NYSE_wiki_relation.npy``). Its ``preprocess/wikidata.py`` writes them as
``np.zeros([n_tickers, n_tickers, n_paths + 1], dtype=int)`` with entry
``[i][j][k] = 1`` when ticker i links to ticker j by the Wikidata path type k
(e.g. "parent organization", "owned by / subsidiary", "produces / product of");
the last channel ``k = n_paths`` is the self relation, set on the diagonal only.
Tickers are in the order of the ticker list the paper trains with
(``NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv``: one per line, no header).

    python -m alphagraph.data.rsr_relations --npy NASDAQ_wiki_relation.npy \\
        --tickers NASDAQ_tickers_qualify_dr-0.98_min-5_smooth.csv --out inputs/rsr_nasdaq/relations.csv

writes ``src, dst, relation, weight``: one pair of rows (both directions, the
same weight) per unordered pair of distinct tickers linked by any path type in
either direction; the self channel and the diagonal are skipped. The links are
treated as undirected (RSR's array is directed, source item -> target item,
but its models use it as a mask of "related or not").

Weight (``--weight``): ``one`` (the default) writes 1 for every linked pair,
RSR's own binary adjacency and the (0, 1] scale of the other relation types;
``paths`` writes the number of distinct path types linking the pair (in either
direction, 1 .. n_paths).

The links were collected from Wikidata once, after the sample (the paper's
data ends in 2017), so the file has no ``start``/``end`` dates: applied to every
graph snapshot it is look-ahead in the same way as a static industry map (the
graph stage warns, and ``metrics/graph.json`` reports ``point_in_time.wikidata:
false``).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl

from alphagraph.data.file_source import ticker_lines
from alphagraph.data.validate import DataError
from alphagraph.runtime.config import RELATION_NAMES
from alphagraph.runtime.errors import run_main

RELATION = "wikidata"
WEIGHTS = ("one", "paths")
ROW_BLOCK = 128  # rows of the [n, n, k] array read at a time (bounded memory on the NYSE array)
# popcount of a byte: counts the path types in np.packbits-packed channels
_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def read_ticker_list(path: Path) -> list[str]:
    """The tickers in file order (index i of the array is line i); a code/ticker/symbol header is skipped."""
    lines = ticker_lines(path, "--tickers")  # RSR reads it with np.genfromtxt, which skips blank lines too
    repeated = [t for t, n in Counter(lines).items() if n > 1]
    if repeated:
        raise DataError(
            f"{path}: ticker(s) {', '.join(map(repr, repeated[:5]))} listed more than once; the array's rows"
            " follow the file's lines, so a repeated ticker is ambiguous (--tickers)"
        )
    return lines


def load_relation_array(path: Path) -> np.ndarray:
    """The [tickers, tickers, path types + 1] array, memory-mapped; a wrong shape or type is a DataError."""
    if not path.is_file():
        what = "is a directory, expected a .npy file" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {what} (--npy)")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read a NumPy .npy array: {str(exc).splitlines()[0]} (--npy)") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise DataError(f"{path}: is an .npz archive, expected the .npy array of RSR's relation folder (--npy)")
    expected = "RSR's [tickers, tickers, path types + 1] array"
    if array.ndim != 3:
        raise DataError(f"{path}: a {array.ndim}-D array of shape {array.shape}, expected {expected} (--npy)")
    if array.shape[0] != array.shape[1]:
        raise DataError(f"{path}: shape {array.shape} is not square in its first two axes, expected {expected} (--npy)")
    if array.shape[2] < 2:
        raise DataError(
            f"{path}: shape {array.shape} has no path-type channel (the last channel is the self relation),"
            f" expected {expected} (--npy)"
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{path}: dtype {array.dtype}, expected 0/1 numbers (--npy)")
    return array


def _packed_links(array: np.ndarray, source: str) -> np.ndarray:
    """[n, n, bytes]: bit k of (i, j) set when path type k links i to j; checks the self channel on the way.

    Read in blocks of rows, so a memory-mapped array is never loaded whole.
    """
    n = array.shape[0]
    packed = np.empty((n, n, (array.shape[2] - 1 + 7) // 8), dtype=np.uint8)
    for lo in range(0, n, ROW_BLOCK):  # blocks of rows; each block is vectorized
        block = np.asarray(array[lo : lo + ROW_BLOCK])
        if np.issubdtype(block.dtype, np.floating) and not np.isfinite(block).all():
            raise DataError(f"{source}: the array holds NaN or infinite values, expected 0/1 (--npy)")
        off_diagonal = block[:, :, -1] != 0
        off_diagonal[np.arange(block.shape[0]), np.arange(lo, lo + block.shape[0])] = False
        if off_diagonal.any():
            i, j = (int(v[0]) for v in np.nonzero(off_diagonal))
            raise DataError(
                f"{source}: the last channel links ticker {lo + i} to ticker {j}; in RSR's layout it is the self"
                " relation, set on the diagonal only (expected [tickers, tickers, path types + 1]) (--npy)"
            )
        packed[lo : lo + block.shape[0]] = np.packbits(block[:, :, :-1] != 0, axis=2)
    return packed


def relation_rows(
    array: np.ndarray, tickers: list[str], relation: str = RELATION, weight: str = "one", source: str = "array"
) -> pl.DataFrame:
    """``src, dst, relation, weight``: both directions of every linked unordered pair, sorted by (src, dst)."""
    if relation not in RELATION_NAMES:
        raise DataError(f"--relation: unknown relation name {relation!r}; allowed: {', '.join(RELATION_NAMES)}")
    if weight not in WEIGHTS:
        raise DataError(f"--weight: {weight!r}, expected one of {', '.join(WEIGHTS)}")
    if array.shape[0] != len(tickers):
        raise DataError(
            f"{source}: the array has {array.shape[0]} tickers (shape {array.shape}) but the tickers file lists"
            f" {len(tickers)}; use the ticker list of the same market the array was built from (--tickers)"
        )
    packed = _packed_links(array, source)
    union = packed | packed.transpose(1, 0, 2)  # undirected: a path type in either direction
    count = _POPCOUNT[union].sum(axis=2, dtype=np.int64)
    lo, hi = np.nonzero(np.triu(count, k=1))  # each unordered pair once, the diagonal skipped
    n_paths = count[lo, hi].astype(np.float64)
    w = n_paths if weight == "paths" else np.ones_like(n_paths)
    codes = pl.Series(tickers, dtype=pl.Utf8)
    src, dst = np.concatenate([lo, hi]), np.concatenate([hi, lo])
    return pl.DataFrame(
        {
            "src": codes.gather(src),
            "dst": codes.gather(dst),
            "relation": pl.repeat(relation, src.size, dtype=pl.Utf8, eager=True),
            "weight": np.concatenate([w, w]),
        }
    ).sort("src", "dst")


def write_relations(rows: pl.DataFrame, out: Path) -> None:
    """CSV or Parquet by the suffix of ``out``; the folder is created."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DataError(f"{out}: unsupported file type {suffix!r} (expected .csv or .parquet) (--out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        rows.write_csv(out)
    else:
        rows.write_parquet(out)


def convert(npy: Path, tickers: Path, out: Path, relation: str = RELATION, weight: str = "one") -> pl.DataFrame:
    """Read the array and the tickers, write the relations file; return its rows."""
    names = read_ticker_list(tickers)
    array = load_relation_array(npy)
    rows = relation_rows(array, names, relation, weight, source=str(npy))
    if rows.height == 0:
        raise DataError(f"{npy}: no two distinct tickers are linked by any path type; nothing to write (--npy)")
    write_relations(rows, out)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npy", required=True, help="RSR's <MARKET>_wiki_relation.npy")
    parser.add_argument("--tickers", required=True, help="the market's ticker list, one per line, in the array's order")
    parser.add_argument("--out", required=True, help="relations file to write (.csv or .parquet)")
    parser.add_argument("--relation", default=RELATION, help=f"relation name written (default {RELATION})")
    parser.add_argument("--weight", choices=WEIGHTS, default="one",
                        help="one: 1 per linked pair (default); paths: the number of path types linking it")
    args = parser.parse_args(argv)
    rows = convert(Path(args.npy), Path(args.tickers), Path(args.out), args.relation, args.weight)
    linked = pl.concat([rows["src"], rows["dst"]]).n_unique()
    print(f"wrote {rows.height} rows ({rows.height // 2} linked pairs, {linked} tickers with a link,"
          f" relation {args.relation}, weight {args.weight}) to {args.out}")


if __name__ == "__main__":
    run_main(main)
