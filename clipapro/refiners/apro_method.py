"""The paper's APro as a refiner (Li et al., "Label-efficient Segmentation via Affinity Propagation",
NeurIPS 2023): the prediction is averaged by the global tree filter and the local colour kernel,
exactly :func:`clipapro.apro` with its defaults. It never weighs the prediction against the image
(no unary), so it smooths but cannot overturn confident mistakes."""

from __future__ import annotations

import torch

from clipapro.propagation import apro


@torch.no_grad()
def apro_refine(image: torch.Tensor, probs: torch.Tensor, **options) -> torch.Tensor:
    """(B, 3, H, W) image in [0, 1], (B, K, H, W) probabilities -> refined (B, K, H, W).

    ``options`` go to :func:`clipapro.apro` (``mode``, ``zeta_g``, ``zeta_label``, ``label_gp``,
    ``kernel_size``, ``dilation``, ``zeta_s``, ``iterations``); ``parts="global"|"local"`` keeps only
    one target of the parallel form (GP only / LP only).

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> apro_refine(img, torch.softmax(torch.randn(1, 3, 16, 16), 1)).shape
        torch.Size([1, 3, 16, 16])
    """
    parts = options.pop("parts", "both")
    if parts not in ("both", "global", "local"):
        raise ValueError(f"parts must be one of ['both', 'global', 'local'], got {parts!r}")
    if parts == "both":
        out = apro(probs, image, **options)
    elif parts == "global":  # LP with zero iterations is the identity: the cascade is GP alone
        options.update(mode="lp-gp", iterations=0)
        out = apro(probs, image, **options)
    else:
        options.pop("mode", None)
        out = apro(probs, image, mode="parallel", return_parts=True, **options).local
    out = out.clamp_min(0)
    return out / out.sum(1, keepdim=True).clamp_min(1e-12)
