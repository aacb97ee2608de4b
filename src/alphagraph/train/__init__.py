"""Reusable training machinery for node-level models on batches of trading days.

- :mod:`~alphagraph.train.data`: the ``DayData`` protocol and its daily-graph implementation;
- :mod:`~alphagraph.train.losses`: masked multi-horizon losses;
- :mod:`~alphagraph.train.loop`: ``fit`` (AdamW, warmup + cosine, clipping,
  early stopping, checkpoints with exact resume) and ``predict``;
- :mod:`~alphagraph.train.fold`: one walk-forward fold end to end;
- :mod:`~alphagraph.train.outputs`: split codes, predictions frames and a fold's output, without torch.

The names below are imported on first use: a submodule that needs no torch (``outputs``, ``workers``,
``types``) can be imported without loading torch through this package.
"""

from importlib import import_module
from typing import Any

# name -> submodule that defines it
_WHERE = {
    **dict.fromkeys(("NONE", "TRAIN", "VAL", "TEST", "predictions_frame", "split_codes", "FoldOutput", "collect_folds"), "outputs"),
    **dict.fromkeys(("ClassBalance", "DayData", "GraphDayData"), "data"),
    "train_fold": "fold",
    **dict.fromkeys(("MultiHorizonLoss", "daily_corr", "masked_bce", "masked_mse"), "losses"),
    **dict.fromkeys(("FitResult", "LoopConfig", "Prediction"), "types"),
    **dict.fromkeys(("EarlyStopping", "WarmupCosine", "daily_metrics", "fit",
                     "predict", "resolve_device", "seed_everything", "validate"), "loop"),
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
