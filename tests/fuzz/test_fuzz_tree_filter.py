"""Fuzz: tree_filter (compiled core and twin) against the O(N^2) brute force, over shapes, layouts,
dtypes, zetas over 60 orders of magnitude and values over the float range. Every call runs in the
guarded worker: a crash fails the example instead of killing pytest."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from ..propagation._reference import brute_tree_filter
from ._oracle import TOL, assert_close, names_an_argument
from ._strategies import ZETAS, problems

BACKENDS = ["compiled", "twin"]
NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def _expect(values, guide, zeta, normalize, include_self, got_or_error, what):
    """The oracle: brute force in float64 on the same numbers, batch item by batch item."""
    dtype = values.dtype
    v = values.double().numpy()
    g = guide.double().numpy()
    top = float(torch.finfo(dtype).max)
    refs = []
    for i in range(v.shape[0]):
        vmax = float(np.abs(v[i]).max())
        s = math.ldexp(1.0, -math.frexp(vmax)[1]) if vmax > 0 else 1.0  # float64 sums of values near its max
        with np.errstate(over="ignore"):
            refs.append(brute_tree_filter(v[i] * s, g[i], zeta, normalize=normalize, include_self=include_self,
                                          dtype=NUMPY[dtype]) / s)
    if not normalize and max(np.abs(r).max() for r in refs) > top * (1 - 1e-3):
        assert isinstance(got_or_error, ValueError) and "values" in str(got_or_error), (
            f"{what}: sums beyond {top:.3g} must raise ValueError naming values, got {got_or_error!r}")
        return
    if isinstance(got_or_error, Exception):
        raise AssertionError(f"{what}: unexpected {got_or_error!r}")
    n = v.shape[2] * v.shape[3]
    for i, ref in enumerate(refs):
        y = got_or_error[i].double().numpy()
        vmax = float(np.abs(v[i]).max())
        if not normalize:
            assert_close(y, ref, dtype, n * vmax, what)
            continue
        # Where the affinities are tiny the float result is defined only to within the dtype's
        # smallest normal value over their sum; where none survives, any weighted mean is at
        # most max |values|.
        z = brute_tree_filter(np.ones_like(v[i][:1]), g[i], zeta, normalize=False, include_self=include_self,
                              dtype=NUMPY[dtype])
        tiny = float(torch.finfo(dtype).tiny)
        with np.errstate(divide="ignore"):
            slack = np.where(z > 0, 8 * n * tiny * vmax / np.where(z > 0, z, 1), np.inf)
        assert (np.abs(y) <= vmax * (1 + TOL[dtype])).all(), f"{what}: |y| above max |values|"
        assert_close(y, ref, dtype, vmax, what, slack=np.minimum(slack, 2 * vmax))


def _reply(reply, what):
    """A worker reply as the result tensor or the exception it stands for."""
    if reply[0] == "ok":
        return torch.from_numpy(reply[1])
    assert reply[1] in ("ValueError", "TypeError"), f"{what}: {reply}"
    assert names_an_argument(reply[2], ["values", "guide", "zeta"]), f"{what}: {reply[2]!r} names no argument"
    return ValueError(reply[2]) if reply[1] == "ValueError" else TypeError(reply[2])


@pytest.mark.parametrize("backend", BACKENDS)
@given(problem=problems(), zeta=ZETAS, normalize=st.booleans(), include_self=st.booleans(),
       zeta_type=st.sampled_from([float, np.float32, np.float64]))
def test_tree_filter_matches_brute_force(guard, backend, problem, zeta, normalize, include_self, zeta_type):
    values, guide, meta = problem
    z = zeta_type(zeta)
    if float(z) == 0.0 or not np.isfinite(float(z)):  # 1e-30 as a float32 is fine; below its range it is 0
        z = zeta
    what = f"{backend} tree_filter({meta}, zeta={float(z):.3g}, normalize={normalize}, include_self={include_self})"
    got = _reply(guard.call("tree_filter", backend, values=values, guide=guide, zeta=z, normalize=normalize,
                            include_self=include_self), what)
    _expect(values, guide, float(z), normalize, include_self, got, what)


@pytest.mark.parametrize("backend", BACKENDS)
@given(problem=problems(guide_decades=(-8.0, 8.0)), zeta=ZETAS, normalize=st.booleans(), include_self=st.booleans())
def test_prebuilt_tree_matches_fused(guard, backend, problem, zeta, normalize, include_self):
    """tree_filter on kruskal_tree(guide) equals the fused call. (A KruskalTree stores squared
    distances in the guide's dtype, so for guides near the dtype's limits it is exact only to its
    stored heights, which tests/fuzz/test_fuzz_trees.py checks; the fused call rescales instead.)"""
    values, guide, meta = problem
    kw = dict(zeta=zeta, normalize=normalize, include_self=include_self)
    what = f"{backend} prebuilt vs fused ({meta}, {kw})"
    built = guard.call("kruskal_tree", backend, guide=guide)
    assert built[0] == "ok", f"{what}: {built}"
    tree = dict(kind="KruskalTree", size=[meta["h"], meta["w"]], **built[1])
    pre = _reply(guard.call("tree_filter", backend, values=values, guide=tree, **kw), what)
    fused = _reply(guard.call("tree_filter", backend, values=values, guide=guide, **kw), what)
    if isinstance(pre, Exception) or isinstance(fused, Exception):  # only sums past the float range
        assert type(pre) is type(fused) and "unnormalised sums overflow" in str(pre), f"{what}: {pre!r}, {fused!r}"
        return
    scale = float(values.abs().max()) * (1 if normalize else meta["h"] * meta["w"])
    assert_close(pre.double().numpy(), fused.double().numpy(), meta["dtype"], scale, what)
