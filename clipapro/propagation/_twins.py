"""Pure-torch twins of the compiled propagation kernels.

They compute exactly what ``clipapro._C`` computes (same edge order, same stable sort, same
Kruskal reconstruction tree, same sweeps), so the compiled and twin results agree to rounding. The
twins are the fallback when the extension is missing and the reference for the GPU path of LP.
All tensors here are already validated and contiguous; shapes use N = H*W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def affinity(d: torch.Tensor, zeta: float) -> torch.Tensor:
    """exp(-d / zeta^2) of squared distances d >= 0, never NaN (as csrc/common/affinity.h): with
    1/zeta^2 a normal value of d's dtype, d * inv in that dtype; otherwise the exponent is
    (d / zeta) / zeta in float64 (0 on ties, inf past the range: affinities 1 and 0)."""
    zz = zeta * zeta
    inv = torch.tensor(1.0 / zz if zz > 0 else float("inf"), dtype=torch.float64).to(d.dtype)
    info = torch.finfo(d.dtype)
    if info.tiny <= float(inv) <= info.max:
        return torch.exp(-d * inv.to(d.device))
    return torch.exp(-(d.double() / zeta) / zeta).to(d.dtype)


def grid_edges(height: int, width: int, device=None) -> torch.Tensor:
    """All 4-connected grid edges, (E, 2) int64, in edge-id order: pixel by pixel (row-major), the
    edge to the right neighbour before the edge to the one below (id 2u and 2u+1 in the kernel).

    This order (and a stable sort) fixes the tie-breaking, identical to the compiled kernel.
    """
    n = height * width
    u = torch.arange(n, device=device)
    right = torch.stack([u, u + 1], 1)
    down = torch.stack([u, u + width], 1)
    pairs = torch.stack([right, down], 1).view(2 * n, 2)  # (2 per pixel, in id order)
    col, row = u % width, u // width
    keep = torch.stack([col + 1 < width, row + 1 < height], 1).view(2 * n)
    return pairs[keep]


def edge_weights(guide_nf: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Squared L2 guide distance per edge: guide (N, F), edges (E, 2) -> (E,)."""
    diff = guide_nf[edges[:, 0]] - guide_nf[edges[:, 1]]
    return (diff * diff).sum(1)


def kruskal(num_nodes: int, edges: torch.Tensor, weights: torch.Tensor):
    """Kruskal over candidate edges in ascending (stable) weight order.

    Returns ``(parent, height, tree_edges, tree_weights)``: ``parent`` (2N-1,) int64, the parent of
    every node of the reconstruction tree (leaves 0..N-1; internal nodes N..2N-2 numbered
    breadth-first from the root N, whose parent is -1, exactly as the compiled kernel numbers a tree
    it builds in one piece); ``height`` (N-1,) the weight of each internal node in that order;
    ``tree_edges`` (M, 2) and ``tree_weights`` (M,) the merging edges in ascending order (M = N-1
    when they connect).
    """
    n = num_nodes
    order = torch.argsort(weights, stable=True).tolist()
    e = edges.tolist()
    w = weights.tolist()
    uf = list(range(n))
    node_of = list(range(n))
    children = []
    height, t_edges, t_w = [], [], []
    nxt = n
    for k in order:
        a, b = e[k]
        while uf[a] != a:
            uf[a] = uf[uf[a]]
            a = uf[a]
        while uf[b] != b:
            uf[b] = uf[uf[b]]
            b = uf[b]
        if a == b:
            continue
        children.append((node_of[a], node_of[b]))
        uf[b] = a
        node_of[a] = nxt
        height.append(w[k])
        t_edges.append(e[k])
        t_w.append(w[k])
        nxt += 1
    parent, height = _breadth_first(n, children, height)
    dev = edges.device
    return (
        torch.tensor(parent, dtype=torch.int64, device=dev),
        torch.tensor(height, dtype=weights.dtype, device=dev),
        torch.tensor(t_edges, dtype=torch.int64, device=dev).view(-1, 2),
        torch.tensor(t_w, dtype=weights.dtype, device=dev),
    )


def _breadth_first(n: int, children: list, created_height: list):
    """Renumber internal nodes breadth-first from the root (root = node n), as the kernel does."""
    parent = [-1] * (2 * n - 1)
    if not children:
        return parent, []
    queue = [len(children) - 1]
    height = []
    head = 0
    while head < len(queue):
        o = queue[head]
        self_id = n + head
        height.append(created_height[o])
        head += 1
        for c in children[o]:
            if c < n:
                parent[c] = self_id
            else:
                parent[n + len(queue)] = self_id
                queue.append(c - n)
    return parent, height


