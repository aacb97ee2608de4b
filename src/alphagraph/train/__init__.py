"""Reusable training machinery for node-level models on batches of trading days.

- :mod:`~alphagraph.train.data`: split codes per panel row, the ``DayData``
  protocol and its daily-graph implementation, predictions frames;
- :mod:`~alphagraph.train.losses`: masked multi-horizon losses;
- :mod:`~alphagraph.train.loop`: ``fit`` (AdamW, warmup + cosine, clipping,
  early stopping, checkpoints with exact resume) and ``predict``;
- :mod:`~alphagraph.train.fold`: one walk-forward fold end to end.
"""

from alphagraph.train.data import NONE, TEST, TRAIN, VAL, ClassBalance, DayData, GraphDayData, predictions_frame, split_codes
from alphagraph.train.fold import FoldOutput, collect_folds, train_fold
from alphagraph.train.losses import MultiHorizonLoss, daily_corr, masked_bce, masked_mse
from alphagraph.train.loop import (
    EarlyStopping,
    FitResult,
    LoopConfig,
    Prediction,
    WarmupCosine,
    daily_metrics,
    fit,
    predict,
    resolve_device,
    seed_everything,
    validate,
)

__all__ = [
    "NONE", "TRAIN", "VAL", "TEST", "ClassBalance", "DayData", "GraphDayData", "predictions_frame", "split_codes",
    "FoldOutput", "collect_folds", "train_fold", "MultiHorizonLoss", "daily_corr", "masked_bce", "masked_mse",
    "EarlyStopping", "FitResult", "LoopConfig", "Prediction", "WarmupCosine", "daily_metrics", "fit", "predict",
    "resolve_device", "seed_everything", "validate",
]
