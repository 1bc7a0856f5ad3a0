import numpy as np
import pytest
import torch

import clipapro
from clipapro import _ext
from clipapro.propagation import KruskalTree, _twins, kruskal_tree, tree_filter

from ._reference import brute_tree_filter, grid_weights, prim_mst


def _random_case(rng, max_side=12):
    h, w = int(rng.integers(1, max_side + 1)), int(rng.integers(1, max_side + 1))
    c, f = int(rng.choice([1, 2, 3, 5])), int(rng.choice([1, 3]))
    if rng.random() < 0.3:  # quantised guide: many tied weights
        guide = rng.integers(0, 3, size=(f, h, w)).astype(np.float64) * 0.25
    else:
        guide = rng.random((f, h, w))
    values = rng.random((c, h, w))
    zeta = float(rng.uniform(0.05, 1.0))
    return values, guide, zeta


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))[None]


def test_matches_bruteforce_on_200_random_grids():
    rng = np.random.default_rng(1)
    for _ in range(200):
        values, guide, zeta = _random_case(rng)
        got = tree_filter(_t(values), _t(guide), zeta=zeta)[0].numpy()
        ref = brute_tree_filter(values, guide, zeta)
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)


def test_twin_matches_bruteforce(backend):
    rng = np.random.default_rng(2)
    for _ in range(30 if backend == "twin" else 60):
        values, guide, zeta = _random_case(rng, max_side=8)
        got = tree_filter(_t(values), _t(guide), zeta=zeta)[0].numpy()
        np.testing.assert_allclose(got, brute_tree_filter(values, guide, zeta), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("include_self", [True, False])
def test_message_variants_match_bruteforce(backend, normalize, include_self):
    rng = np.random.default_rng(3)
    for _ in range(15):
        values, guide, zeta = _random_case(rng, max_side=7)
        got = tree_filter(_t(values), _t(guide), zeta=zeta, normalize=normalize, include_self=include_self)
        ref = brute_tree_filter(values, guide, zeta, normalize=normalize, include_self=include_self)
        np.testing.assert_allclose(got[0].numpy(), ref, rtol=1e-6, atol=1e-12)


def test_compiled_equals_twin_on_larger_grids(monkeypatch):
    if not _ext.has_ext():
        pytest.skip("compiled core not built")
    rng = np.random.default_rng(4)
    values = torch.from_numpy(rng.random((2, 4, 23, 31)))
    guide = torch.from_numpy(rng.integers(0, 4, size=(2, 3, 23, 31)) / 3.0)  # ties
    compiled = tree_filter(values, guide, zeta=0.3)
    kt_c = kruskal_tree(guide)
    monkeypatch.setitem(_ext._STATE, "ext", None)
    twin = tree_filter(values, guide, zeta=0.3)
    kt_t = kruskal_tree(guide)
    torch.testing.assert_close(compiled, twin, rtol=1e-10, atol=1e-12)
    # With ties, several MSTs exist; all share the sorted weight sequence (and hence the result).
    torch.testing.assert_close(kt_c.edge_weights, kt_t.edge_weights, rtol=1e-12, atol=1e-14)


def test_constant_image_gives_global_mean(backend):
    values = torch.rand(1, 3, 9, 7, dtype=torch.float64)
    guide = torch.full((1, 3, 9, 7), 0.4, dtype=torch.float64)
    out = tree_filter(values, guide, zeta=0.01)
    mean = values.mean((2, 3), keepdim=True).expand_as(values)
    torch.testing.assert_close(out, mean, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2)])
def test_degenerate_shapes(backend, shape):
    rng = np.random.default_rng(5)
    values, guide = rng.random((2, *shape)), rng.random((3, *shape))
    got = tree_filter(_t(values), _t(guide), zeta=0.4)[0].numpy()
    np.testing.assert_allclose(got, brute_tree_filter(values, guide, 0.4), rtol=1e-6, atol=1e-12)


def test_many_channels():
    rng = np.random.default_rng(6)
    values, guide = rng.random((200, 6, 5)), rng.random((3, 6, 5))
    got = tree_filter(_t(values), _t(guide), zeta=0.3)[0].numpy()
    np.testing.assert_allclose(got, brute_tree_filter(values, guide, 0.3), rtol=1e-6, atol=1e-12)


def test_noncontiguous_and_channels_last_inputs(backend):
    base = torch.rand(2, 5, 10, 12, dtype=torch.float64)
    guide = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    ref = tree_filter(base.contiguous(), guide, zeta=0.2)
    cl = tree_filter(base.to(memory_format=torch.channels_last), guide.to(memory_format=torch.channels_last),
                     zeta=0.2)
    torch.testing.assert_close(cl, ref)
    wide = torch.rand(2, 5, 10, 24, dtype=torch.float64)
    sliced = wide[..., ::2]
    torch.testing.assert_close(tree_filter(sliced, guide, zeta=0.2), tree_filter(sliced.contiguous(), guide, zeta=0.2))


def test_batch_items_are_independent(backend):
    values = torch.rand(3, 2, 6, 7, dtype=torch.float64)
    guide = torch.rand(3, 3, 6, 7, dtype=torch.float64)
    batched = tree_filter(values, guide, zeta=0.3)
    for i in range(3):
        torch.testing.assert_close(batched[i:i + 1], tree_filter(values[i:i + 1], guide[i:i + 1], zeta=0.3))


