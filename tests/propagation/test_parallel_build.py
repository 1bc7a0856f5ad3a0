"""The banded tree build and the two sweeps.

With two threads (images of 2^14 pixels or more), or on large images, the compiled core cuts the
image into bands of rows, builds each band's tree on its own and joins them along the seams; small
images on one thread get one Kruskal over the whole grid. Both must give the same tree, merge for
merge, and the same filter output, bit for bit. CLIPAPRO_BAND_PIXELS makes the bands small, so
that many-band joins run on grids small enough for the brute-force reference. Few channels are
swept straight over the merge list, more over the breadth-first layout: both must agree with each
other and with the prebuilt-tree path.
"""

import numpy as np
import pytest
import torch

import clipapro
from clipapro import _ext
from clipapro.propagation import kruskal_tree, tree_filter

from ._reference import brute_tree_filter, canonical_tree

pytestmark = pytest.mark.skipif(not _ext.has_ext(), reason="compiled core not built")

H, W = 131, 137  # 17947 pixels: above the two-band threshold, odd sizes


def _guide(kind: str, seed: int, dtype=torch.float64) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    if kind == "ties":  # few levels: many equal weights, where tie-breaking must be exact
        g = rng.integers(0, 3, size=(1, 3, H, W)) / 2.0
    elif kind == "smooth":  # photo-like: large flat regions and soft edges
        g = rng.random((1, 3, H // 8 + 1, W // 8 + 1))
        g = np.kron(g, np.ones((1, 1, 8, 8)))[..., :H, :W] + 0.01 * rng.random((1, 3, H, W))
    else:
        g = rng.random((1, 3, H, W))
    return torch.from_numpy(np.ascontiguousarray(g)).to(dtype)


def _same_tree(a, b) -> bool:
    n = a.size[0] * a.size[1]
    return all(canonical_tree(a.parent[i], a.height[i], n) == canonical_tree(b.parent[i], b.height[i], n)
               for i in range(a.parent.shape[0]))


def _with_threads(monkeypatch, threads, fn):
    monkeypatch.setenv("CLIPAPRO_NUM_THREADS", str(threads))
    try:
        return fn()
    finally:
        monkeypatch.delenv("CLIPAPRO_NUM_THREADS")


@pytest.mark.parametrize("kind", ["noise", "ties", "smooth"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_two_bands_build_the_same_tree(monkeypatch, kind, dtype):
    guide = _guide(kind, 0, dtype)
    one = _with_threads(monkeypatch, 1, lambda: kruskal_tree(guide))
    two = _with_threads(monkeypatch, 2, lambda: kruskal_tree(guide))
    # Same tree, laid out differently (banded trees number the glue first, then each band).
    assert _same_tree(one, two)
    assert not _same_tree(one, kruskal_tree(_guide(kind, 1, dtype)))  # the comparison can fail
    assert torch.equal(one.edges, two.edges) and torch.equal(one.edge_weights, two.edge_weights)


@pytest.mark.parametrize("channels", [1, 3, 6, 7, 21])
def test_two_bands_filter_bit_for_bit(monkeypatch, channels):
    guide = _guide("noise", 1)
    values = torch.rand(1, channels, H, W, dtype=torch.float64)
    one = _with_threads(monkeypatch, 1, lambda: tree_filter(values, guide, zeta=0.3))
    two = _with_threads(monkeypatch, 2, lambda: tree_filter(values, guide, zeta=0.3))
    assert torch.equal(one, two)


def test_given_tree_in_two_bands(monkeypatch):
    """APro's label-guided pass: the image's tree, reweighted by another guide."""
    image, label = _guide("smooth", 2), _guide("noise", 3)
    values = torch.rand(1, 2, H, W, dtype=torch.float64)
    edges = kruskal_tree(image).edges
    one = _with_threads(monkeypatch, 1, lambda: tree_filter(values, label, zeta=0.5, tree=edges))
    two = _with_threads(monkeypatch, 2, lambda: tree_filter(values, label, zeta=0.5, tree=edges))
    assert torch.equal(one, two)
    shuffled = edges[:, torch.randperm(edges.shape[1])].flip(-1)  # any order, any orientation
    torch.testing.assert_close(_with_threads(monkeypatch, 2, lambda: tree_filter(values, label, zeta=0.5,
                                                                                 tree=shuffled)), one)


def test_two_band_tree_equals_the_twin(monkeypatch):
    guide = _guide("ties", 4)
    compiled = _with_threads(monkeypatch, 2, lambda: kruskal_tree(guide))
    monkeypatch.setitem(_ext._STATE, "ext", None)
    twin = kruskal_tree(guide)
    assert _same_tree(twin, compiled)
    assert torch.equal(twin.edges, compiled.edges)


@pytest.mark.parametrize("channels", [1, 2, 6, 7, 12])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("include_self", [True, False])
def test_list_sweep_equals_breadth_first_sweep(monkeypatch, channels, normalize, include_self):
    """The fused path picks its sweep by channel count; the prebuilt-tree path always sweeps the
    breadth-first layout."""
    guide = _guide("noise", 5)
    values = torch.rand(1, channels, H, W, dtype=torch.float64)
    kw = dict(zeta=0.2, normalize=normalize, include_self=include_self)
    for threads in (1, 2):
        fused = _with_threads(monkeypatch, threads, lambda: tree_filter(values, guide, **kw))
        prebuilt = _with_threads(monkeypatch, threads, lambda: tree_filter(values, kruskal_tree(guide), **kw))
        torch.testing.assert_close(fused, prebuilt, rtol=1e-10, atol=1e-12)


def test_bad_given_tree_in_two_bands(monkeypatch):
    guide = _guide("noise", 6)
    edges = kruskal_tree(guide).edges.clone()
    monkeypatch.setenv("CLIPAPRO_NUM_THREADS", "2")
    values = torch.rand(1, 1, H, W, dtype=torch.float64)
    cycle = edges.clone()
    cycle[0, 0] = cycle[0, 1]  # a duplicate edge: a cycle, and one pixel left out
    with pytest.raises(ValueError, match="tree is not a spanning tree"):
        tree_filter(values, guide, zeta=0.1, tree=cycle)
    far = edges.clone()
    far[0, -1] = torch.tensor([0, 2 * W + 5])
    with pytest.raises(ValueError, match="not 4-neighbours"):
        tree_filter(values, guide, zeta=0.1, tree=far)
    seam = (H // 2) * W  # a duplicate seam edge: caught while joining the bands
    crossing = ((edges[0, :, 0] < seam) != (edges[0, :, 1] < seam)).nonzero()[0, 0]
    inside = ((edges[0, :, 0] < seam) == (edges[0, :, 1] < seam)).nonzero()[0, 0]
    twice = edges.clone()
    twice[0, inside] = edges[0, crossing]
    with pytest.raises(ValueError, match="tree is not a spanning tree"):
        tree_filter(values, guide, zeta=0.1, tree=twice)


@pytest.mark.parametrize("band_pixels", [6, 20, 50])
def test_many_bands_match_bruteforce(monkeypatch, band_pixels):
    monkeypatch.setenv("CLIPAPRO_BAND_PIXELS", str(band_pixels))
    rng = np.random.default_rng(band_pixels)
    for _ in range(70):
        h, w = int(rng.integers(1, 13)), int(rng.integers(1, 13))
        f = int(rng.choice([1, 3]))
        guide = rng.integers(0, 3, size=(f, h, w)) * 0.25 if rng.random() < 0.3 else rng.random((f, h, w))
        values = rng.random((int(rng.choice([1, 2, 7])), h, w))
        zeta = float(rng.uniform(0.05, 1.0))
        normalize, include_self = bool(rng.random() < 0.7), bool(rng.random() < 0.7)
        for threads in (1, 2):
            monkeypatch.setenv("CLIPAPRO_NUM_THREADS", str(threads))
            got = tree_filter(torch.from_numpy(values)[None], torch.from_numpy(guide)[None], zeta=zeta,
                              normalize=normalize, include_self=include_self)[0].numpy()
            ref = brute_tree_filter(values, guide, zeta, normalize=normalize, include_self=include_self)
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)


def test_many_bands_build_the_twins_tree(monkeypatch):
    guide = torch.from_numpy(np.random.default_rng(9).integers(0, 3, size=(2, 3, 23, 19)) / 2.0)  # ties
    monkeypatch.setenv("CLIPAPRO_BAND_PIXELS", "40")  # 11 bands of two or three rows
    compiled = kruskal_tree(guide)
    edges, weights = clipapro.grid_mst(guide)
    assert torch.equal(edges, compiled.edges) and torch.equal(weights, compiled.edge_weights)
    monkeypatch.setitem(_ext._STATE, "ext", None)
    twin = kruskal_tree(guide)
    assert _same_tree(twin, compiled) and torch.equal(twin.edges, compiled.edges)


def test_many_bands_given_tree(monkeypatch):
    rng = np.random.default_rng(10)
    image, label = torch.from_numpy(rng.random((1, 3, 20, 17))), torch.from_numpy(rng.random((1, 2, 20, 17)))
    values = torch.from_numpy(rng.random((1, 3, 20, 17)))
    edges = kruskal_tree(image).edges
    ref = brute_tree_filter(values[0].numpy(), label[0].numpy(), 0.4, tree_edges=[tuple(e) for e in edges[0].tolist()])
    monkeypatch.setenv("CLIPAPRO_BAND_PIXELS", "34")
    for threads in (1, 2):
        monkeypatch.setenv("CLIPAPRO_NUM_THREADS", str(threads))
        got = tree_filter(values, label, zeta=0.4, tree=edges)[0].numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)
    cycle = edges.clone()
    cycle[0, 5] = cycle[0, 6]
    with pytest.raises(ValueError, match="tree is not a spanning tree"):
        tree_filter(values, label, zeta=0.4, tree=cycle)
