"""The core relation-aware graph transformer (:mod:`.model`), its data and loss (:mod:`.data`),
attention read-outs (:mod:`.attention`), self-supervised pretraining (:mod:`.pretrain`) and
per-fold training with the model stage's hooks (:mod:`.train`)."""

from alphagraph.models.core.attention import attention_maps, relation_report
from alphagraph.models.core.data import core_fold_data, core_index, core_loss, wide_columns, wide_index, wide_matrix
from alphagraph.models.core.model import (
    AdaptiveWindowNorm,
    CoreModel,
    RelationAttention,
    TemporalEncoder,
    TransformerBlock,
    core_kwargs,
    depth_schedule,
    hierarchical_classes,
    per_day_zscore,
    sinusoidal,
)
from alphagraph.models.core.train import set_ridge_path, train_core_fold, train_zoo_fold, zoo_index, zoo_inputs, zoo_summary

__all__ = [
    "AdaptiveWindowNorm", "CoreModel", "RelationAttention", "TemporalEncoder", "TransformerBlock", "attention_maps",
    "core_fold_data", "core_index", "core_kwargs", "core_loss", "depth_schedule", "hierarchical_classes",
    "per_day_zscore", "relation_report", "set_ridge_path", "sinusoidal", "train_core_fold", "wide_columns",
    "wide_index", "wide_matrix", "train_zoo_fold", "zoo_index", "zoo_inputs", "zoo_summary",
]
