"""The paper's APro as a refiner (Li et al., "Label-efficient Segmentation via Affinity Propagation",
NeurIPS 2023): the prediction is averaged by the global tree filter and the local colour kernel,
exactly :func:`clipapro.apro` with its defaults. It never weighs the prediction against the image
(no unary), so it smooths but cannot overturn confident mistakes. ``apro-gp`` / ``apro-lp`` keep one
of the two targets of the parallel form."""

from __future__ import annotations

import torch

from clipapro.propagation import apro
from clipapro.refiners.registry import register_refiner

__all__ = ["apro_gp_refine", "apro_lp_refine", "apro_refine"]


def _normalised(out: torch.Tensor) -> torch.Tensor:
    out = out.clamp_min(0)
    return out / out.sum(1, keepdim=True).clamp_min(1e-12)


@register_refiner("apro", accepts_tree=True, defaults_from=apro, exclude=("return_parts",))
@torch.no_grad()
def apro_refine(image: torch.Tensor, probs: torch.Tensor, **options) -> torch.Tensor:
    """The paper's APro (parallel GP + LP, no unary): (B, 3, H, W) image, (B, K, H, W) probs -> (B, K, H, W).

    ``options`` are those of :func:`clipapro.apro` (``mode``, ``zeta_g``, ``zeta_label``, ``label_gp``,
    ``kernel_size``, ``dilation``, ``zeta_s``, ``iterations``, ``tree``), with its defaults.

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> apro_refine(img, torch.softmax(torch.randn(1, 3, 16, 16), 1)).shape
        torch.Size([1, 3, 16, 16])
    """
    return _normalised(apro(probs, image, **options))


@register_refiner("apro-gp", accepts_tree=True, defaults_from=apro, exclude=("return_parts", "mode"))
@torch.no_grad()
def apro_gp_refine(image: torch.Tensor, probs: torch.Tensor, **options) -> torch.Tensor:
    """APro's global (tree) target alone; options as :func:`clipapro.apro` (its local ones unused).

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> apro_gp_refine(img, torch.softmax(torch.randn(1, 3, 16, 16), 1)).shape
        torch.Size([1, 3, 16, 16])
    """
    options.update(mode="lp-gp", iterations=0)  # LP with zero iterations is the identity: GP alone
    return _normalised(apro(probs, image, **options))


@register_refiner("apro-lp", defaults_from=apro, exclude=("return_parts", "mode", "tree"))
@torch.no_grad()
def apro_lp_refine(image: torch.Tensor, probs: torch.Tensor, **options) -> torch.Tensor:
    """APro's local (colour-kernel) target alone; options as :func:`clipapro.apro` (its global ones unused).

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> apro_lp_refine(img, torch.softmax(torch.randn(1, 3, 16, 16), 1)).shape
        torch.Size([1, 3, 16, 16])
    """
    return _normalised(apro(probs, image, mode="parallel", return_parts=True, **options).local)
