import pytest
import torch

import clipapro
from clipapro.propagation import kruskal_tree, local_filter, tree_filter


def _vg(h=5, w=6):
    return torch.rand(1, 2, h, w), torch.rand(1, 3, h, w)


@pytest.mark.parametrize("bad, exc, match", [
    (torch.rand(2, 5, 6), ValueError, "values must have 4 dimensions"),
    (torch.randint(0, 3, (1, 2, 5, 6)), TypeError, "values must have dtype"),
    (torch.rand(1, 0, 5, 6), ValueError, "values must not be empty"),
    (torch.full((1, 2, 5, 6), float("nan")), ValueError, "values contains NaN"),
    (torch.full((1, 2, 5, 6), float("inf")), ValueError, "values contains NaN or Inf"),
    ([[1.0]], TypeError, "values must be a torch.Tensor"),
])
def test_bad_values(bad, exc, match):
    _, g = _vg()
    with pytest.raises(exc, match=match):
        tree_filter(bad, g, zeta=0.1)
    with pytest.raises(exc, match=match):
        local_filter(bad, g)


def test_mismatched_sizes_and_dtypes():
    v, g = _vg()
    with pytest.raises(ValueError, match=r"share batch and H x W"):
        tree_filter(v, torch.rand(1, 3, 5, 7), zeta=0.1)
    with pytest.raises(ValueError, match=r"share batch and H x W"):
        local_filter(v, torch.rand(2, 3, 5, 6))
    with pytest.raises(TypeError, match="same dtype"):
        tree_filter(v.double(), g, zeta=0.1)
    with pytest.raises(TypeError, match="same dtype"):
        local_filter(v, g.double())
    with pytest.raises(ValueError, match="guide contains NaN"):
        tree_filter(v, torch.full_like(g, float("nan")), zeta=0.1)


@pytest.mark.parametrize("zeta", [0, -1.0, float("nan"), float("inf")])
def test_bad_zeta(zeta):
    v, g = _vg()
    with pytest.raises(ValueError, match="zeta"):
        tree_filter(v, g, zeta=zeta)
    with pytest.raises(ValueError, match="zeta"):
        local_filter(v, g, zeta=zeta)


def test_bad_local_parameters():
    v, g = _vg()
    for k in (0, 2, 4, -1):
        with pytest.raises(ValueError, match="kernel_size"):
            local_filter(v, g, kernel_size=k)
    with pytest.raises(TypeError, match="kernel_size"):
        local_filter(v, g, kernel_size=3.0)
    with pytest.raises(ValueError, match="iterations"):
        local_filter(v, g, iterations=-1)
    with pytest.raises(ValueError, match="dilation"):
        local_filter(v, g, dilation=0)


def test_tree_that_is_not_a_spanning_tree(backend):
    v, g = _vg(3, 3)
    edges, _ = clipapro.grid_mst(g)
    with pytest.raises(ValueError, match="tree must have shape"):
        tree_filter(v, g, zeta=0.1, tree=edges[:, :-1])
    with pytest.raises(TypeError, match="tree must have dtype"):
        tree_filter(v, g, zeta=0.1, tree=edges.float())
    bad = edges.clone()
    bad[0, 0] = torch.tensor([0, 4])  # diagonal: not a grid edge
    with pytest.raises(ValueError, match="not 4-neighbours"):
        tree_filter(v, g, zeta=0.1, tree=bad)
    bad = edges.clone()
    bad[0, 0] = torch.tensor([0, 99])
    with pytest.raises(ValueError, match="outside"):
        tree_filter(v, g, zeta=0.1, tree=bad)
    cyc = torch.tensor([[[0, 1], [1, 4], [4, 3], [3, 0], [1, 2], [4, 5], [3, 6], [6, 7]]])  # 4-cycle, 8 is cut off
    with pytest.raises(ValueError, match="not a spanning tree"):
        tree_filter(v, g, zeta=0.1, tree=cyc)
    with pytest.raises(ValueError, match="not a spanning tree"):
        kruskal_tree(g, tree=cyc)


def test_kruskal_tree_mismatch():
    v, g = _vg()
    kt = kruskal_tree(g)
    with pytest.raises(ValueError, match="tree was built for"):
        tree_filter(torch.rand(1, 2, 4, 6), kt, zeta=0.1)
    with pytest.raises(TypeError, match="same dtype"):
        tree_filter(v.double(), kt, zeta=0.1)
    with pytest.raises(ValueError, match="tree must be None"):
        tree_filter(v, kt, zeta=0.1, tree=kt.edges)


@pytest.mark.parametrize("name", ["CLIPAPRO_NUM_THREADS", "CLIPAPRO_BAND_PIXELS"])
def test_bad_tuning_variables_name_themselves(monkeypatch, name):
    from clipapro import _ext

    if not _ext.has_ext():
        pytest.skip("the tuning variables are read by the compiled path")
    monkeypatch.setenv(name, "two")
    v, g = _vg()
    with pytest.raises(ValueError, match=name):
        tree_filter(v, g, zeta=0.1)
