"""Refinement of coarse class probabilities with the image: one call, one registry, sensible defaults.

    import clipapro
    refined = clipapro.refine(image_uint8_hw3, probs_khw)            # the default method ("auto")
    refined = clipapro.refine(image, logits, logits=True, method="pamr")

Methods (:func:`list_refiners`; each ``fn(image (B, 3, H, W), probs (B, K, H, W), **options)``,
registered with :func:`register_refiner`, defaults in its signature, :func:`refiner_defaults`):

- ``geo-crf`` (the default): candidate classes and per-class calibration, region mean field with exact
  tree messages on a small grid, class-presence pruning, then a full-resolution decision with the
  image's own tree (``clipapro.refiners.geo_crf``).
- ``crf-tree``: mean-field CRF with exact all-pairs tree messages (unary-aware), on a small grid.
- ``apro``: the paper's APro exactly (GP + LP averaging, no unary); ``apro-gp`` / ``apro-lp`` keep
  one of its two targets.
- ``pamr``: PAMR (Araslanov & Roth, CVPR 2020) as used by SCLIP / NACLIP.
- ``densecrf``: DenseCRF through the optional ``pydensecrf2`` package (benchmark baseline).
- ``none``: the probabilities unchanged.

``"auto"`` is :data:`DEFAULT_METHOD`, chosen by ``scripts/refine_quality.py`` (README, "Refinement
quality"). Knows the propagation ops, nothing of CLIP or datasets.
"""

from __future__ import annotations

import numpy as np
import torch

from clipapro.io import image_to_tensor, probs_to_tensor
from clipapro.refiners import apro_method, crf_tree, densecrf, geo_crf, pamr  # noqa: F401  (they register themselves)
from clipapro.refiners.registry import (
    RefinerSpec,
    get_refiner,
    list_refiners,
    refiner_defaults,
    register_refiner,
)

#: The method ``method="auto"`` runs (chosen on the mean over every set of the quality study).
DEFAULT_METHOD = "geo-crf"

__all__ = ["DEFAULT_METHOD", "RefinerSpec", "get_refiner", "list_refiners", "make_refiner", "refine",
           "refiner_defaults", "register_refiner"]


@register_refiner("none")
def _none(image: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """The coarse probabilities unchanged."""
    return probs


def refine(image, probs, *, method: str = "auto", logits: bool = False, **options):
    """Refine coarse class probabilities with the image they belong to.

    Args:
        image: uint8 (H, W, 3) or (B, H, W, 3) photo, or float (3, H, W) / (B, 3, H, W) in [0, 1];
            numpy array, tensor or PIL image.
        probs: (K, H, W) or (B, K, H, W) class probabilities summing to one along K (numpy or
            tensor), or logits / unnormalised scores with ``logits=True`` (softmax over K first).
        method: ``"auto"`` (:data:`DEFAULT_METHOD`) or a name from :func:`list_refiners`.
        options: keyword options of the method (see :func:`refiner_defaults`), e.g. ``w_tree=5``;
            ``tree=`` a prebuilt :func:`clipapro.kruskal_tree` of the image for methods that accept one.

    Returns:
        Refined probabilities, same shape as ``probs``, float32, summing to one along K; a numpy
        array when ``probs`` is one, else a tensor on ``probs``' device.

    Example:
        >>> img = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        >>> p = torch.softmax(torch.randn(4, 24, 32), 0)
        >>> refine(img, p).shape
        torch.Size([4, 24, 32])
    """
    spec = get_refiner(method)
    spec.check_options(options)
    spec.check_available()
    img = image_to_tensor(image)
    p, squeeze = probs_to_tensor(probs, logits=bool(logits))
    if img.shape[-2:] != p.shape[-2:]:
        raise ValueError(f"probs has H x W = {tuple(p.shape[-2:])} but image has {tuple(img.shape[-2:])}")
    if img.shape[0] != p.shape[0]:
        raise ValueError(f"probs has batch {p.shape[0]} but image has batch {img.shape[0]}")
    out = spec.fn(img, p, **options).to(torch.float32)
    out = out[0] if squeeze else out
    if isinstance(probs, np.ndarray):
        return out.numpy()
    return out.to(probs.device)


def make_refiner(method: str = "auto", **options):
    """``fn(image, probs) -> probs``: :func:`refine` with ``method`` and ``options`` bound, checked now
    (unknown method or option, missing optional package), for jobs that refine many images.

    Example:
        >>> fn = make_refiner("apro", iterations=5)
        >>> fn(torch.rand(1, 3, 8, 8), torch.softmax(torch.randn(1, 3, 8, 8), 1)).shape
        torch.Size([1, 3, 8, 8])
    """
    spec = get_refiner(method)
    spec.check_options(options)
    spec.check_available()

    def fn(image, probs):
        return refine(image, probs, method=method, **options)

    return fn
