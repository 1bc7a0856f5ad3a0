"""Periodic evaluation of the student: whole-image inference, confusion matrix summed over ranks."""

from __future__ import annotations

import math

import torch

from clipapro.metrics import confusion_counts, metrics_from_counts
from clipapro.pseudo.distributed import all_reduce_sum, shard_indices

__all__ = ["evaluate_student", "scores_from_confusion"]


def scores_from_confusion(conf: torch.Tensor, class_names=None) -> dict:
    """mIoU, pixel accuracy and per-class IoU (fractions) from counts made by
    :func:`clipapro.metrics.confusion_counts` ((K, K+1), rows = ground truth).

    Classes absent from both ground truth and prediction are left out of the mean (None IoU), the
    mmsegmentation convention (computed by :func:`clipapro.metrics.metrics_from_counts`).
    """
    m = metrics_from_counts(conf)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(m.iou))]
    per_class = {n: (None if math.isnan(v) else v) for n, v in zip(names, m.iou, strict=True)}
    return {"mIoU": m.miou, "aAcc": m.aacc, "IoU": per_class}


@torch.no_grad()
def evaluate_student(model, dataset, *, num_classes: int, device, rank: int = 0, world_size: int = 1,
                     limit: int | None = None, ignore_index: int = 255, progress: bool = False) -> dict:
    """Score ``model`` on ``dataset`` (items with ``image`` and ground-truth ``mask``).

    Each rank scores its shard; confusion matrices are summed over ranks so every rank returns the
    same scores (counts and scores from :mod:`clipapro.metrics`).

    Example:
        >>> # scores = evaluate_student(student, val_set, num_classes=21, device="cpu")
    """
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    conf = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64, device=device)
    for i in tqdm(shard_indices(n, rank, world_size), desc="eval", unit="img", disable=not progress):
        item = dataset[i]
        image = torch.tensor(item["image"]).permute(2, 0, 1)[None].float().div_(255).to(device)
        target = torch.tensor(item["mask"]).to(device)
        pred = model(image)[0].argmax(0)
        conf += confusion_counts(pred, target, num_classes, ignore_index=ignore_index)
    all_reduce_sum(conf)
    model.train(was_training)
    return scores_from_confusion(conf.cpu(), getattr(dataset, "classes", None))
