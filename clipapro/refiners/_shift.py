"""Neighbour shifts of (B, C, H, W) maps and the local colour kernel, shared by PAMR, crf-tree and geo-crf.

A shifted map holds at pixel (y, x) the value of pixel (y + dy, x + dx), with the border replicated
(PAMR's choice) so that every pixel has the same number of neighbours.
"""

from __future__ import annotations

import torch


def ring_offsets(dilations) -> list[tuple[int, int]]:
    """The 8 neighbours of a 3 x 3 kernel dilated by each ``d`` (centre excluded), in a fixed order."""
    out = []
    for d in dilations:
        out += [(dy * d, dx * d) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    return out


def pad_replicate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Replicate-pad H and W by ``pad`` (works for any size, unlike F.pad's reflect mode)."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    rows = torch.arange(-pad, h + pad, device=x.device).clamp_(0, h - 1)
    cols = torch.arange(-pad, w + pad, device=x.device).clamp_(0, w - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


def shifted(padded: torch.Tensor, pad: int, dy: int, dx: int, h: int, w: int) -> torch.Tensor:
    """View of the neighbour at offset (dy, dx) from a map padded by ``pad``."""
    return padded[..., pad + dy:pad + dy + h, pad + dx:pad + dx + w]


class LocalKernel:
    """Row-normalised Gaussian colour kernel over dilated 3 x 3 rings (centre excluded), weights
    computed once and reused by every mean-field iteration."""

    def __init__(self, guide: torch.Tensor, zeta: float, dilations):
        self.h, self.w = guide.shape[-2:]
        self.offsets = ring_offsets(dilations)
        self.pad = max(dilations)
        padded = pad_replicate(guide, self.pad)
        wts = torch.stack([((shifted(padded, self.pad, dy, dx, self.h, self.w) - guide) ** 2).sum(1)
                           for dy, dx in self.offsets], 1)
        wts = torch.exp(-wts / zeta**2)
        self.weights = wts / wts.sum(1, keepdim=True).clamp_min(1e-12)  # (B, M, H, W)

    def __call__(self, q: torch.Tensor) -> torch.Tensor:
        padded = pad_replicate(q, self.pad)
        out = torch.zeros_like(q)
        for m, (dy, dx) in enumerate(self.offsets):
            out.addcmul_(self.weights[:, m:m + 1], shifted(padded, self.pad, dy, dx, self.h, self.w))
        return out


__all__ = ["LocalKernel", "pad_replicate", "ring_offsets", "shifted"]
