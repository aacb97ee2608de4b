"""Checkpoints of a fit: written byte-identically on resume, read with ``weights_only=True`` so a
checkpoint from elsewhere never runs code, and keyed by the loop config they resume."""

from __future__ import annotations

import dataclasses
import pickle
import random
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alphagraph.runtime.errors import UserError
from alphagraph.runtime.io import atomic_path
from alphagraph.train.types import LoopConfig


class CheckpointError(UserError):
    """A checkpoint that is refused: it holds more than tensors and plain containers, or is unreadable."""


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG state as tensors and plain values, so that ``weights_only`` loading accepts it."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": int(version), "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate((p["version"], tuple(int(w) for w in p["words"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(obj: Any) -> Any:
    """Numpy scalars (e.g. in history records) as python numbers: ``weights_only`` loading refuses numpy objects."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj.item() if isinstance(obj, np.generic) else obj


def _canonical(obj: Any) -> Any:
    """``obj`` with fresh containers and every string interned, so that its pickle depends on values only.

    Pickle writes an object it has seen before as a back-reference (memo), by identity: a key
    that a fresh run takes from one code constant ("epoch", "lr") but a resumed run from the
    unpickled checkpoint (another object per occurrence) is written out again, so the same
    checkpoint got other bytes after a resume (and DVC saw a changed models/ folder). Interned,
    equal strings are one object in both runs; rebuilt dicts, lists and tuples are never shared.
    Tensors are kept as they are (torch.save writes each storage once, by its own key).
    """
    kind = type(obj)
    if kind is str:
        return sys.intern(obj)
    if kind in (dict, OrderedDict):  # a state_dict is an OrderedDict whose _metadata attribute is pickled too
        out = kind((_canonical(k), _canonical(v)) for k, v in obj.items())
        for attr, value in getattr(obj, "__dict__", {}).items():
            setattr(out, attr, _canonical(value))
        return out
    if kind in (list, tuple):
        return kind(_canonical(v) for v in obj)
    return obj


def _save(obj: Any, path: Path) -> None:
    # Saving to a file object: torch names the zip records after a path's stem, and the
    # temporary file's random name would make identical checkpoints differ byte-wise.
    # _canonical: a resumed run's checkpoint byte-identical to an uninterrupted run's.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(_canonical(obj), fh)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """A checkpoint's contents, read with ``weights_only=True``: tensors and plain containers only.

    Unpickling anything else could run code (a checkpoint from a colleague or a
    shared DVC remote is untrusted input), so such a file is refused with a
    :class:`CheckpointError` naming it.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; anything else is damaged or foreign
        raise CheckpointError(f"{path}: cannot be loaded: not a torch checkpoint (torch.save's zip format); delete it and retrain")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain containers, and unpickling"
            f" them could run code ({detail or type(exc).__name__}). Delete it and retrain, or rebuild it from a"
            " trusted source; never load it with weights_only=False"
        ) from exc
    except (RuntimeError, EOFError) as exc:  # a truncated archive
        raise CheckpointError(f"{path}: cannot be loaded ({exc}); delete it and retrain") from exc


_RESUME_IGNORED = ("progress", "device", "num_threads")
# Fields added later: left out of the key at their default, so checkpoints written before them
# still resume and a default run's checkpoint is byte-identical to before.
_KEY_DEFAULTS = {"optimizer": "adamw", "restart_epochs": 0.0, "restart_mult": 1.0}


def _config_key(cfg: LoopConfig) -> dict[str, Any]:
    return {
        k: v for k, v in dataclasses.asdict(cfg).items()
        if k not in _RESUME_IGNORED and not (k in _KEY_DEFAULTS and v == _KEY_DEFAULTS[k])
    }
