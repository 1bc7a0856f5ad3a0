"""APro soft-label generation: global (tree) and local (kernel) affinity propagation of a prediction.

Following "Label-efficient Segmentation via Affinity Propagation" (Li et al., NeurIPS 2023): the
paper's Table 7 finds the *parallel* form best (GP and LP each make a target from the same
prediction: 38.4 AP, vs 36.8 for GP->LP and 37.7 for LP->GP), which is also what the authors' code
does; all three are available.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from clipapro._validate import (
    FLOAT_DTYPES,
    check_choice,
    check_int,
    check_positive,
    check_same_device,
    check_same_dtype,
    check_tensor,
)
from clipapro.propagation import _checks
from clipapro.propagation.functional import KruskalTree, kruskal_tree, local_filter, tree_filter

__all__ = ["AProTargets", "apro"]

class AProTargets(NamedTuple):
    """The two targets of the parallel form, each (B, K, H, W)."""

    global_: torch.Tensor
    local: torch.Tensor


@torch.no_grad()
def apro(probs: torch.Tensor, image: torch.Tensor, *, mode: str = "parallel", zeta_g: float = 0.01,
         zeta_label: float = 0.07, label_gp: bool = True, kernel_size: int = 5, dilation: int = 1,
         zeta_s: float = 0.15, iterations: int = 20, tree=None, return_parts: bool = False):
    """APro soft pseudo labels from a prediction and its image.

    Global target: GP of ``probs`` guided by ``image`` (tree built once), then optionally
    (``label_gp``) a second GP on the same tree guided by that result (``zeta_label``).
    Local target: LP of ``probs`` guided by ``image``.

    Args:
        probs: (B, K, H, W) probabilities (or any non-negative scores), float32/float64.
        image: (B, F, H, W) guide, same dtype and device (RGB in [0, 1] for the defaults).
        mode: ``"parallel"`` (default; both targets from ``probs``), ``"gp-lp"`` or ``"lp-gp"``.
        zeta_g: image-guided GP bandwidth. The paper's zetas belong to normalised images inside its
            detector; 0.01 was re-chosen for RGB in [0, 1] (README, "Refinement quality").
        zeta_label: bandwidth of the second, label-guided GP (paper/code value).
        kernel_size, dilation, zeta_s, iterations: LP window, dilation, colour bandwidth (paper/code
            value 0.15) and iterations.
        tree: optional prebuilt :class:`~clipapro.propagation.KruskalTree` of ``image``.
        return_parts: in parallel mode, return :class:`AProTargets` (global, local) instead of their
            mean.

    Returns:
        (B, K, H, W): the mean of the global and local targets (parallel), or the cascade's output;
        :class:`AProTargets` with ``return_parts=True``. No autograd graph.

    Example:
        >>> img = torch.rand(1, 3, 32, 32)
        >>> p = torch.softmax(torch.randn(1, 3, 32, 32), 1)
        >>> apro(p, img).shape
        torch.Size([1, 3, 32, 32])
    """
    check_tensor(probs, "probs", ndim=4, dtypes=FLOAT_DTYPES, finite=True)
    gmax = _checks.check_image(image, "image")
    check_same_dtype(probs, image, "probs", "image")
    check_same_device(probs, image, "probs", "image")
    if probs.shape[0] != image.shape[0] or probs.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"probs {tuple(probs.shape)} and image {tuple(image.shape)} must share batch and H x W")
    check_choice(mode, "mode", {"parallel", "gp-lp", "lp-gp"})
    # Checked here under apro's own names: the ops below would blame their own arguments.
    zeta_g = check_positive(zeta_g, "zeta_g")
    zeta_label = check_positive(zeta_label, "zeta_label")
    zeta_s = check_positive(zeta_s, "zeta_s")
    kernel_size = check_int(kernel_size, "kernel_size", min_value=1, odd=True)
    dilation = check_int(dilation, "dilation", min_value=1)
    iterations = check_int(iterations, "iterations", min_value=0, max_value=2**31 - 1)
    if tree is not None and not isinstance(tree, KruskalTree):
        raise TypeError(f"tree must be a KruskalTree (from kruskal_tree(image)) or None, got {type(tree).__name__}")
    if tree is None:  # the tree stores squared distances: refuse here, naming apro's argument
        _checks.check_distances_fit(gmax, image.shape[1], image.dtype, "image")
    kt = tree if tree is not None else kruskal_tree(image)

    def global_(x):
        g = tree_filter(x, kt, zeta=zeta_g)
        if label_gp:
            g = tree_filter(g, g, zeta=zeta_label, tree=kt.edges)
        return g

    def local_(x):
        return local_filter(x, image, kernel_size=kernel_size, dilation=dilation, zeta=zeta_s,
                            iterations=iterations)

    if mode == "gp-lp":
        return local_(global_(probs))
    if mode == "lp-gp":
        return global_(local_(probs))
    parts = AProTargets(global_(probs), local_(probs))
    return parts if return_parts else 0.5 * (parts.global_ + parts.local)