def test_given_tree_with_other_guide_matches_bruteforce(backend):
    rng = np.random.default_rng(7)
    for _ in range(10):
        h, w = int(rng.integers(2, 8)), int(rng.integers(2, 8))
        image, label_guide, values = rng.random((3, h, w)), rng.random((2, h, w)), rng.random((2, h, w))
        edges, _ = clipapro.grid_mst(_t(image))
        got = tree_filter(_t(values), _t(label_guide), zeta=0.5, tree=edges)[0].numpy()
        ref = brute_tree_filter(values, label_guide, 0.5, tree_edges=[tuple(e) for e in edges[0].tolist()])
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)


def test_grid_mst_is_a_minimum_spanning_tree(backend):
    rng = np.random.default_rng(8)
    for _ in range(20):
        h, w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        guide = rng.integers(0, 3, size=(3, h, w)) / 2.0 if rng.random() < 0.5 else rng.random((3, h, w))
        edges, weights = clipapro.grid_mst(_t(guide))
        n = h * w
        assert edges.shape == (1, n - 1, 2) and weights.shape == (1, n - 1) and edges.dtype == torch.int64
        gw = grid_weights(guide)
        pairs = [tuple(sorted(e)) for e in edges[0].tolist()]
        assert all(p in gw for p in pairs)  # grid edges only
        np.testing.assert_allclose(weights[0].numpy(), [gw[p] for p in pairs])
        assert np.all(np.diff(weights[0].numpy()) >= 0)  # ascending
        prim_total = sum(gw[tuple(sorted(e))] for e in prim_mst(n, gw)) if n > 1 else 0.0
        assert abs(float(weights.sum()) - prim_total) < 1e-9
        parent = list(range(n))  # connected & acyclic
        def find(a, parent=parent):
            while parent[a] != a:
                a = parent[a]
            return a
        for u, v in pairs:
            ru, rv = find(u), find(v)
            assert ru != rv
            parent[ru] = rv


def test_prebuilt_tree_reuse_equals_direct(backend):
    values = torch.rand(2, 3, 8, 9, dtype=torch.float64)
    guide = torch.rand(2, 3, 8, 9, dtype=torch.float64)
    kt = kruskal_tree(guide)
    assert isinstance(kt, KruskalTree)
    for zeta in (0.05, 0.5):
        torch.testing.assert_close(tree_filter(values, kt, zeta=zeta), tree_filter(values, guide, zeta=zeta))


def test_float32_close_to_float64():
    values = torch.rand(1, 4, 40, 50, dtype=torch.float64)
    guide = torch.rand(1, 3, 40, 50, dtype=torch.float64)
    y64 = tree_filter(values, guide, zeta=0.3)
    y32 = tree_filter(values.float(), guide.float(), zeta=0.3)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)


def test_deep_chain_tree_does_not_overflow_the_stack():
    """A guide whose MST is one long chain (tree depth = N) must work (no recursion, no stack arrays)."""
    if not _ext.has_ext():
        pytest.skip("compiled core not built")
    h, w = 200, 300
    order = np.arange(h * w).reshape(h, w)
    order[1::2] = order[1::2, ::-1]  # boustrophedon path: consecutive positions are 4-neighbours
    guide = torch.from_numpy((order.astype(np.float64) / (h * w)) ** 2)[None, None]
    values = torch.rand(1, 2, h, w, dtype=torch.float64)
    out = tree_filter(values, guide, zeta=1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, tree_filter(values, guide.flip(-1).flip(-1), zeta=1.0))


def test_output_has_no_autograd_graph():
    values = torch.rand(1, 2, 5, 5, requires_grad=True)
    out = tree_filter(values, torch.rand(1, 3, 5, 5), zeta=0.2)
    assert not out.requires_grad


def test_twin_kruskal_matches_internal_layout():
    edges = _twins.grid_edges(3, 4)
    assert edges.shape == (3 * 3 + 2 * 4, 2)


def test_kruskal_tree_structure_and_twin_identity(monkeypatch):
    guide = torch.rand(2, 1, 9, 13, dtype=torch.float64)  # one channel: identical weights in both
    kt = kruskal_tree(guide)
    n = 9 * 13
    for b in range(2):
        parent, height = kt.parent[b].long(), kt.height[b]
        assert parent[n] == -1 and (parent[:n] >= n).all()
        internal = torch.arange(n + 1, 2 * n - 1)
        assert (parent[internal] < internal).all()  # breadth-first: parents precede children
        child_h = height[internal - n]
        assert (height[parent[internal] - n] >= child_h).all()  # a node is never lower than its children
        torch.testing.assert_close(height.sort().values, kt.edge_weights[b])
    if _ext.has_ext():
        monkeypatch.setitem(_ext._STATE, "ext", None)
        twin = kruskal_tree(guide)
        assert torch.equal(twin.parent, kt.parent) and torch.equal(twin.edges, kt.edges)
        torch.testing.assert_close(twin.height, kt.height, rtol=0, atol=0)
