"""Affinity propagation ops (APro, NeurIPS 2023): functional API.

Shapes: B batch, C value channels, F guide channels, H x W pixels, N = H*W.
Every op validates its inputs (``TypeError``/``ValueError`` naming the argument), runs the compiled
core on CPU tensors (the pure-torch twin when the core is missing), and returns results on the input
device with no autograd graph: propagation produces targets, no gradient flows through it.

CUDA tensors: ``local_filter`` runs in torch on the GPU; ``grid_mst``/``tree_filter`` copy through
the CPU kernels and return on the input device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipapro import _ext
from clipapro._validate import (
    FLOAT_DTYPES,
    check_int,
    check_positive,
    check_same_device,
    check_same_dtype,
    check_tensor,
)
from clipapro.propagation import _twins

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
        height: (B, N-1), the weight of each merge node (a node is never lower than its children);
            the largest edge on the tree path between two pixels is the height of their lowest
            common ancestor.
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


def _check_guide(guide, name="guide") -> torch.Tensor:
    check_tensor(guide, name, ndim=4, dtypes=FLOAT_DTYPES, finite=True)
    return guide


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
        A :class:`KruskalTree` on the CPU (it is only consumed by the CPU kernels).

    Example:
        >>> g = torch.rand(1, 3, 8, 8)
        >>> kt = kruskal_tree(g)
        >>> kt.parent.shape, kt.edges.shape
        (torch.Size([1, 127]), torch.Size([1, 63, 2]))
    """
    _check_guide(guide)
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


def _check_values(values, guide, vname="values", gname="guide") -> None:
    check_tensor(values, vname, ndim=4, dtypes=FLOAT_DTYPES, finite=True)
    if isinstance(guide, KruskalTree):
        if values.shape[-2:] != guide.size:
            raise ValueError(f"{vname} has H x W = {tuple(values.shape[-2:])} but the tree was built for {guide.size}")
        if values.shape[0] != guide.parent.shape[0]:
            raise ValueError(f"{vname} has batch {values.shape[0]} but the tree has {guide.parent.shape[0]}")
        if values.dtype != guide.height.dtype:
            raise TypeError(f"{vname} ({values.dtype}) and the tree ({guide.height.dtype}) must have the same dtype")
        return
    _check_guide(guide, gname)
    check_same_dtype(values, guide, vname, gname)
    check_same_device(values, guide, vname, gname)
    if values.shape[0] != guide.shape[0] or values.shape[-2:] != guide.shape[-2:]:
        raise ValueError(f"{vname} {tuple(values.shape)} and {gname} {tuple(guide.shape)} must share batch and H x W")


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
        include_self: include j = i (weight 1). False gives the self-excluded message.

    Returns:
        (B, C, H, W) on the input device, no autograd graph.

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> probs = torch.softmax(torch.randn(1, 4, 16, 16), 1)
        >>> tree_filter(probs, img, zeta=0.05).shape
        torch.Size([1, 4, 16, 16])
    """
    _check_values(values, guide)
    zeta = check_positive(zeta, "zeta")
    if isinstance(guide, KruskalTree):
        if tree is not None:
            raise ValueError("tree must be None when guide is a KruskalTree")
        return _sweep(values, guide, zeta, normalize, include_self)
    b, c, h, w = values.shape
    edges = None if tree is None else _check_tree_edges(tree, guide)
    ext = _ext.get_ext()
    if ext is None:
        return _sweep(values, kruskal_tree(guide, tree), zeta, normalize, include_self)
    y = ext.tree_filter(_planar(values).numpy(), _planar(guide).numpy(), h, w,
                        None if edges is None else edges.numpy(), zeta, bool(normalize), bool(include_self),
                        _ext.num_threads(), _ext.band_pixels())
    return torch.from_numpy(y).view(b, c, h, w).to(values.device)


def _sweep(values, kt: KruskalTree, zeta, normalize, include_self) -> torch.Tensor:
    b, c, h, w = values.shape
    x = _planar(values)
    ext = _ext.get_ext()
    if ext is not None:
        y = ext.tree_sweep(x.numpy(), kt.parent.contiguous().numpy(), kt.height.contiguous().numpy(), zeta,
                           bool(normalize), bool(include_self), _ext.num_threads())
        y = torch.from_numpy(y)
    else:
        y = torch.stack([
            _twins.tree_sweep(x[i].t(), kt.parent[i].long(), kt.height[i], zeta, normalize=normalize,
                              include_self=include_self).t()
            for i in range(b)
        ])
    return y.view(b, c, h, w).to(values.device)


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
        kernel_size: odd k >= 1. dilation: >= 1. zeta: > 0. iterations: >= 0.

    Returns:
        (B, C, H, W) on the input device, no autograd graph. CUDA inputs run in torch on the GPU.

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> local_filter(torch.rand(1, 2, 16, 16), img, kernel_size=3, iterations=5).shape
        torch.Size([1, 2, 16, 16])
    """
    _check_values(values, image, "values", "image")
    kernel_size = check_int(kernel_size, "kernel_size", min_value=1, odd=True)
    dilation = check_int(dilation, "dilation", min_value=1)
    iterations = check_int(iterations, "iterations", min_value=0)
    zeta = check_positive(zeta, "zeta")
    ext = _ext.get_ext()
    if values.device.type != "cpu" or ext is None:
        return _twins.local_filter(values.detach(), image.detach(), kernel_size, dilation, zeta, iterations)
    x = values.detach().contiguous()
    g = image.detach().contiguous()
    y = ext.local_filter(x.numpy(), g.numpy(), kernel_size, dilation, zeta, iterations, _ext.num_threads())
    return torch.from_numpy(y)
