"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, "Single-Stage Semantic Segmentation from
Image Labels", CVPR 2020, Sec. 3.3), the post-processing of the training-free CLIP segmenters.

For each pixel i and each neighbour j on the 3 x 3 rings dilated by ``dilations`` (centre excluded):

    k(i, j) = -mean_c |I_i,c - I_j,c| / (0.1 * sigma_i,c),   alpha(i, .) = softmax_j k(i, j)

with sigma_i,c the standard deviation of channel c over all sampled positions around i (centres
included, one set per dilation). The mask is then averaged ``steps`` times: q_i <- sum_j alpha_ij q_j.
Borders are replicated. NACLIP (``pamr_steps=10, pamr_stride=(8, 16)`` in its segmentor) and SCLIP
use 10 steps with dilations 8 and 16; the paper's own model uses dilations 1, 2, 4, 8, 12, 24.
"""

from __future__ import annotations

import torch

from clipapro._validate import check_int
from clipapro.refiners._shift import pad_replicate, ring_offsets, shifted
from clipapro.refiners.registry import register_refiner


def pamr_affinity(image: torch.Tensor, dilations) -> tuple[torch.Tensor, list[tuple[int, int]], int]:
    """(B, 3, H, W) image -> affinities (B, M, H, W) over M = 8 * len(dilations) neighbours."""
    h, w = image.shape[-2:]
    pad = max(dilations)
    padded = pad_replicate(image, pad)
    offsets = ring_offsets(dilations)
    nbrs = torch.stack([shifted(padded, pad, dy, dx, h, w) for dy, dx in offsets], 2)  # (B, C, M, H, W)
    # sigma over the sampled window of every dilation, the centre counted once per dilation
    window = torch.cat([nbrs] + [image.unsqueeze(2)] * len(dilations), 2)
    sigma = window.std(2, keepdim=True) if window.shape[2] > 1 else torch.zeros_like(image).unsqueeze(2)
    k = -(nbrs - image.unsqueeze(2)).abs() / (1e-8 + 0.1 * sigma)
    return torch.softmax(k.mean(1), 1), offsets, pad


@register_refiner("pamr")
@torch.no_grad()
def pamr_propagate(image: torch.Tensor, values: torch.Tensor, *, steps: int = 10, dilations=(8, 16)) -> torch.Tensor:
    """``steps`` rounds of PAMR averaging of any (B, C, H, W) values guided by a (B, 3, H, W) image,
    without renormalising: NACLIP applies it to cosines, guided by its normalised input (``naclip.py``).

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> pamr_propagate(img, torch.ones(1, 2, 16, 16)).allclose(torch.ones(1, 2, 16, 16))
        True
    """
    steps = check_int(steps, "steps", min_value=0)
    dilations = tuple(check_int(d, "dilations", min_value=1) for d in dilations)
    if not dilations:
        raise ValueError("dilations must not be empty")
    h, w = image.shape[-2:]
    if values.shape[-2:] != (h, w):
        raise ValueError(f"values {tuple(values.shape)} and image {tuple(image.shape)} differ in size")
    alpha, offsets, pad = pamr_affinity(image, dilations)
    q = values
    for _ in range(steps):
        padded = pad_replicate(q, pad)
        nxt = torch.zeros_like(q)
        for m, (dy, dx) in enumerate(offsets):
            nxt.addcmul_(alpha[:, m:m + 1], shifted(padded, pad, dy, dx, h, w))
        q = nxt
    return q


@torch.no_grad()
def pamr(image: torch.Tensor, probs: torch.Tensor, *, steps: int = 10, dilations=(8, 16)) -> torch.Tensor:
    """PAMR with NACLIP/SCLIP's settings by default (10 steps, dilations 8 and 16): (B, 3, H, W) image in
    [0, 1], (B, K, H, W) probabilities -> refined (B, K, H, W).

    Example:
        >>> img = torch.rand(1, 3, 32, 32)
        >>> pamr(img, torch.softmax(torch.randn(1, 4, 32, 32), 1)).shape
        torch.Size([1, 4, 32, 32])
    """
    q = pamr_propagate(image, probs, steps=steps, dilations=dilations)
    return q / q.sum(1, keepdim=True).clamp_min(1e-12)
