"""crf-tree: a mean-field CRF whose pairwise messages are exact all-pairs tree affinities (plus an
optional local colour kernel), weighed against the coarse prediction as a unary.

    q <- softmax_K( log p + w_tree * Tree(q) + w_local * Local(q) )        (Potts compatibility)

``Tree(q)_i = sum_{j != i} exp(-m(i,j)/zeta^2) q_j / norm_i`` over ALL pixels j, m(i,j) the largest
guide distance on the minimum-spanning-tree path (``clipapro.tree_filter`` with ``normalize=False,
include_self=False``, one O(N log N) sweep per iteration on a tree built once). Unlike APro, which
only averages p, the unary keeps confident evidence while the Potts messages let large, colour-
coherent regions vote away scattered mistakes, as DenseCRF's wide bilateral kernel does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipapro._validate import check_choice, check_int, check_positive
from clipapro.propagation import kruskal_tree, tree_filter
from clipapro.refiners._shift import LocalKernel
from clipapro.refiners.registry import register_refiner


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) sRGB in [0, 1] -> CIE Lab (D65) scaled by 1/100, so distances compare to RGB's."""
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = rgb.new_tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
    xyz = torch.einsum("fc,bchw->bfhw", m, lin) / rgb.new_tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    lab = torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return lab / 100


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


@register_refiner("crf-tree")
@torch.no_grad()
def crf_tree(image: torch.Tensor, probs: torch.Tensor, *, zeta=0.03, w_tree: float = 10.0, w_local: float = 10.0,
             zeta_local: float = 0.15, local_dilations=(1, 2, 4), iterations: int = 5, guide: str = "rgb",
             norm: str = "sym", suppress: float = 0.0, eps: float = 1e-4, scale: int = 8,
             lowres: bool = True) -> torch.Tensor:
    """Mean-field refinement with exact tree messages. Shapes: image (B, 3, H, W) in [0, 1], probs
    (B, K, H, W) summing to one along K; returns (B, K, H, W) marginals.

    Args:
        zeta: tree bandwidth on the guide scale, or a tuple of bandwidths (multi-scale: their
            messages are averaged).
        w_tree, w_local: Potts weights of the tree and local messages (log-probability units).
        zeta_local, local_dilations: colour bandwidth and ring dilations of the local kernel.
        iterations: mean-field iterations (the tree is built once for all of them).
        guide: ``"rgb"`` or ``"lab"`` (CIE Lab / 100).
        norm: message normalisation: ``"row"`` (divide by the affinity mass of pixel i),
            ``"sym"`` (D^-1/2 A D^-1/2, DenseCRF's default) or ``"none"``.
        suppress: classes whose peak probability stays below this are removed before refinement.
        eps: probability floor of the unary ``log(max(p, eps))``.
        scale: the tree runs on a grid downsampled by this factor (area averages of the guide and of
            q, messages upsampled bilinearly): scale^2 times cheaper, and the averaged guide is less
            textured, so colour-coherent regions connect; the unary and local kernel stay full-size.
        lowres: with ``scale > 1``, run the mean-field iterations (tree and local messages) on the small
            grid too and finish with one full-size step; False iterates at full size.

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> crf_tree(img, torch.softmax(torch.randn(1, 3, 16, 16), 1)).shape
        torch.Size([1, 3, 16, 16])
    """
    zetas = tuple(check_positive(z, "zeta") for z in _as_tuple(zeta))
    w_tree = check_positive(w_tree, "w_tree", allow_zero=True)
    w_local = check_positive(w_local, "w_local", allow_zero=True)
    iterations = check_int(iterations, "iterations", min_value=0)
    check_choice(guide, "guide", {"rgb", "lab"})
    check_choice(norm, "norm", {"row", "sym", "none"})
    suppress = check_positive(suppress, "suppress", allow_zero=True)
    eps = check_positive(eps, "eps")
    scale = check_int(scale, "scale", min_value=1)
    peak = probs.amax(dim=(2, 3))
    keep = peak >= suppress  # (B, K): classes that are ever likely enough
    keep.scatter_(1, peak.argmax(1, keepdim=True), True)  # never drop every class
    out = torch.zeros_like(probs)
    for i in range(probs.shape[0]):
        if bool(keep[i].all()):  # nothing suppressed: no gather/scatter copies
            idx, p = slice(None), probs[i:i + 1]
        else:
            idx = keep[i].nonzero().squeeze(1)
            p = probs[i:i + 1, idx]
            p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
        if p.shape[1] > 1 and iterations > 0:
            p = _mean_field(image[i:i + 1], p, zetas, w_tree, w_local, zeta_local, local_dilations,
                            iterations, guide, norm, eps, scale, lowres)
        out[i, idx] = p[0]
    return out


def _down(x, scale, size):
    return x if scale == 1 else F.adaptive_avg_pool2d(x, size)


def _up(x, size):
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _mean_field(image, probs, zetas, w_tree, w_local, zeta_local, local_dilations, iterations, guide, norm, eps,
                scale, lowres):
    """One image (1, 3, H, W), its kept classes (1, K', H, W) -> marginals (1, K', H, W)."""
    feats = (rgb_to_lab(image) if guide == "lab" else image).to(probs.dtype).contiguous()
    size = tuple(probs.shape[-2:])
    small = (max(1, -(-size[0] // scale)), max(1, -(-size[1] // scale)))
    kt = kruskal_tree(_down(feats, scale, small).contiguous()) if w_tree > 0 else None
    masses = []
    if kt is not None:
        ones = probs.new_ones(1, 1, *small)
        masses = [tree_filter(ones, kt, zeta=z, normalize=False, include_self=False).clamp_min(1e-12)
                  for z in zetas]

    roots = [m.sqrt() for m in masses]

    def tree_message(q_small):  # (1, K', h, w) on the tree's grid -> Potts message on that grid
        total = None
        for z, mass, root in zip(zetas, masses, roots, strict=True):
            if norm == "sym":
                msg = tree_filter(q_small / root, kt, zeta=z, normalize=False, include_self=False).div_(root)
            else:
                msg = tree_filter(q_small, kt, zeta=z, normalize=False, include_self=False)
                msg = msg.div_(mass) if norm == "row" else msg
            total = msg.mul_(w_tree / len(zetas)) if total is None else total.add_(msg, alpha=w_tree / len(zetas))
        return total

    unary = torch.log(probs.clamp_min(eps))
    if lowres and scale > 1:
        # mean field on the small grid (scale^2 cheaper), one full-size step with its last message
        f_small = _down(feats, scale, small).contiguous()
        local = LocalKernel(f_small, zeta_local, local_dilations) if w_local > 0 else None

        def message(q_small):
            msg = tree_message(q_small) if kt is not None else torch.zeros_like(q_small)
            return msg.add_(local(q_small), alpha=w_local) if local is not None else msg

        p_small = _down(probs, scale, small).contiguous()
        unary_small = torch.log(p_small.clamp_min(eps))
        q_small = p_small
        for _ in range(iterations - 1):
            q_small = torch.softmax(unary_small + message(q_small), 1)
        return torch.softmax(unary + _up(message(q_small), size), 1)
    local = LocalKernel(feats, zeta_local, local_dilations) if w_local > 0 else None
    q = probs
    for _ in range(iterations):
        logit = unary.clone()
        if kt is not None:
            logit.add_(_up(tree_message(_down(q, scale, small).contiguous()), size))
        if local is not None:
            logit.add_(local(q), alpha=w_local)
        q = torch.softmax(logit, 1)
    return q
