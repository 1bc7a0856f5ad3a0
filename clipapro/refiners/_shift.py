"""Neighbour shifts of (B, C, H, W) maps, shared by the local kernels (PAMR and the crf-tree local term).

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


__all__ = ["pad_replicate", "ring_offsets", "shifted"]
