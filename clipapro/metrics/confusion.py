"""Streaming confusion matrix for semantic segmentation (bincount based, CPU or GPU, distributed).

Conventions follow mmsegmentation's ``IoUMetric`` (``intersect_and_union`` + ``total_area_to_metrics``):

* pixels whose ground truth is ``ignore_index`` never count, whatever the prediction;
* IoU_c = |pred=c and gt=c| / |pred=c or gt=c|; Acc_c = |pred=c and gt=c| / |gt=c|;
* aAcc = correct pixels / labelled pixels;
* a class absent from both prediction and ground truth has IoU NaN and is left out of mIoU; a class
  absent from the ground truth has Acc NaN and is left out of mAcc (``nanmean``);
* a prediction outside ``0..K-1`` on a labelled pixel counts as wrong (it adds to the ground-truth
  area of its class and to no predicted area), as mmseg's ``histc`` does.
"""

from __future__ import annotations

import torch

from clipapro.distributed import all_reduce_sum
from clipapro.io import IGNORE_INDEX

from .report import SegMetrics

__all__ = ["ConfusionMatrix", "confusion_counts", "metrics_from_counts"]


def _as_label_tensor(x, name: str, device=None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        import numpy as np

        arr = np.asarray(x)
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype} (shape {arr.shape})")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.is_floating_point() or x.is_complex():
        raise TypeError(f"{name} must hold integer labels, got dtype {x.dtype} (shape {tuple(x.shape)})")
    if device is not None:
        x = x.to(device)
    return x.long()


def confusion_counts(pred, target, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Counts (K, K+1) int64: row = ground-truth class, column = predicted class, column K = out of range.

    ``pred`` and ``target`` are integer label maps of the same shape (any rank: (H, W) or (B, H, W)),
    numpy arrays or tensors; the result lives on ``target``'s device (``pred`` is moved there).

    Example:
        >>> confusion_counts(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 255]), 2)[:, :2].tolist()
        [[1, 0], [0, 1]]
    """
    target = _as_label_tensor(target, "target")
    pred = _as_label_tensor(pred, "pred", device=target.device)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    k = int(num_classes)
    t, p = target.reshape(-1), pred.reshape(-1)
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= k))
    if bool(bad.any()):
        values = torch.unique(t[bad])[:8].tolist()
        raise ValueError(f"target holds labels {values} outside 0..{k - 1} (ignore_index={ignore_index})")
    # one flat bincount, no boolean gathers: ignored pixels go to an extra last bin that is dropped
    p = torch.where((p < 0) | (p >= k), k, p)
    index = torch.where(valid, t * (k + 1) + p, k * (k + 1))
    return torch.bincount(index, minlength=k * (k + 1) + 1)[:-1].reshape(k, k + 1)


def metrics_from_counts(counts: torch.Tensor) -> SegMetrics:
    """Per-class IoU/Acc and mIoU/mAcc/aAcc (fractions in [0, 1], NaN for absent classes)."""
    c = counts.detach().to("cpu", torch.float64)
    k = c.shape[0]
    intersect = torch.diagonal(c[:, :k])
    area_gt = c.sum(1)
    area_pred = c[:, :k].sum(0)
    union = area_gt + area_pred - intersect
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, intersect / union.clamp(min=1), nan)
    acc = torch.where(area_gt > 0, intersect / area_gt.clamp(min=1), nan)
    total = float(area_gt.sum())
    return SegMetrics(
        iou=iou.tolist(), acc=acc.tolist(),
        miou=float(torch.nanmean(iou)) if bool((union > 0).any()) else float("nan"),
        macc=float(torch.nanmean(acc)) if bool((area_gt > 0).any()) else float("nan"),
        aacc=float(intersect.sum()) / total if total > 0 else float("nan"),
        pixels=int(total),
    )


class ConfusionMatrix:
    """Accumulate a segmentation confusion matrix over many images: ``reset / update / compute``.

    Args:
        num_classes: K; labels are 0..K-1.
        ignore_index: ground-truth value that never counts (:data:`clipapro.io.IGNORE_INDEX`).
        device: where the counts live (default: the device of the first ``update``'s target).
        class_names: optional names (K) used as keys in the reports.

    ``compute()`` sums the counts over all processes when ``torch.distributed`` is initialised (a
    collective call: every rank must make it) and returns :class:`~clipapro.metrics.SegMetrics`.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> cm.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [1, 255]]))
        >>> round(cm.compute().miou, 4)  # IoU: 1, 0.5, 0 (class 2 predicted, never in the GT)
        0.5
    """

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX, device=None, class_names=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} is a class index (num_classes={num_classes})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.device = None if device is None else torch.device(device)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        self.class_names = None if class_names is None else tuple(class_names)
        self.reset()

    def reset(self) -> None:
        """Forget every count."""
        self._counts = None
        self.num_updates = 0

    @property
    def counts(self) -> torch.Tensor:
        """Local (this process) counts (K, K+1) int64; column K = predictions outside 0..K-1."""
        if self._counts is None:
            k = self.num_classes
            return torch.zeros(k, k + 1, dtype=torch.int64, device=self.device)
        return self._counts

    @property
    def matrix(self) -> torch.Tensor:
        """Local confusion matrix (K, K) int64: ``matrix[gt, pred]``."""
        return self.counts[:, : self.num_classes]

    def update(self, pred, target) -> None:
        """Add one image or a batch: integer label maps of equal shape ((H, W) or (B, H, W))."""
        if self.device is not None and isinstance(target, torch.Tensor):
            target = target.to(self.device)
        elif self.device is not None:
            target = _as_label_tensor(target, "target", device=self.device)
        c = confusion_counts(pred, target, self.num_classes, ignore_index=self.ignore_index)
        self._counts = c if self._counts is None else self._counts + c.to(self._counts.device)
        self.num_updates += 1

    def add_counts(self, counts: torch.Tensor) -> None:
        """Add precomputed (K, K+1) counts (e.g. from DataLoader workers)."""
        k = self.num_classes
        if tuple(counts.shape) != (k, k + 1):
            raise ValueError(f"counts must have shape ({k}, {k + 1}), got {tuple(counts.shape)}")
        counts = counts.to(torch.int64)
        if self._counts is None:
            self._counts = counts.clone()
        else:
            self._counts = self._counts + counts.to(self._counts.device)
        self.num_updates += 1

    def synced_counts(self) -> torch.Tensor:
        """Counts summed over all processes (a copy; local counts are unchanged)."""
        counts = self.counts.clone()
        return all_reduce_sum(counts)

    def compute(self, *, sync: bool = True) -> SegMetrics:
        """Metrics over everything seen (all processes when ``sync`` and distributed is initialised)."""
        metrics = metrics_from_counts(self.synced_counts() if sync else self.counts)
        metrics.class_names = self.class_names
        return metrics

