"""Segmentation metrics: a streaming bincount confusion matrix and the evaluators built on it; boundary
and thin-structure scores (:mod:`.boundary`).

Example:
    >>> import torch
    >>> from clipapro.metrics import ConfusionMatrix
    >>> cm = ConfusionMatrix(2)
    >>> cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    >>> cm.compute().as_dict()["IoU"]
    {'0': 50.0, '1': 0.0}
"""

from .boundary import (
    EdgeScorer,
    band_confusion,
    band_miou,
    boundary_counts,
    boundary_f,
    f_from_counts,
    thin_counts,
    thin_recall,
)
from .confusion import ConfusionMatrix, confusion_counts, metrics_from_counts
from .evaluator import (
    SemSegEvaluator,
    evaluate_pipeline,
    evaluate_predictions,
    inference_on_dataset,
    read_prediction_png,
)
from .report import SegMetrics

__all__ = [
    "ConfusionMatrix", "EdgeScorer", "SegMetrics", "SemSegEvaluator", "band_confusion", "band_miou", "boundary_counts",
    "boundary_f", "confusion_counts", "f_from_counts", "thin_counts", "thin_recall", "evaluate_pipeline",
    "evaluate_predictions", "inference_on_dataset", "metrics_from_counts", "read_prediction_png",
]
