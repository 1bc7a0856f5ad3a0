"""Affinity propagation ops (APro, NeurIPS 2023): functional API.

Shapes: B batch, C value channels, F guide channels, H x W pixels, N = H*W.
Every op validates its inputs (``TypeError``/``ValueError`` naming the argument), runs the compiled
core on CPU tensors (the pure-torch twin when the core is missing), and returns results on the input
device with no autograd graph: propagation produces targets, no gradient flows through it.

CUDA tensors: ``local_filter`` runs in torch on the GPU; ``grid_mst``/``tree_filter`` copy through
the CPU kernels and return on the input device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from clipapro import _ext
from clipapro._validate import check_int, check_positive, check_same_device, check_same_dtype, check_tensor
from clipapro.propagation import _checks, _twins

__all__ = ["KruskalTree", "grid_mst", "kruskal_tree", "local_filter", "tree_filter"]


@dataclass(frozen=True)
class KruskalTree:
    """Kruskal reconstruction trees of a batch of pixel grids, reusable across ``tree_filter`` calls.

    Attributes:
        parent: (B, 2N-1) int32, parent of each node: pixels are nodes 0..N-1, the N-1 merges are
            nodes N..2N-2 numbered breadth-first from the root (node N, parent -1), so parents
            precede children and the sweeps run nearly sequentially in memory. A tree built in
            bands (two threads, or a large image) numbers the merges that join bands first and
            then each band's own merges breadth-first: the same tree, in an order that keeps a
            band's nodes together.
        height: (B, N-1), the weight of each merge node (finite, >= 0; a node is never lower than
            its children); the largest edge on the tree path between two pixels is the height of
            their lowest common ancestor. :func:`tree_filter` checks these invariants (O(N)) and
            raises ``ValueError`` naming ``guide`` on a tree that breaks them.
        edges: (B, N-1, 2) int64, the MST edges (flat pixel indices) in ascending weight order.
        size: (H, W).
    """

    parent: torch.Tensor
    height: torch.Tensor
    edges: torch.Tensor
    edge_weights: torch.Tensor
    size: tuple[int, int]

    @property
    def weights(self) -> torch.Tensor:
        """(B, N-1) MST edge weights in ascending order (aligned with ``edges``)."""
        return self.edge_weights



def _planar(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> contiguous (B, C, N) on the CPU (no copy when it already is)."""
    b, c, h, w = x.shape
    return x.detach().to("cpu").contiguous().view(b, c, h * w)


def _check_tree_edges(tree, guide: torch.Tensor) -> torch.Tensor:
    b, _, h, w = guide.shape
    check_tensor(tree, "tree", ndim=3, dtypes=(torch.int64, torch.int32), nonempty=False)
    if tuple(tree.shape) != (b, h * w - 1, 2):
        raise ValueError(f"tree must have shape (B, H*W-1, 2) = {(b, h * w - 1, 2)} for guide of shape "
                         f"{tuple(guide.shape)}, got {tuple(tree.shape)}")
    return tree.detach().to("cpu", torch.int64).contiguous()


def kruskal_tree(guide: torch.Tensor, tree: torch.Tensor | None = None) -> KruskalTree:
    """Build the Kruskal reconstruction tree of the 4-connected grid weighted by ``guide``.

    Args:
        guide: (B, F, H, W) float32/float64 features; edge weight = squared L2 distance.
        tree: optional (B, N-1, 2) spanning-tree edges to use instead of the grid's MST (weights
            are recomputed from ``guide``).

    Returns:
        A :class:`KruskalTree` on the CPU (it is only consumed by the CPU kernels). Its heights are
        squared guide distances in the guide's dtype: a guide whose squared distances overflow that
        dtype is refused (``ValueError``); scale it down, and zeta with it.

    Example:
        >>> g = torch.rand(1, 3, 8, 8)
        >>> kt = kruskal_tree(g)
        >>> kt.parent.shape, kt.edges.shape
        (torch.Size([1, 127]), torch.Size([1, 63, 2]))
    """
    return _kruskal_tree(guide, tree, "guide")


