"""Periodic evaluation of the student: whole-image inference through the one evaluation loop
(:func:`clipapro.metrics.inference_on_dataset`), counts summed over ranks."""

from __future__ import annotations

import torch

from clipapro.io import IGNORE_INDEX, image_to_tensor
from clipapro.metrics import SegMetrics, SemSegEvaluator, inference_on_dataset

__all__ = ["evaluate_student"]


@torch.no_grad()
def evaluate_student(model, dataset, *, num_classes: int, device, shard=None, limit: int | None = None,
                     ignore_index: int = IGNORE_INDEX, progress: bool = False) -> SegMetrics:
    """Score ``model`` (``(B, 3, H, W)`` in [0, 1] -> ``(B, K, H, W)`` logits) on ``dataset`` (items with
    ``image`` and ground-truth ``mask``); every rank returns the same scores.

    Example:
        >>> # evaluate_student(student, val_set, num_classes=21, device="cpu").as_dict()["mIoU"]  (percent)
    """
    from clipapro.data.base import LimitedDataset

    was_training = model.training
    model.eval()
    names = tuple(getattr(dataset, "classes", ()))
    evaluator = SemSegEvaluator(num_classes, ignore_index=ignore_index, device=device,
                                class_names=names if len(names) == num_classes else None)
    data = dataset if limit is None else LimitedDataset(dataset, limit)

    def predict(item):
        return model(image_to_tensor(item["image"]).to(device))[0].argmax(0)

    try:
        return inference_on_dataset(predict, data, evaluator, shard=shard, progress=progress, desc="eval")
    finally:
        model.train(was_training)