def _levels(parent: torch.Tensor, n: int):
    """Group internal nodes by height above the leaves (bottom-up) and all nodes by depth (top-down).

    Internal nodes are numbered breadth-first (parents before children), leaves are 0..N-1.
    """
    p = parent.tolist()
    m = len(p)
    order = list(range(n)) + list(range(m - 1, n - 1, -1))  # leaves, then internal children first
    up = [0] * m
    for v in order:
        q = p[v]
        if q >= 0 and up[q] < up[v] + 1:
            up[q] = up[v] + 1
    depth = [0] * m
    for v in list(range(n + 1, m)) + list(range(n)):  # parents before children
        depth[v] = depth[p[v]] + 1
    dev = parent.device
    up_t = torch.tensor(up, device=dev)
    depth_t = torch.tensor(depth, device=dev)
    bottom_up = [torch.nonzero(up_t == lv).flatten() for lv in range(0, int(up_t.max()) + 1)]
    top_down = [torch.nonzero(depth_t == d).flatten() for d in range(1, int(depth_t.max()) + 1)]
    return bottom_up, top_down


def tree_sweep(values: torch.Tensor, parent: torch.Tensor, height: torch.Tensor, zeta: float,
               *, normalize: bool = True, include_self: bool = True) -> torch.Tensor:
    """Exact all-pairs tree filter on one reconstruction tree: values (N, C) -> (N, C).

    Unnormalised output: ``y_i = sum_j exp(-m(i,j)/zeta^2) x_j`` (with ``j = i`` included when
    ``include_self``); normalised output divides by the same sum over a channel of ones (0 where
    that sum is 0: no self term and every affinity underflowed).

    Without the self term a pixel's own affinity is 0, as in the compiled core: the top-down step
    then yields T(parent) - a(parent) x_i directly. Subtracting x_i from the sum with the self term
    instead cancels catastrophically when the other affinities are small.
    """
    n, c = values.shape
    if n == 1:
        return values.clone() if include_self else torch.zeros_like(values)
    x = torch.cat([values, torch.ones(n, 1, dtype=values.dtype, device=values.device)], 1)
    self_affinity = torch.full((n,), 1.0 if include_self else 0.0, dtype=values.dtype, device=values.device)
    a = torch.cat([self_affinity, affinity(height, zeta)])
    bottom_up, top_down = _levels(parent, n)
    s = torch.zeros(2 * n - 1, c + 1, dtype=values.dtype, device=values.device)
    s[:n] = x
    for nodes in bottom_up:  # every node at this level is complete: push it into its parent
        nodes = nodes[parent[nodes] >= 0]
        s.index_add_(0, parent[nodes], s[nodes])
    t = s.clone()
    root = n
    t[root] = a[root] * s[root]
    for nodes in top_down:  # T(v) = T(parent) + (a(v) - a(parent)) S(v)
        par = parent[nodes]
        t[nodes] = t[par] + (a[nodes] - a[par]).unsqueeze(1) * s[nodes]
    y = t[:n]
    if normalize:
        z = y[:, c:]
        return torch.where(z > 0, y[:, :c] / torch.where(z > 0, z, torch.ones_like(z)), torch.zeros_like(z))
    return y[:, :c]


def local_filter(values: torch.Tensor, image: torch.Tensor, kernel_size: int, dilation: int,
                 zeta: float, iterations: int) -> torch.Tensor:
    """Iterated, normalised Gaussian colour-kernel filter: values (B, C, H, W), image (B, F, H, W).

    Kernel weights are computed once, (B, k*k, H, W); neighbours outside the image weigh zero.
    Only offsets that can land inside the image take part (as in the compiled core), so a kernel
    or dilation reaching past the image costs no more than one that fits. Memory O(N (k^2 + C)).
    """
    b, c, h, w = values.shape
    r = kernel_size // 2
    ry, rx = min(r, (h - 1) // dilation), min(r, (w - 1) // dilation)
    py, px = ry * dilation, rx * dilation
    pads = (px, px, py, py)
    img = F.pad(image, pads)
    inside = F.pad(torch.ones(b, 1, h, w, dtype=image.dtype, device=image.device), pads)
    offsets = [(dy * dilation, dx * dilation) for dy in range(-ry, ry + 1) for dx in range(-rx, rx + 1)]
    weights = torch.empty(b, len(offsets), h, w, dtype=values.dtype, device=values.device)
    for o, (dy, dx) in enumerate(offsets):
        sl = (slice(None), slice(None), slice(py + dy, py + dy + h), slice(px + dx, px + dx + w))
        d2 = ((img[sl] - image) ** 2).sum(1)
        weights[:, o] = affinity(d2, zeta) * inside[sl][:, 0]
    weights /= weights.sum(1, keepdim=True)
    y = values
    for _ in range(iterations):
        yp = F.pad(y, pads)
        acc = torch.zeros_like(values)
        for o, (dy, dx) in enumerate(offsets):
            acc += weights[:, o:o + 1] * yp[:, :, py + dy:py + dy + h, px + dx:px + dx + w]
        y = acc
    return y
