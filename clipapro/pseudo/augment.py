"""Training augmentation for segmentation: random scale, pad, random crop, horizontal flip.

Randomness comes from a per-sample seed derived from (run seed, epoch, sample index), never from a
global or per-worker RNG: a sample is augmented the same way whatever the number of data-loader
workers or processes, and a resumed run replays exactly the crops of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from clipapro.data.base import IGNORE_INDEX

__all__ = ["random_scale_crop_flip", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch (a hash of the triple, stable across platforms).

    Example:
        >>> sample_seed(0, 0, 1) == sample_seed(0, 0, 1) != sample_seed(0, 1, 1)
        True
    """
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1, np.uint64)
    return int(state[0] >> 1)


def _tensor(x) -> torch.Tensor:
    """A tensor copy of an array or tensor (read-only numpy arrays cannot back a tensor)."""
    return x.clone() if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x, copy=True))


def _downscale_sparse(lab: torch.Tensor, size, ignore_index: int) -> torch.Tensor:
    """(H, W) sparse labels -> (h, w): each labelled pixel lands in the output pixel containing its
    centre; where several meet, the one last in row-major order wins (deterministic on the CPU).
    Where the scale grows along one axis, that axis is first resized by nearest sampling."""
    h, w = lab.shape
    nh, nw = size
    if nh > h or nw > w:  # mixed up/down scale (not produced by a uniform scale; kept correct anyway)
        lab = F.interpolate(lab[None, None].float(), size=(max(h, nh), max(w, nw)), mode="nearest")[0, 0].long()
        h, w = lab.shape
    ys, xs = torch.nonzero(lab != ignore_index, as_tuple=True)
    out = torch.full((nh, nw), ignore_index, dtype=torch.long)
    ty = ((ys.double() + 0.5) * nh / h).long().clamp_(max=nh - 1)
    tx = ((xs.double() + 0.5) * nw / w).long().clamp_(max=nw - 1)
    flat = out.view(-1)
    # a plain indexed assignment with repeated indices keeps an unspecified one; scatter_reduce "amax"
    # over the source order keeps the last source pixel of each target
    order = torch.arange(ys.numel(), dtype=torch.long)
    last = torch.full((nh * nw,), -1, dtype=torch.long).scatter_reduce_(0, ty * nw + tx, order, "amax")
    hit = last >= 0
    flat[hit] = lab[ys[last[hit]], xs[last[hit]]]
    return out


def random_scale_crop_flip(image, label, *, crop_size=(512, 512), scale_range=(0.5, 2.0),
                           flip: bool = True, seed: int = 0, ignore_index: int = IGNORE_INDEX, soft=None,
                           sparse: bool = False):
    """Augment one image and its label map (and optionally its soft labels, with the same geometry).

    Args:
        image: (H, W, 3) uint8 array or tensor.
        label: (H, W) integer label map (255 = ignore).
        crop_size: (h, w) of the output; smaller scaled images are padded (image 0, label ignore).
        scale_range: (min, max) of the uniform random scale factor.
        flip: random horizontal flip with probability 1/2.
        seed: per-sample seed (see :func:`sample_seed`).
        soft: optional (K, H, W) soft labels; resized bilinearly, zero on padding.
        sparse: the label map is sparse (scribbles, points; mostly ``ignore_index``): downscaling
            moves every labelled pixel to the output pixel that contains it instead of sampling the
            nearest one, so a one-pixel point or a thin stroke is not dropped. Same random draws.

    Returns:
        image (3, h, w) float32 in [0, 1] and label (h, w) int64; with ``soft``, also soft (K, h, w)
        float32.

    Example:
        >>> img = np.zeros((32, 48, 3), np.uint8); lab = np.ones((32, 48), np.int64)
        >>> x, y = random_scale_crop_flip(img, lab, crop_size=(24, 24), seed=3)
        >>> tuple(x.shape), tuple(y.shape)
        ((3, 24, 24), (24, 24))
    """
    gen = torch.Generator().manual_seed(int(seed))
    img = _tensor(image).permute(2, 0, 1).float().div_(255.0)
    lab = _tensor(label).long()
    if img.shape[-2:] != lab.shape:
        raise ValueError(f"image {tuple(img.shape[-2:])} and label {tuple(lab.shape)} sizes differ")
    lo, hi = scale_range
    scale = lo + (hi - lo) * float(torch.rand((), generator=gen))
    h, w = img.shape[-2:]
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if soft is not None:
        soft = torch.as_tensor(soft).float()
        if soft.dim() != 3 or soft.shape[-2:] != lab.shape:
            raise ValueError(f"soft labels {tuple(soft.shape)} must be (K, {h}, {w})")
    if (nh, nw) != (h, w):
        img = F.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
        if sparse and (nh < h or nw < w):
            lab = _downscale_sparse(lab, (nh, nw), ignore_index)
        else:
            lab = F.interpolate(lab[None, None].float(), size=(nh, nw), mode="nearest")[0, 0].long()
        if soft is not None:
            soft = F.interpolate(soft[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    ch, cw = crop_size
    ph, pw = max(ch - nh, 0), max(cw - nw, 0)
    if ph or pw:
        img = F.pad(img, (0, pw, 0, ph), value=0.0)
        lab = F.pad(lab, (0, pw, 0, ph), value=ignore_index)
        soft = None if soft is None else F.pad(soft, (0, pw, 0, ph), value=0.0)
    top = int(torch.randint(0, img.shape[1] - ch + 1, (), generator=gen))
    left = int(torch.randint(0, img.shape[2] - cw + 1, (), generator=gen))
    img = img[:, top:top + ch, left:left + cw]
    lab = lab[top:top + ch, left:left + cw]
    soft = None if soft is None else soft[:, top:top + ch, left:left + cw]
    if flip and float(torch.rand((), generator=gen)) < 0.5:
        img, lab = img.flip(-1), lab.flip(-1)
        soft = None if soft is None else soft.flip(-1)
    if soft is not None:
        return img.contiguous().clamp_(0.0, 1.0), lab.contiguous(), soft.contiguous()
    return img.contiguous().clamp_(0.0, 1.0), lab.contiguous()
