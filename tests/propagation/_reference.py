"""Obviously-right references for the propagation ops: O(N^2) GP over explicit tree paths, loop LP."""

from __future__ import annotations

import heapq

import numpy as np


def grid_weights(guide: np.ndarray) -> dict:
    """guide (F, H, W) -> {(u, v): squared distance} for all 4-neighbour pairs u < v."""
    f, h, w = guide.shape
    g = guide.reshape(f, -1)
    out = {}
    for r in range(h):
        for c in range(w):
            u = r * w + c
            if c + 1 < w:
                out[(u, u + 1)] = float(((g[:, u] - g[:, u + 1]) ** 2).sum())
            if r + 1 < h:
                out[(u, u + w)] = float(((g[:, u] - g[:, u + w]) ** 2).sum())
    return out


def prim_mst(n: int, weights: dict) -> list[tuple[int, int]]:
    """Prim's algorithm (independent of the Kruskal code under test)."""
    adj = [[] for _ in range(n)]
    for (u, v), wt in weights.items():
        adj[u].append((wt, v))
        adj[v].append((wt, u))
    seen = [False] * n
    seen[0] = True
    heap = [(wt, 0, v) for wt, v in adj[0]]
    heapq.heapify(heap)
    tree = []
    while heap and len(tree) < n - 1:
        wt, u, v = heapq.heappop(heap)
        if seen[v]:
            continue
        seen[v] = True
        tree.append((u, v))
        for w2, x in adj[v]:
            if not seen[x]:
                heapq.heappush(heap, (w2, v, x))
    return tree


def minimax_matrix(n: int, tree_edges, weight_of) -> np.ndarray:
    """m[i, j] = largest edge weight on the tree path i -> j (explicit path walk from every node)."""
    adj = [[] for _ in range(n)]
    for u, v in tree_edges:
        wt = weight_of(u, v)
        adj[u].append((v, wt))
        adj[v].append((u, wt))
    m = np.zeros((n, n))
    for s in range(n):
        stack = [(s, -1, 0.0)]
        while stack:
            node, prev, best = stack.pop()
            m[s, node] = best
            for nxt, wt in adj[node]:
                if nxt != prev:
                    stack.append((nxt, node, max(best, wt)))
    return m


def affinity(d, zeta: float):
    """exp(-d / zeta^2), written (d / zeta) / zeta so that a zeta whose square underflows gives 1 on
    ties and 0 elsewhere instead of 0 / 0."""
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(-(np.asarray(d, dtype=np.float64) / zeta) / zeta)


def _normalised(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, y / np.where(z > 0, z, 1.0), 0.0)


def brute_tree_filter(values: np.ndarray, guide: np.ndarray, zeta: float, tree_edges=None,
                      normalize=True, include_self=True, dtype=np.float64) -> np.ndarray:
    """values (C, H, W), guide (F, H, W) float64 -> (C, H, W), sum over ALL pixel pairs."""
    c, h, w = values.shape
    n = h * w
    g = guide.reshape(guide.shape[0], -1)
    if tree_edges is None:
        tree_edges = prim_mst(n, grid_weights(guide)) if n > 1 else []

    def weight_of(u, v):
        return float(((g[:, u] - g[:, v]) ** 2).sum())

    m = minimax_matrix(n, tree_edges, weight_of)
    # Affinities are values of the data's dtype (``dtype``): float32 ones underflow to 0 sooner.
    a = affinity(m, zeta).astype(dtype).astype(np.float64)
    if not include_self:
        np.fill_diagonal(a, 0.0)
    x = values.reshape(c, n).T.astype(np.float64)
    y = a @ x
    if normalize:
        y = _normalised(y, a.sum(1, keepdims=True))
    return y.T.reshape(c, h, w)


def brute_kruskal_filter(values: np.ndarray, parent, height, zeta: float, normalize=True, include_self=True,
                         dtype=np.float64) -> np.ndarray:
    """values (C, H, W) -> (C, H, W) straight from a reconstruction tree's arrays: the affinity of
    pixels i, j is exp(-height(lca)/zeta^2), the lowest common ancestor found by walking up."""
    c, h, w = values.shape
    n = h * w
    parent = [int(p) for p in parent]
    height = [float(x) for x in height]

    def ancestors(v):
        out = []
        while v >= 0:
            out.append(v)
            v = parent[v]
        return out

    chains = [ancestors(v) for v in range(n)]
    a = np.eye(n)
    for i in range(n):
        up = set(chains[i])
        for j in range(n):
            if j != i:
                lca = next(v for v in chains[j] if v in up)
                a[i, j] = affinity(height[lca - n], zeta)
    a = a.astype(dtype).astype(np.float64)
    if not include_self:
        np.fill_diagonal(a, 0.0)
    y = a @ values.reshape(c, n).T.astype(np.float64)
    if normalize:
        y = _normalised(y, a.sum(1, keepdims=True))
    return y.T.reshape(c, h, w)


def loop_local_filter(values: np.ndarray, image: np.ndarray, k: int, dilation: int, zeta: float,
                      iterations: int) -> np.ndarray:
    """values (C, H, W), image (F, H, W) -> (C, H, W) with explicit per-pixel loops.

    The loops run over the kernel steps that land inside the image (the others have no neighbour),
    so huge kernels and dilations cost no more than the image."""
    c, h, w = values.shape
    r = k // 2
    y = values.astype(np.float64)
    kern = {}
    for i in range(h):
        for j in range(w):
            lst = []
            for dy in range(max(-r, -(i // dilation)), min(r, (h - 1 - i) // dilation) + 1):
                for dx in range(max(-r, -(j // dilation)), min(r, (w - 1 - j) // dilation) + 1):
                    ii, jj = i + dy * dilation, j + dx * dilation
                    assert 0 <= ii < h and 0 <= jj < w
                    d2 = float(((image[:, i, j].astype(np.float64) - image[:, ii, jj]) ** 2).sum())
                    lst.append((ii, jj, float(affinity(d2, zeta))))
            kern[i, j] = lst
    for _ in range(iterations):
        new = np.zeros_like(y)
        for (i, j), lst in kern.items():
            z = sum(wt for _, _, wt in lst)
            for ii, jj, wt in lst:
                new[:, i, j] += wt * y[:, ii, jj]
            new[:, i, j] /= z
        y = new
    return y


def canonical_tree(parent, height, n: int):
    """A reconstruction tree in one canonical numbering, to compare trees laid out differently.

    parent: (2N-1,) ints, internal nodes N..2N-2 with parents before children, root parent -1;
    height: (N-1,). Internal nodes are renumbered breadth-first from the root, each node's children
    ordered by the smallest pixel below them. Returns (parent, height) as lists.
    """
    parent = [int(p) for p in parent]
    height = [float(x) for x in height]
    m = len(parent)
    low = list(range(n)) + [m] * (m - n)  # smallest pixel below each node
    for v in list(range(n)) + list(range(m - 1, n - 1, -1)):  # pixels, then merges from the bottom up
        p = parent[v]
        if p >= 0:
            low[p] = min(low[p], low[v])
    children = [[] for _ in range(m)]
    for v in range(m):
        if parent[v] >= 0:
            children[parent[v]].append(v)
    new_parent, new_height = [-1] * m, []
    order = [parent.index(-1)]
    head = 0
    while head < len(order):
        v = order[head]
        me = n + head
        new_height.append(height[v - n])
        head += 1
        for c in sorted(children[v], key=lambda c: low[c]):
            if c < n:
                new_parent[c] = me
            else:
                new_parent[n + len(order)] = me
                order.append(c)
    return new_parent, new_height
