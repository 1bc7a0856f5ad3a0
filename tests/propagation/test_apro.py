import pytest
import torch

import clipapro
from clipapro.propagation import APro, AProTargets, TreeFilter, apro, grid_mst, local_filter, tree_filter


def _inputs(b=2, k=3, h=14, w=11):
    probs = torch.softmax(torch.randn(b, k, h, w, dtype=torch.float64), 1)
    return probs, torch.rand(b, 3, h, w, dtype=torch.float64)


def _global(p, img, zg, zl):
    edges, _ = grid_mst(img)
    g = tree_filter(p, img, zeta=zg)
    return tree_filter(g, g, zeta=zl, tree=edges)


def test_parallel_equals_composed_ops(backend):
    p, img = _inputs()
    parts = apro(p, img, return_parts=True, zeta_g=0.05, zeta_label=0.2)
    assert isinstance(parts, AProTargets)
    g = _global(p, img, 0.05, 0.2)
    l = local_filter(p, img, kernel_size=5, zeta=0.15, iterations=20)
    torch.testing.assert_close(parts.global_, g)
    torch.testing.assert_close(parts.local, l)
    torch.testing.assert_close(apro(p, img, zeta_g=0.05, zeta_label=0.2), 0.5 * (g + l))


def test_cascades_equal_composed_ops():
    p, img = _inputs()
    kw = dict(zeta_g=0.05, zeta_label=0.2, kernel_size=3, zeta_s=0.2, iterations=5)
    g = _global(p, img, 0.05, 0.2)
    torch.testing.assert_close(apro(p, img, mode="gp-lp", **kw),
                               local_filter(g, img, kernel_size=3, zeta=0.2, iterations=5))
    l = local_filter(p, img, kernel_size=3, zeta=0.2, iterations=5)
    torch.testing.assert_close(apro(p, img, mode="lp-gp", **kw), _global(l, img, 0.05, 0.2))
    no_label = apro(p, img, mode="gp-lp", label_gp=False, **kw)
    torch.testing.assert_close(no_label, local_filter(tree_filter(p, img, zeta=0.05), img, kernel_size=3, zeta=0.2,
                                                      iterations=5))


def test_targets_are_probabilities_and_top_level_api():
    p, img = _inputs()
    out = clipapro.apro(p.float(), img.float())
    assert out.shape == p.shape and out.dtype == torch.float32
    torch.testing.assert_close(out.sum(1), torch.ones_like(out.sum(1)), rtol=1e-4, atol=1e-4)
    assert (out >= 0).all()


def test_modules_equal_functions():
    p, img = _inputs()
    torch.testing.assert_close(APro(zeta_g=0.03)(p, img), apro(p, img, zeta_g=0.03))
    torch.testing.assert_close(TreeFilter(zeta=0.1)(p, img), tree_filter(p, img, zeta=0.1))


def test_bad_inputs():
    p, img = _inputs()
    with pytest.raises(ValueError, match="mode"):
        apro(p, img, mode="serial")
    with pytest.raises(ValueError, match="share batch and H x W"):
        apro(p, img[..., :-1])
    with pytest.raises(TypeError, match="same dtype"):
        apro(p.float(), img)
    with pytest.raises(ValueError, match="probs must have 4 dimensions"):
        apro(p[0], img)
