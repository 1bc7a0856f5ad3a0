"""Coarse-prediction noise models of the refinement study (``scripts/refine_quality.py``).

Each model turns a ground-truth label map (H, W) (void = 255 allowed) into coarse class
probabilities (K, H, W) float32 summing to one, the way a CLIP dense predictor or a segmentation
network gets things wrong. Everything is seeded by the ``numpy.random.Generator`` passed in.

``iid``       logits = 4 x class fraction per 16-px patch + N(0, 1.5) per patch and class (every class
              noisy), upsampled bilinearly: the ``p16`` model of the issue.
``confuse``   spatially correlated errors: per-class smooth noise fields (Gaussian-blurred, sigma 24 px,
              amplitude 1.5) and, in smooth random regions (~1/3 of the image), 80 % of each class's
              evidence moved to a fixed random partner class (cat -> dog), on the 16-px patch grid.
``spurious``  i.i.d. patch noise N(0, 1) plus 3 classes absent from the photo, each scoring +5 in
              a few clumps (smooth blobs covering ~8 % of the patches).
``weak``      weak objects: every class but the background (the set's background class when the
              photo has it, else the photo's largest class) at gain 1.6 instead of 4, the background
              +1 everywhere, i.i.d. patch noise N(0, 1): objects, small ones first, lose to it.
``network``   a hard label map as a segmenter outputs it: thin parts lost (per-class morphological
              opening with a disk of radius 5, removed pixels take the nearest kept label), then
              boundaries displaced by a smooth random warp (each axis a Gaussian-blurred field,
              sigma 32 px, std 8 px: displacements of 4-16 px), then softened exactly as pydensecrf's
              ``unary_from_labels(gt_prob=0.7, zero_unsure=False)``: 0.7 on the label, 0.3/(K-1)
              on every other class.

Void pixels take the label of the nearest labelled pixel before any model runs (a simulated
predictor must say something there); they are not scored.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

PATCH = 16
GT_PROB = 0.7

__all__ = ["GT_PROB", "NOISE_MODELS", "PATCH", "coarse_probs", "fill_void", "patch_fractions"]


def fill_void(gt: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """(H, W) labels with every ``ignore_index`` pixel given the label of its nearest labelled pixel."""
    void = gt == ignore_index
    if not void.any():
        return gt.astype(np.int64)
    if void.all():
        return np.zeros(gt.shape, np.int64)
    idx = ndimage.distance_transform_edt(void, return_distances=False, return_indices=True)
    return gt[tuple(idx)].astype(np.int64)


def patch_fractions(lab: np.ndarray, k: int, patch: int = PATCH) -> np.ndarray:
    """Class fraction per ``patch`` x ``patch`` cell (K, ceil(H/patch), ceil(W/patch)) float32 (cells at
    the border hold fewer pixels)."""
    h, w = lab.shape
    gh, gw = -(-h // patch), -(-w // patch)
    cell = (np.arange(h)[:, None] // patch) * gw + np.arange(w)[None, :] // patch
    counts = np.bincount((cell * k + lab).ravel(), minlength=gh * gw * k).reshape(gh * gw, k)
    frac = counts / counts.sum(1, keepdims=True)
    return frac.T.reshape(k, gh, gw).astype(np.float32)


def _smooth(rng, shape, sigma) -> np.ndarray:
    """Gaussian-blurred white noise over the last two axes, rescaled to unit std per leading index."""
    z = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma),
                                mode="reflect")
    axes = (-2, -1)
    return ((z - z.mean(axes, keepdims=True)) / np.maximum(z.std(axes, keepdims=True), 1e-8)).astype(np.float32)


def _to_probs(logits: np.ndarray, hw) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(logits, np.float32))[None]
    x = F.interpolate(x, size=tuple(hw), mode="bilinear", align_corners=False)[0]
    return torch.softmax(x, 0)


def iid(lab, k, rng, *, background=None, gain=4.0, noise=1.5):
    frac = patch_fractions(lab, k)
    return _to_probs(gain * frac + noise * rng.standard_normal(frac.shape), lab.shape)


def confuse(lab, k, rng, *, background=None, gain=4.0, noise=0.6, moved=0.8, sigma_px=24.0):
    frac = patch_fractions(lab, k)
    sigma = sigma_px / PATCH
    partner = (np.arange(k) + rng.integers(1, max(k, 2), k)) % k  # a fixed partner != c per class
    if k == 1:
        partner[:] = 0
    region = _smooth(rng, (1, *frac.shape[1:]), sigma)[0] > 0.45  # about a third of the cells
    give = moved * frac * region
    conf = frac - give
    np.add.at(conf, partner, give)
    return _to_probs(gain * conf + noise * _smooth(rng, frac.shape, sigma), lab.shape)


def spurious(lab, k, rng, *, background=None, gain=4.0, noise=0.3, classes=2, score=5.0):
    frac = patch_fractions(lab, k)
    logits = gain * frac + noise * rng.standard_normal(frac.shape)
    absent = np.setdiff1d(np.arange(k), np.unique(lab))
    for c in rng.choice(absent, min(classes, len(absent)), replace=False) if len(absent) else []:
        blob = np.clip(_smooth(rng, (1, *frac.shape[1:]), 1.0)[0] - 1.4, 0, None)  # ~8 % of cells, in clumps
        logits[c] += score * np.minimum(blob * 4, 1.0)
    return _to_probs(logits, lab.shape)


def weak(lab, k, rng, *, background=None, gain=4.0, weak_gain=1.2, bias=1.0, noise=0.3):
    frac = patch_fractions(lab, k)
    present, area = np.unique(lab, return_counts=True)
    bg = background if background is not None and background in present else int(present[area.argmax()])
    g = np.full((k, 1, 1), weak_gain, np.float32)
    g[bg] = gain
    logits = g * frac + noise * rng.standard_normal(frac.shape)
    logits[bg] += bias
    return _to_probs(logits, lab.shape)


def _open_labels(lab: np.ndarray, radius: float) -> np.ndarray:
    """Per-class opening with a disk of ``radius``; pixels no class keeps take the nearest kept label."""
    kept = np.zeros(lab.shape, bool)
    for c in np.unique(lab):
        m = lab == c
        eroded = ndimage.distance_transform_edt(m) > radius
        if eroded.any():
            kept |= m & (ndimage.distance_transform_edt(~eroded) <= radius)
    if not kept.any():
        return lab
    idx = ndimage.distance_transform_edt(~kept, return_distances=False, return_indices=True)
    return lab[tuple(idx)]


def network_labels(lab, rng, *, open_radius=5.0, shift_std=8.0, sigma_px=32.0) -> np.ndarray:
    """The degraded hard label map (H, W) of the ``network`` model (thin parts lost, warped)."""
    h, w = lab.shape
    out = _open_labels(lab, open_radius)
    d = _smooth(rng, (2, h, w), sigma_px) * shift_std
    yy = np.clip(np.rint(np.arange(h)[:, None] + d[0]), 0, h - 1).astype(np.int64)
    xx = np.clip(np.rint(np.arange(w)[None, :] + d[1]), 0, w - 1).astype(np.int64)
    return out[yy, xx]


def unary_from_labels(lab: np.ndarray, k: int, gt_prob: float = GT_PROB) -> torch.Tensor:
    """pydensecrf's ``unary_from_labels(lab, k, gt_prob, zero_unsure=False)`` as probabilities
    (K, H, W): ``gt_prob`` on the label, (1 - gt_prob)/(K - 1) elsewhere (K = 1: all ones)."""
    if k == 1:
        return torch.ones((1, *lab.shape))
    p = torch.full((k, *lab.shape), (1.0 - gt_prob) / (k - 1), dtype=torch.float32)
    p.scatter_(0, torch.from_numpy(lab.astype(np.int64))[None], gt_prob)
    return p


def network(lab, k, rng, *, background=None):
    return unary_from_labels(network_labels(lab, rng), k)


#: name -> fn(labels (H, W) without void, K, rng, *, background) -> probs (K, H, W)
NOISE_MODELS = {"iid": iid, "confuse": confuse, "spurious": spurious, "weak": weak, "network": network}


def coarse_probs(gt: np.ndarray, num_classes: int, model: str, rng: np.random.Generator, *,
                 background: int | None = None, ignore_index: int = 255) -> torch.Tensor:
    """Coarse probabilities (K, H, W) float32 of noise model ``model`` for ground truth (H, W)."""
    if model not in NOISE_MODELS:
        raise ValueError(f"unknown noise model {model!r}: use one of {sorted(NOISE_MODELS)}")
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"gt must be (H, W), got shape {gt.shape}")
    lab = fill_void(gt, ignore_index)
    if lab.size and lab.max() >= num_classes:
        raise ValueError(f"gt holds label {int(lab.max())} >= num_classes {num_classes}")
    return NOISE_MODELS[model](lab, int(num_classes), rng, background=background).to(torch.float32)
