"""Fuzz: given spanning trees and prebuilt KruskalTrees, valid and corrupted, in the guarded
worker (a corrupted link reaching the sweep would write out of bounds). A valid one must match
the brute force on that very tree; a corrupted one must raise ValueError/TypeError naming it."""

import numpy as np
import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from clipapro.propagation import kruskal_tree

from ..propagation._reference import brute_kruskal_filter, brute_tree_filter, prim_mst
from ._oracle import NO_SHRINK, TOL, assert_close
from ._strategies import DTYPES, ZETAS, arrays

BACKENDS = ["compiled", "twin"]
NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
HUGE = [-(2**63), -(2**31), -1, 2**31 - 1, 2**31, 2**63 - 1]


def spanning_tree_is_valid(edges, h: int, w: int) -> bool:
    """Every edge joins two 4-neighbours of the grid, and the n-1 edges close no cycle."""
    n = h * w
    root = list(range(n))

    def find(x):
        while root[x] != x:
            x = root[x]
        return x

    for u, v in edges:
        if not (0 <= u < n and 0 <= v < n):
            return False
        lo, hi = min(u, v), max(u, v)
        if not ((hi - lo == 1 and lo // w == hi // w) or hi - lo == w):
            return False
        a, b = find(lo), find(hi)
        if a == b:
            return False
        root[a] = b
    return True


def kruskal_tree_is_valid(parent, height, n: int) -> bool:
    """A reconstruction tree as the sweeps need it: the root is node n with parent -1; pixels hang
    from internal nodes; an internal node's parent comes before it; two children each; heights
    finite, >= 0 and never above the parent's."""
    parent, height = [int(p) for p in parent], [float(x) for x in height]
    if len(parent) != 2 * n - 1 or len(height) != n - 1:
        return False
    if n == 1:
        return parent[0] == -1
    if parent[n] != -1:
        return False
    kids = [0] * (2 * n - 1)
    for v in range(2 * n - 1):
        if v == n:
            continue
        p = parent[v]
        if not n <= p < (2 * n - 1 if v < n else v):
            return False
        kids[p] += 1
    if any(kids[u] != 2 for u in range(n, 2 * n - 1)):
        return False
    if not all(np.isfinite(x) and x >= 0 for x in height):
        return False
    return all(height[parent[v] - n] >= height[v - n] for v in range(n + 1, 2 * n - 1))


@st.composite
def inputs(draw):
    dtype = draw(DTYPES)
    h, w, c = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.sampled_from([1, 2, 7]))
    seed = draw(st.integers(0, 2**31 - 1))
    values = arrays((1, c, h, w), "signed", 1.0, seed)
    guide = arrays((1, 3, h, w), draw(st.sampled_from(["uniform", "ties"])), 1.0, seed + 1)
    return dtype, h, w, torch.from_numpy(values).to(dtype), torch.from_numpy(guide).to(dtype), seed


def _outcome(reply, what):
    if reply[0] == "ok":
        return reply[1]
    assert reply[1] in ("ValueError", "TypeError"), f"{what}: {reply}"
    return reply


@pytest.mark.parametrize("backend", BACKENDS)
@settings(phases=NO_SHRINK)
@given(data=inputs(), zeta=ZETAS, normalize=st.booleans(), include_self=st.booleans(),
       corruption=st.sampled_from(["none", "swap", "permute", "replace", "duplicate", "huge"]),
       pick=st.integers(0, 10**6), edge_dtype=st.sampled_from([np.int64, np.int32]))
def test_given_trees(guard, backend, data, zeta, normalize, include_self, corruption, pick, edge_dtype):
    dtype, h, w, values, guide, seed = data
    n = h * w
    rng = np.random.default_rng(seed)
    grid = {}
    for u in range(n):
        if (u + 1) % w:
            grid[(u, u + 1)] = rng.random()
        if u + w < n:
            grid[(u, u + w)] = rng.random()
    edges = np.array(prim_mst(n, grid) if n > 1 else [], dtype=np.int64).reshape(-1, 2)
    if len(edges):
        k = pick % len(edges)
        if corruption == "swap":
            edges[k] = edges[k][::-1]
        elif corruption == "permute":
            edges = edges[rng.permutation(len(edges))]
        elif corruption == "replace":
            edges[k] = rng.integers(-2, n + 2, size=2)
        elif corruption == "duplicate":
            edges[k] = edges[(k + 1) % len(edges)]
        elif corruption == "huge":
            edges[k, pick % 2] = HUGE[pick % len(HUGE)]
    if edge_dtype is np.int32 and (np.abs(edges) >= 2**31).any():
        edge_dtype = np.int64
    tree = edges.astype(edge_dtype)[None]
    what = f"{backend} tree_filter(h={h}, w={w}, tree={edges.tolist()}, zeta={zeta:.3g})"
    reply = _outcome(guard.call("tree_filter", backend, values=values, guide=guide, zeta=zeta,
                                tree=tree, normalize=normalize, include_self=include_self), what)
    valid = spanning_tree_is_valid(edges.tolist(), h, w)
    event(f"{corruption}: {'valid' if valid else 'broken'}")
    if not valid:
        assert isinstance(reply, tuple) and "tree" in reply[2], f"{what}: a broken tree must be refused, got {reply}"
        return
    assert not isinstance(reply, tuple), f"{what}: a valid tree was refused: {reply}"
    ref = brute_tree_filter(values[0].double().numpy(), guide[0].double().numpy(), zeta,
                            tree_edges=[tuple(e) for e in edges.tolist()], normalize=normalize,
                            include_self=include_self, dtype=NUMPY[dtype])
    _compare(reply[0], ref, values, guide, zeta, normalize, include_self, dtype, what, tree=edges)


def _compare(got, ref, values, guide, zeta, normalize, include_self, dtype, what, tree=None, kt=None):
    vmax = float(values.abs().max())
    n = values.shape[-1] * values.shape[-2]
    if not normalize:
        assert_close(got, ref, dtype, n * vmax, what)
        return
    ones = np.ones((1,) + tuple(values.shape[-2:]))
    if kt is not None:
        z = brute_kruskal_filter(ones, kt[0], kt[1], zeta, normalize=False, include_self=include_self,
                                 dtype=NUMPY[dtype])
    else:
        z = brute_tree_filter(ones, guide[0].double().numpy(), zeta, tree_edges=[tuple(e) for e in tree.tolist()],
                              normalize=False, include_self=include_self, dtype=NUMPY[dtype])
    tiny = float(torch.finfo(dtype).tiny)
    with np.errstate(divide="ignore"):
        slack = np.where(z > 0, 8 * n * tiny * vmax / np.where(z > 0, z, 1), 2 * vmax)
    assert (np.abs(got) <= vmax * (1 + TOL[dtype])).all(), f"{what}: |y| above max |values|"
    assert_close(got, ref, dtype, vmax, what, slack=np.minimum(slack, 2 * vmax))


POOL = ["value", "swap", "height", "permute_heights", "dtype", "shape", "size"]


@pytest.mark.parametrize("backend", BACKENDS)
@settings(phases=NO_SHRINK)
@given(data=inputs(), zeta=ZETAS, normalize=st.booleans(), include_self=st.booleans(),
       corruption=st.sampled_from(["none"] + POOL), pick=st.integers(0, 10**6), bad_value=st.integers(-9, 9))
def test_prebuilt_kruskal_trees(guard, backend, data, zeta, normalize, include_self, corruption, pick, bad_value):
    dtype, h, w, values, guide, seed = data
    n = h * w
    kt = kruskal_tree(guide)
    parent, height = kt.parent.numpy().copy(), kt.height.numpy().copy()
    size = [h, w]
    rng = np.random.default_rng(seed)
    i = pick % (2 * n - 1)
    if corruption == "value":  # a link to anywhere: out of range, near the bounds, itself
        pool = [-1, n - 1, n, 2 * n - 2, 2 * n - 1, i, -(2**31), 2**31 - 1, n + bad_value, 2 * n + bad_value]
        parent[0, i] = pool[pick % len(pool)]
    elif corruption == "swap":
        j = int(rng.integers(0, 2 * n - 1))
        parent[0, [i, j]] = parent[0, [j, i]]
    elif corruption == "height" and n > 1:
        pool = [np.nan, np.inf, -np.inf, -1.0, -1e-30, 0.0, 1e30, float(bad_value)]
        height[0, pick % (n - 1)] = pool[pick % len(pool)]
    elif corruption == "permute_heights" and n > 1:
        height = height[:, rng.permutation(n - 1)]
    elif corruption == "dtype":
        parent = parent.astype([np.int64, np.float32, np.int16][pick % 3])
    elif corruption == "shape":
        parent = parent[:, :-1]
    elif corruption == "size":
        size = [w, h] if pick % 2 else [h, w + 1]
    tree = dict(kind="KruskalTree", parent=parent, height=height.astype(NUMPY[dtype]), edges=kt.edges.numpy(),
                edge_weights=kt.edge_weights.numpy(), size=size)
    what = f"{backend} tree_filter(KruskalTree {corruption}, h={h}, w={w}, zeta={zeta:.3g})"
    reply = _outcome(guard.call("tree_filter", backend, values=values, guide=tree, zeta=zeta,
                                normalize=normalize, include_self=include_self), what)
    valid = (parent.dtype == np.int32 and tuple(size) == (h, w)
             and kruskal_tree_is_valid(parent[0], height[0], n))
    event(f"{corruption}: {'valid' if valid else 'broken'}")
    if not valid:
        assert isinstance(reply, tuple), f"{what}: a broken tree was accepted: {tree}"
        assert "guide" in reply[2] or "tree" in reply[2], f"{what}: {reply[2]!r} does not name the tree"
        return
    assert not isinstance(reply, tuple), f"{what}: a valid tree was refused: {reply}"
    ref = brute_kruskal_filter(values[0].double().numpy(), parent[0], height[0].astype(np.float64), zeta,
                               normalize=normalize, include_self=include_self, dtype=NUMPY[dtype])
    _compare(reply[0], ref, values, guide, zeta, normalize, include_self, dtype, what,
             kt=(parent[0], height[0].astype(np.float64)))
