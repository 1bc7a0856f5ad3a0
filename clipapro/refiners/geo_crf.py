"""geo-crf: region decisions on a small grid, class presence, then a full-resolution decision with
exact minimax-geodesic (tree) messages of the image.

Four stages, one image at a time:

0. **Candidates and calibration**: classes that never win a coherent patch of the input's argmax
   (box-averaged on the small grid) are dropped before anything else and the input is renormalised
   over the rest; each remaining class is divided by its own image maximum (then renormalised), so a
   weak object competes with a confident background and K = 171 inputs, whose probabilities are
   spread thin over many classes, speak as loud as K = 21 ones.
1. **Regions** (grid ``scale`` times smaller, area averages of image and probabilities): mean field
   with exact all-pairs tree messages and a local colour kernel, as ``crf-tree``,
   ``q <- softmax(log p + w_tree * Tree(q) + w_local * Local(q))``. Here colour-coherent regions
   vote, so scattered mistakes of the coarse map lose to the region's majority.
2. **Presence**: a class that wins less than ``presence`` of the small grid has no coherent support
   (unless the input is near one-hot sure of it somewhere, see ``confident``); it is removed (each
   speck of an absent class would cost a whole class in mIoU) and the remaining classes are
   renormalised. Everything after this runs on the surviving classes only, which keeps
   K = 150 / 171 cheap.
3. **Full resolution**: ``r <- softmax(log p + w_region * up(M) + w_full * Tree_full(r))`` for
   ``full_iterations`` rounds, M the last region message (bilinearly upsampled), ``Tree_full`` the
   row-normalised, self-excluded tree filter of r on the full-size image's minimum spanning tree
   (bandwidth ``zeta_full``): the final decision follows the image's own edges, pixel by pixel, and
   thin parts connected along the tree keep their evidence. An optional local colour pass
   (``lp_iterations`` of :func:`clipapro.local_filter`) smooths the last label edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipapro._validate import check_int, check_positive, check_tensor
from clipapro.propagation import kruskal_tree, local_filter, tree_filter
from clipapro.refiners._shift import LocalKernel
from clipapro.refiners.registry import register_refiner

__all__ = ["geo_crf"]

_DILATIONS = (1, 2, 4)


@register_refiner("geo-crf")
@torch.no_grad()
def geo_crf(image: torch.Tensor, probs: torch.Tensor, *, scale: int = 4, candidates: float = 0.003,
            candidate_window: int = 5, calibrate: bool = True, zeta: float = 0.03, w_tree: float = 10.0,
            w_local: float = 30.0, zeta_local: float = 0.15, iterations: int = 5, presence: float = 0.01,
            confident: float = 0.6, confident_ratio: float = 15.0, confident_presence: float = 0.001,
            w_region: float = 1.0, zeta_full: float = 0.02, w_full: float = 4.0, full_iterations: int = 2,
            lp_iterations: int = 3, zeta_lp: float = 0.1, eps: float = 1e-4) -> torch.Tensor:
    """Candidates, calibration, region mean field, class presence and a full-resolution tree decision.
    Shapes: image (B, 3, H, W) RGB in [0, 1], probs (B, K, H, W) summing to one along K (float32 or
    float64, same dtype); returns (B, K, H, W) probabilities (0 on the classes removed).

    Args:
        scale: the region stage runs on a grid ``scale`` times smaller (>= 1).
        candidates, candidate_window: only classes that win at least ``candidates`` of the input's
            argmax on the small grid, after a ``candidate_window`` x ``candidate_window`` box average
            there, take part; the input is renormalised over them (0: all K classes).
        calibrate: divide each remaining class by its own maximum over the image before
            renormalising, so an object the input is consistently but weakly sure of competes with a
            confident background on equal terms (as class activation maps are normalised per class).
        zeta, w_tree, w_local, zeta_local, iterations: region stage: tree bandwidth on the RGB
            scale, Potts weights of the tree and local messages (log-probability units), local colour
            bandwidth, mean-field rounds (0: no region stage, no presence pruning).
        presence: a class must win at least this fraction of the small grid to survive (0 keeps all;
            the most frequent winner always survives).
        confident, confident_ratio, confident_presence: a class that wins at least one cell of the
            small grid also survives where the (area-averaged) input gives it probability at least
            ``confident`` and at least ``confident_ratio`` times the runner-up on at least
            ``confident_presence`` of the grid: small objects of a confident, near one-hot input (a
            segmenter's label map) are kept, while clumps of spurious classes (confident but with a
            close runner-up) still go (``confident_presence`` 0: off).
        w_region: weight of the region message in the full-resolution unary.
        zeta_full, w_full, full_iterations: full-resolution tree bandwidth, Potts weight and rounds.
        lp_iterations, zeta_lp: final local colour pass (5 x 5 kernel; 0: none).
        eps: probability floor of the unary ``log(max(p, eps))``.

    Example:
        >>> img = torch.rand(1, 3, 32, 32)
        >>> geo_crf(img, torch.softmax(torch.randn(1, 4, 32, 32), 1)).shape
        torch.Size([1, 4, 32, 32])
    """
    check_tensor(image, "image", ndim=4, floating=True)
    check_tensor(probs, "probs", ndim=4, floating=True)
    if image.shape[0] != probs.shape[0] or image.shape[-2:] != probs.shape[-2:] or image.shape[1] != 3:
        raise ValueError(f"image must be (B, 3, H, W) matching probs (B, K, H, W) = {tuple(probs.shape)}, "
                         f"got {tuple(image.shape)}")
    opts = dict(
        scale=check_int(scale, "scale", min_value=1), zeta=check_positive(zeta, "zeta"),
        w_tree=check_positive(w_tree, "w_tree", allow_zero=True),
        w_local=check_positive(w_local, "w_local", allow_zero=True),
        zeta_local=check_positive(zeta_local, "zeta_local"),
        iterations=check_int(iterations, "iterations", min_value=0),
        presence=_fraction(presence, "presence"), confident=_fraction(confident, "confident"),
        confident_ratio=check_positive(confident_ratio, "confident_ratio", allow_zero=True),
        confident_presence=_fraction(confident_presence, "confident_presence"),
        w_region=check_positive(w_region, "w_region", allow_zero=True),
        zeta_full=check_positive(zeta_full, "zeta_full"), w_full=check_positive(w_full, "w_full", allow_zero=True),
        full_iterations=check_int(full_iterations, "full_iterations", min_value=0),
        lp_iterations=check_int(lp_iterations, "lp_iterations", min_value=0),
        zeta_lp=check_positive(zeta_lp, "zeta_lp"), candidates=_fraction(candidates, "candidates"),
        candidate_window=check_int(candidate_window, "candidate_window", min_value=1),
        calibrate=_check_bool(calibrate, "calibrate"), eps=_fraction(eps, "eps", positive=True))
    out = torch.zeros_like(probs)
    for i in range(probs.shape[0]):
        idx, q = _refine_one(image[i:i + 1].to(probs.dtype).contiguous(), probs[i:i + 1], **opts)
        out[i, idx] = q[0]
    return out


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _fraction(value, name: str, positive: bool = False) -> float:
    value = check_positive(value, name, allow_zero=not positive)
    if value > 1:
        raise ValueError(f"{name} must be at most 1, got {value!r}")
    return value


def _up(x: torch.Tensor, size) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear",
                                                                      align_corners=False)


def _region_stage(g, p, scale, zeta, w_tree, w_local, zeta_local, iterations, eps):
    """Mean field on the small grid: (1, K, h, w) marginals and the last message (log units)."""
    small = _small_size(tuple(p.shape[-2:]), scale)
    g_s = F.adaptive_avg_pool2d(g, small).contiguous()
    q = F.adaptive_avg_pool2d(p, small).contiguous()
    unary = torch.log(q.clamp_min(eps))
    kt = kruskal_tree(g_s) if w_tree > 0 else None
    root = None
    if kt is not None:  # symmetric normalisation D^-1/2 A D^-1/2 of the self-excluded tree affinities
        root = tree_filter(torch.ones_like(q[:, :1]), kt, zeta=zeta, normalize=False,
                           include_self=False).clamp_min(1e-12).sqrt()
    local = LocalKernel(g_s, zeta_local, _DILATIONS) if w_local > 0 else None
    msg = torch.zeros_like(q)
    for _ in range(iterations):
        msg = torch.zeros_like(q)
        if kt is not None:
            msg.add_(tree_filter(q / root, kt, zeta=zeta, normalize=False, include_self=False).div_(root),
                     alpha=w_tree)
        if local is not None:
            msg.add_(local(q), alpha=w_local)
        q = torch.softmax(unary + msg, 1)
    return q, msg


def _small_size(size, scale):
    return max(1, -(-size[0] // scale)), max(1, -(-size[1] // scale))


def _candidate_classes(p, scale, threshold, window, sure):
    """Classes (K',) that win at least ``threshold`` of the input's argmax on the small grid after a
    ``window`` x ``window`` box average there, or that ``sure`` (a function of the small-grid input)
    keeps; the most frequent winner always stays."""
    ps = F.adaptive_avg_pool2d(p, _small_size(tuple(p.shape[-2:]), scale))
    box = F.avg_pool2d(ps, window, stride=1, padding=window // 2, count_include_pad=False) if window > 1 else ps
    win = box.argmax(1).view(-1)
    frac = torch.bincount(win, minlength=p.shape[1]).to(torch.float64) / win.numel()
    keep = (frac >= threshold) | sure(ps)
    keep[frac.argmax()] = True
    return keep.nonzero().squeeze(1)


def _sure_classes(ps, confident, ratio, fraction):
    """(K,) bool: classes the small-grid input ps (1, K, h, w) gives at least ``confident`` and at least
    ``ratio`` times the runner-up on at least ``fraction`` of the grid (never, when fraction is 0)."""
    if fraction <= 0 or ps.shape[1] < 2:
        return torch.zeros(ps.shape[1], dtype=torch.bool)
    second = ps.topk(2, dim=1).values[:, 1:2]
    sure = (ps >= confident) & (ps >= ratio * second)
    return sure.flatten(2).to(torch.float64).mean(2)[0] >= fraction


def _normalise(p):
    return p / p.sum(1, keepdim=True).clamp_min(1e-12)


def _refine_one(g, p, *, scale, zeta, w_tree, w_local, zeta_local, iterations, candidates, candidate_window, calibrate,
                presence, confident, confident_ratio, confident_presence, w_region, zeta_full, w_full, full_iterations,
                lp_iterations, zeta_lp, eps):
    """One image (1, 3, H, W), (1, K, H, W) -> (kept class indices (K',), marginals (1, K', H, W))."""
    k = p.shape[1]
    size = tuple(p.shape[-2:])
    idx = torch.arange(k)
    if k == 1:
        return idx, torch.ones_like(p)

    def sure(ps):
        return _sure_classes(ps, confident, confident_ratio, confident_presence)

    if candidates > 0:
        idx = _candidate_classes(p, scale, candidates, candidate_window, sure)
        p = _normalise(p[:, idx])
    if calibrate and len(idx) > 1:  # each class over its own maximum: a weak class speaks as loud as a strong one
        p = _normalise(p / p.amax((2, 3), keepdim=True).clamp_min(1e-12))
    msg = None
    if iterations > 0 and len(idx) > 1:
        q, msg = _region_stage(g, p, scale, zeta, w_tree, w_local, zeta_local, iterations, eps)
        if presence > 0:
            n = len(idx)
            wins = torch.bincount(q.argmax(1).view(-1), minlength=n).to(torch.float64) / q[0, 0].numel()
            keep = wins >= presence
            # a small class the input is sure of (a hard label map) survives if it wins a cell
            keep |= sure(F.adaptive_avg_pool2d(p, tuple(q.shape[-2:]))) & (wins > 0)
            keep[wins.argmax()] = True
            sel = keep.nonzero().squeeze(1)
            idx, p, msg = idx[sel], _normalise(p[:, sel]), msg[:, sel]
    if len(idx) == 1:
        return idx, torch.ones_like(p)
    unary = torch.log(p.clamp_min(eps))
    if msg is not None and w_region > 0:
        unary = unary.add_(_up(msg, size), alpha=w_region)
    r = torch.softmax(unary, 1)
    if full_iterations > 0 and w_full > 0:
        kt = kruskal_tree(g)
        mass = tree_filter(torch.ones_like(r[:, :1]), kt, zeta=zeta_full, normalize=False,
                           include_self=False).clamp_min(1e-12)
        for _ in range(full_iterations):
            tmsg = tree_filter(r, kt, zeta=zeta_full, normalize=False, include_self=False).div_(mass)
            r = torch.softmax(unary + w_full * tmsg, 1)
    if lp_iterations > 0:
        r = _normalise(local_filter(r, g, kernel_size=5, zeta=zeta_lp, iterations=lp_iterations))
    return idx, r