def _kruskal_tree(guide, tree, name: str) -> KruskalTree:
    gmax = _checks.check_image(guide, name)
    _checks.check_distances_fit(gmax, guide.shape[1], guide.dtype, name)
    b, f, h, w = guide.shape
    edges = None if tree is None else _check_tree_edges(tree, guide)
    g = _planar(guide)
    ext = _ext.get_ext()
    if ext is not None:
        parent, height, t_edges, t_w = ext.build_tree(
            g.numpy(), h, w, None if edges is None else edges.numpy(), _ext.num_threads(), _ext.band_pixels())
        return KruskalTree(torch.from_numpy(parent), torch.from_numpy(height), torch.from_numpy(t_edges),
                           torch.from_numpy(t_w), (h, w))
    parents, heights, tes, tws = [], [], [], []
    for i in range(b):
        cand = _twins.grid_edges(h, w) if edges is None else edges[i]
        if edges is not None:
            _twin_check_tree_edges(cand, h, w)
        wts = _twins.edge_weights(g[i].t(), cand)
        p, ht, te, tw = _twins.kruskal(h * w, cand, wts)
        if p.numel() > 1 and (ht.numel() != h * w - 1):
            raise ValueError("tree is not a spanning tree of the grid: it contains a cycle or misses pixels")
        parents.append(p.to(torch.int32))
        heights.append(ht)
        tes.append(te)
        tws.append(tw)
    return KruskalTree(torch.stack(parents), torch.stack(heights), torch.stack(tes), torch.stack(tws), (h, w))


