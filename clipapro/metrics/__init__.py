"""Segmentation metrics: a streaming bincount confusion matrix and the evaluators built on it.

Example:
    >>> import torch
    >>> from clipapro.metrics import ConfusionMatrix
    >>> cm = ConfusionMatrix(2)
    >>> cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]))
    >>> cm.compute().as_dict()["IoU"]
    {'0': 50.0, '1': 0.0}
"""

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
    "ConfusionMatrix", "SegMetrics", "SemSegEvaluator", "confusion_counts", "evaluate_pipeline",
    "evaluate_predictions", "inference_on_dataset", "metrics_from_counts", "read_prediction_png",
]
