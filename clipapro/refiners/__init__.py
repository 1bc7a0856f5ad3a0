"""Refinement of coarse class probabilities with the image: one call, sensible defaults.

    import clipapro
    refined = clipapro.refine(image_uint8_hw3, probs_khw)            # default method ("auto")
    refined = clipapro.refine(image, logits, logits=True, method="pamr")

Methods (``REFINERS``, a plain dict name -> function(image (B, 3, H, W), probs (B, K, H, W), **options)):

- ``crf-tree``: mean-field CRF with exact all-pairs tree messages (unary-aware; the default).
- ``apro``: the paper's APro exactly (GP + LP averaging, no unary); ``apro-gp`` / ``apro-lp`` keep
  one of its two targets.
- ``pamr``: PAMR (Araslanov & Roth, CVPR 2020) as used by SCLIP / NACLIP.
- ``densecrf``: DenseCRF through the optional ``pydensecrf2`` package (benchmark baseline).

``"auto"`` is :data:`DEFAULT_METHOD`, chosen by ``scripts/refine_quality.py`` (README, "Refinement
quality"). Knows the propagation ops, nothing of CLIP or datasets.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from clipapro.refiners._inputs import check_pair, image_to_tensor, probs_to_tensor
from clipapro.refiners.apro_method import apro_refine
from clipapro.refiners.crf_tree import CRF_TREE_DEFAULTS, crf_tree
from clipapro.refiners.densecrf import DENSECRF_DEFAULTS, densecrf
from clipapro.refiners.pamr import PAMR_DEFAULTS, pamr

REFINERS = {
    "crf-tree": crf_tree,
    "apro": apro_refine,
    "apro-gp": functools.partial(apro_refine, parts="global"),
    "apro-lp": functools.partial(apro_refine, parts="local"),
    "pamr": pamr,
    "densecrf": densecrf,
}

#: The method ``method="auto"`` runs (best mIoU gain per second in the quality study).
DEFAULT_METHOD = "crf-tree"

__all__ = ["CRF_TREE_DEFAULTS", "DEFAULT_METHOD", "DENSECRF_DEFAULTS", "PAMR_DEFAULTS", "REFINERS", "refine"]


def refine(image, probs, *, method: str = "auto", logits: bool = False, **options):
    """Refine coarse class probabilities with the image they belong to.

    Args:
        image: uint8 (H, W, 3) or (B, H, W, 3) photo, or float (3, H, W) / (B, 3, H, W) in [0, 1];
            numpy array or tensor.
        probs: (K, H, W) or (B, K, H, W) class probabilities summing to one along K (numpy or
            tensor), or logits / unnormalised scores with ``logits=True`` (softmax over K first).
        method: ``"auto"`` (:data:`DEFAULT_METHOD`) or a key of :data:`REFINERS`.
        options: keyword options of the method (see each method's docstring), e.g. ``w_tree=5``.

    Returns:
        Refined probabilities, same shape as ``probs``, float32, summing to one along K; a numpy
        array when ``probs`` is one, else a tensor on ``probs``' device.

    Example:
        >>> img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        >>> p = torch.softmax(torch.randn(4, 24, 32), 0)
        >>> refine(img, p).shape
        torch.Size([4, 24, 32])
    """
    if not isinstance(method, str) or (method != "auto" and method not in REFINERS):
        raise ValueError(f"method must be 'auto' or one of {sorted(REFINERS)}, got {method!r}")
    fn = REFINERS[DEFAULT_METHOD if method == "auto" else method]
    img = image_to_tensor(image)
    p, squeeze = probs_to_tensor(probs, logits=bool(logits))
    check_pair(img, p)
    out = fn(img, p, **options).to(torch.float32)
    out = out[0] if squeeze else out
    if isinstance(probs, np.ndarray):
        return out.numpy()
    return out.to(probs.device)