def _twin_check_tree_edges(edges: torch.Tensor, h: int, w: int) -> None:
    n = h * w
    if edges.numel() and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"tree has an edge with a pixel index outside [0, {n})")
    lo, hi = edges.min(1).values, edges.max(1).values
    ok = ((hi - lo == 1) & (lo // w == hi // w)) | (hi - lo == w)
    if not bool(ok.all()):
        raise ValueError("tree has an edge between pixels that are not 4-neighbours in the grid")


@torch.no_grad()
def grid_mst(guide: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum spanning tree of the 4-connected pixel grid weighted by guide distances.

    Args:
        guide: (B, F, H, W) float32/float64; the weight of edge (i, j) is ``|f_i - f_j|^2``.

    Returns:
        ``edges`` (B, H*W-1, 2) int64 flat pixel indices and ``weights`` (B, H*W-1), in ascending
        weight order (ties broken by grid edge order), on the input device.

    Example:
        >>> edges, weights = grid_mst(torch.rand(2, 3, 4, 5))
        >>> edges.shape, weights.shape
        (torch.Size([2, 19, 2]), torch.Size([2, 19]))
    """
    kt = kruskal_tree(guide)
    return kt.edges.to(guide.device), kt.edge_weights.to(guide.device)


def _check_values(values, guide, vname="values", gname="guide") -> tuple[float, float | None]:
    """Checks values and their guide (a tensor or a KruskalTree); returns (max |values|, max |guide|
    or None for a tree)."""
    check_tensor(values, vname, ndim=4, dtypes=_checks.FLOAT_DTYPES)
    _checks.check_size(values, vname)
    if isinstance(guide, KruskalTree):
        _checks.check_kruskal_tree(guide, values, vname, gname)
        return _checks.finite_abs_max(values, vname), None
    check_tensor(guide, gname, ndim=4, dtypes=_checks.FLOAT_DTYPES)
    check_same_dtype(values, guide, vname, gname)
    check_same_device(values, guide, vname, gname)
    if values.shape[0] != guide.shape[0] or values.shape[-2:] != guide.shape[-2:]:
        raise ValueError(f"{vname} {tuple(values.shape)} and {gname} {tuple(guide.shape)} must share batch and H x W")
    vmax = _checks.finite_abs_max(values, vname)
    return vmax, _checks.check_image(guide, gname)


def _rescaled(values, vmax, guide, gmax, zeta, count):
    """Values, guide and zeta rescaled by powers of two into a safe range (see _checks), and the
    shift k that scales the result back (y * 2^k)."""
    if gmax is not None:
        s = _checks.guide_scale(gmax, guide.dtype)
        if s != 1.0:
            guide, zeta = guide * s, _checks.scaled_zeta(zeta, s)
    k = _checks.value_shift(vmax, count, values.dtype)
    if k:
        values = values * math.ldexp(1.0, -k)
    return values, guide, zeta, k


def _scaled_back(y: torch.Tensor, k: int, vname: str, vmax: float) -> torch.Tensor:
    if not k:
        return y
    y = y * math.ldexp(1.0, k)
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{vname} has values up to {vmax:.3g}: the unnormalised sums overflow "
                         f"{str(y.dtype).replace('torch.', '')}; use normalize=True, float64, or smaller values")
    return y


@torch.no_grad()
def tree_filter(values: torch.Tensor, guide, *, zeta: float, tree: torch.Tensor | None = None,
                normalize: bool = True, include_self: bool = True) -> torch.Tensor:
    """Exact global propagation (GP) over a minimum spanning tree of the pixel grid.

    ``y_i = sum_j exp(-m(i,j)/zeta^2) x_j / sum_j exp(-m(i,j)/zeta^2)`` over ALL pixels j, where
    ``m(i,j)`` is the largest edge weight (squared L2 guide distance) on the tree path i -> j.
    Computed in O(N log N) with one sort, one union-find pass and two sweeps for all channels.

    Args:
        values: (B, C, H, W) float32/float64 values to propagate (e.g. class probabilities).
        guide: (B, F, H, W) guide features of the same dtype (e.g. RGB in [0, 1]), or a
            :class:`KruskalTree` from :func:`kruskal_tree` to reuse a built tree.
        zeta: affinity bandwidth (> 0), on the scale of the guide.
        tree: optional (B, N-1, 2) spanning-tree edges (e.g. the image's MST from :func:`grid_mst`);
            its weights are recomputed from ``guide`` (APro's second, label-guided GP).
        normalize: divide by the sum of affinities (default). False returns the raw weighted sums.
        include_self: include j = i (weight 1). False gives the self-excluded message; where every
            affinity to the other pixels underflows (zeta tiny against the guide distances), its
            normalised value is 0.

    Affinities never turn NaN: a zeta so small that 1/zeta^2 overflows gives affinity 1 on ties
    (distance 0) and 0 elsewhere; guides and values near the limits of their dtype are rescaled by
    powers of two. Unnormalised sums that overflow the dtype raise ``ValueError``.

    Returns:
        (B, C, H, W) on the input device, no autograd graph.

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> probs = torch.softmax(torch.randn(1, 4, 16, 16), 1)
        >>> tree_filter(probs, img, zeta=0.05).shape
        torch.Size([1, 4, 16, 16])
    """
    vmax, gmax = _check_values(values, guide)
    zeta = check_positive(zeta, "zeta")
    if isinstance(guide, KruskalTree) and tree is not None:
        raise ValueError("tree must be None when guide is a KruskalTree")
    b, c, h, w = values.shape
    edges = None if tree is None else _check_tree_edges(tree, guide)
    x, g, z, k = _rescaled(values, vmax, None if gmax is None else guide, gmax, zeta, h * w)
    if isinstance(guide, KruskalTree):
        y = _sweep(x, guide, z, normalize, include_self)
    elif _ext.get_ext() is None:
        y = _sweep(x, _kruskal_tree(g, tree, "guide"), z, normalize, include_self)
    else:
        y = _ext.get_ext().tree_filter(_planar(x).numpy(), _planar(g).numpy(), h, w,
                                       None if edges is None else edges.numpy(), z, bool(normalize),
                                       bool(include_self), _ext.num_threads(), _ext.band_pixels())
        y = torch.from_numpy(y).view(b, c, h, w)
    return _scaled_back(y, k, "values", vmax).to(values.device)


def _sweep(values, kt: KruskalTree, zeta, normalize, include_self) -> torch.Tensor:
    b, c, h, w = values.shape
    x = _planar(values)
    ext = _ext.get_ext()
    parent, height = kt.parent.detach().cpu().contiguous(), kt.height.detach().cpu().contiguous()
    if ext is not None:
        y = ext.tree_sweep(x.numpy(), parent.numpy(), height.numpy(), zeta, bool(normalize), bool(include_self),
                           _ext.num_threads())
        return torch.from_numpy(y).view(b, c, h, w)
    ys = []
    for i in range(b):
        err = _checks.tree_structure_error(parent[i].long(), height[i], h * w)
        if err:
            raise ValueError(f"guide is not a valid KruskalTree (item {i}): {err}")
        ys.append(_twins.tree_sweep(x[i].t(), parent[i].long(), height[i], zeta, normalize=normalize,
                                    include_self=include_self).t())
    return torch.stack(ys).view(b, c, h, w)


@torch.no_grad()
def local_filter(values: torch.Tensor, image: torch.Tensor, *, kernel_size: int = 5, dilation: int = 1,
                 zeta: float = 0.15, iterations: int = 20) -> torch.Tensor:
    """Local propagation (LP): iterated, normalised Gaussian colour-kernel filtering.

    ``K(i,j) = exp(-|I_i - I_j|^2 / zeta^2)`` over the k x k (dilated) neighbourhood including i;
    ``y_i <- sum_j K(i,j) y_j / sum_j K(i,j)``, repeated ``iterations`` times. Neighbours outside the
    image are not used. Kernel weights are computed once per call. Memory O(N (k^2 + C)).

    Args:
        values: (B, C, H, W) float32/float64.
        image: (B, F, H, W) guide of the same dtype and device (e.g. RGB in [0, 1]).
        kernel_size: odd k >= 1. dilation: >= 1; a kernel reaching past the image uses the
            neighbours inside it (at most 2^29 pixels of reach). zeta: > 0 (as for
            :func:`tree_filter`, a tiny zeta averages only over ties). iterations: 0 to 2^31 - 1.

    Returns:
        (B, C, H, W) on the input device, no autograd graph. CUDA inputs run in torch on the GPU.

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> local_filter(torch.rand(1, 2, 16, 16), img, kernel_size=3, iterations=5).shape
        torch.Size([1, 2, 16, 16])
    """
    vmax, gmax = _check_values(values, image, "values", "image")
    kernel_size = check_int(kernel_size, "kernel_size", min_value=1, odd=True)
    dilation = check_int(dilation, "dilation", min_value=1)
    iterations = check_int(iterations, "iterations", min_value=0, max_value=2**31 - 1)
    zeta = check_positive(zeta, "zeta")
    _checks.check_kernel_reach(kernel_size, dilation)
    ext = _ext.get_ext()
    compiled = values.device.type == "cpu" and ext is not None
    images = min(values.shape[0], _ext.num_threads()) if compiled else values.shape[0]
    _checks.check_local_memory(values, kernel_size, dilation, images)
    # A weighted mean: sums stay below max |values| (the quarter of headroom absorbs rounding).
    x, g, z, k = _rescaled(values.detach(), vmax, image.detach(), gmax, zeta, 1)
    if not compiled:
        y = _twins.local_filter(x, g, kernel_size, dilation, z, iterations)
    else:
        y = torch.from_numpy(ext.local_filter(x.contiguous().numpy(), g.contiguous().numpy(), kernel_size, dilation,
                                              z, iterations, _ext.num_threads()))
    return _scaled_back(y, k, "values", vmax)
