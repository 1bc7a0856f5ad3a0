"""Point/scribble-supervised semantic segmentation losses (APro / TEL style) for any model.

Shapes: logits (B, K, H, W) of K classes; labels (B, H, W) int64 class indices with ``255`` for
unlabelled pixels; image (B, F, H, W) the guide (RGB in [0, 1]) of the same float dtype.

Total loss in the APro paper's point/scribble setting: partial cross-entropy on the labelled pixels
plus a soft-label term on ALL pixels whose targets are APro's propagation of the (detached)
prediction. Use ``PartialCrossEntropy()(logits, labels) + AProSoftLabelLoss()(logits, image)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clipapro._validate import (
    FLOAT_DTYPES,
    check_choice,
    check_option_names,
    check_positive,
    check_tensor,
    signature_defaults,
)
from clipapro.adapters.boxes import box_apro_targets
from clipapro.propagation import apro

__all__ = ["AProSoftLabelLoss", "PartialCrossEntropy", "check_sparse_labels"]

from clipapro.io import IGNORE_INDEX  # noqa: E402


def check_sparse_labels(labels, logits, *, ignore_index: int = IGNORE_INDEX, name: str = "labels"):
    """Validate (B, H, W) integer labels against (B, K, H, W) logits; returns labels unchanged."""
    check_tensor(labels, name, ndim=3, dtypes=(torch.int64, torch.int32, torch.uint8, torch.int16))
    if labels.shape[0] != logits.shape[0] or labels.shape[-2:] != logits.shape[-2:]:
        raise ValueError(f"{name} {tuple(labels.shape)} must be (B, H, W) matching logits "
                         f"{tuple(logits.shape)}")
    k = logits.shape[1]
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= k))
    if bool(bad.any()):
        raise ValueError(f"{name} has class {int(labels[bad][0])} outside [0, {k}) "
                         f"(unlabelled = {ignore_index})")
    return labels


class PartialCrossEntropy(nn.Module):
    """Cross-entropy on labelled pixels only (``ignore_index`` = unlabelled), averaged over them.

    ``forward(logits (B, K, H, W), labels (B, H, W))`` -> scalar; 0 (with a graph) when no pixel is
    labelled, so a batch without scribbles does not produce NaN.

    Example:
        >>> logits = torch.randn(1, 3, 8, 8, requires_grad=True)
        >>> labels = torch.full((1, 8, 8), 255); labels[0, 2, 2] = 1
        >>> PartialCrossEntropy()(logits, labels).backward()
    """

    def __init__(self, *, ignore_index: int = IGNORE_INDEX, class_weight: torch.Tensor | None = None):
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.class_weight = class_weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_tensor(logits, "logits", ndim=4, floating=True)
        check_sparse_labels(labels, logits, ignore_index=self.ignore_index)
        labels = labels.long()
        if not bool((labels != self.ignore_index).any()):
            return logits.sum() * 0
        return F.cross_entropy(logits, labels, weight=self.class_weight, ignore_index=self.ignore_index)


class AProSoftLabelLoss(nn.Module):
    """APro soft-label loss on all pixels: targets = APro(softmax(logits).detach(), image).

    Parallel form: ``w_g * d(global target, p) + w_l * d(local target, p)`` with ``d`` the per-pixel L1
    distance over classes averaged over pixels (``distance="l1"``, zero iff p equals the target) or the
    soft cross-entropy ``-sum_k t_k log p_k`` (``"ce"``). With ``labels`` given and
    ``clamp_labels=True``, labelled pixels enter the propagation as their one-hot labels.
    Gradients flow only through ``logits``.

    Args (keyword-only): global_weight, local_weight, distance, clamp_labels, ignore_index, and APro
    options (``zeta_g``, ``zeta_label``, ``label_gp``, ``kernel_size``, ``dilation``, ``zeta_s``,
    ``iterations``); their defaults are those of :func:`clipapro.adapters.box_apro_targets` (the same
    values measured for boxes with ``scripts/adapters_quality.py``).

    Example:
        >>> logits = torch.randn(2, 3, 16, 16, requires_grad=True)
        >>> AProSoftLabelLoss()(logits, torch.rand(2, 3, 16, 16)).backward()
    """

    def __init__(self, *, global_weight: float = 1.0, local_weight: float = 1.0, distance: str = "l1",
                 clamp_labels: bool = True, ignore_index: int = IGNORE_INDEX, **apro_options):
        super().__init__()
        self.global_weight = check_positive(global_weight, "global_weight", allow_zero=True)
        self.local_weight = check_positive(local_weight, "local_weight", allow_zero=True)
        self.distance = check_choice(distance, "distance", {"l1", "ce"})
        self.clamp_labels = bool(clamp_labels)
        self.ignore_index = int(ignore_index)
        check_option_names(apro_options, box_apro_targets, "AProSoftLabelLoss", exclude=("tree",))
        self.apro_options = {**signature_defaults(box_apro_targets, exclude=("tree",)), **apro_options}

    @torch.no_grad()
    def targets(self, logits: torch.Tensor, image: torch.Tensor, labels: torch.Tensor | None = None):
        """The two detached targets (``AProTargets``), each (B, K, H, W)."""
        probs = torch.softmax(logits.detach(), 1).to(image.dtype)
        if labels is not None and self.clamp_labels:
            lab = labels.long()
            known = lab != self.ignore_index
            onehot = F.one_hot(lab.clamp(0, probs.shape[1] - 1), probs.shape[1]).permute(0, 3, 1, 2).to(probs)
            probs = torch.where(known[:, None], onehot, probs)
        return apro(probs, image, mode="parallel", return_parts=True, **self.apro_options)

    def _distance(self, target, probs, logits):
        if self.distance == "l1":
            return (target - probs).abs().sum(1).mean()
        return -(target * torch.log_softmax(logits, 1)).sum(1).mean()

    def forward(self, logits: torch.Tensor, image: torch.Tensor, labels: torch.Tensor | None = None):
        check_tensor(logits, "logits", ndim=4, floating=True, finite=True)
        check_tensor(image, "image", ndim=4, dtypes=FLOAT_DTYPES, finite=True)
        if image.shape[0] != logits.shape[0] or image.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} must match logits {tuple(logits.shape)} in B, H, W")
        if labels is not None:
            check_sparse_labels(labels, logits, ignore_index=self.ignore_index)
        t = self.targets(logits, image, labels)
        probs = torch.softmax(logits, 1)
        g, loc = t.global_.to(probs), t.local.to(probs)
        return self.global_weight * self._distance(g, probs, logits) + \
            self.local_weight * self._distance(loc, probs, logits)
