"""Fuzz: local_filter (compiled core and twin) against the explicit loop reference, including
kernels and dilations that reach far past the image. Every call runs in the guarded worker."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ..propagation._reference import loop_local_filter
from ._oracle import NO_SHRINK, assert_close, names_an_argument
from ._strategies import ZETAS, problems

BACKENDS = ["compiled", "twin"]
NAMES = ["values", "image", "kernel_size", "dilation", "zeta", "iterations"]
MAX_REACH = 2**29


def _reference(values, image, k, d, zeta, iterations):
    v = values.double().numpy()
    g = image.double().numpy()
    out = []
    for i in range(v.shape[0]):
        vmax = float(np.abs(v[i]).max())
        s = math.ldexp(1.0, -math.frexp(vmax)[1]) if vmax > 0 else 1.0
        out.append(loop_local_filter(v[i] * s, g[i], k, d, zeta, iterations) / s)
    return out


def _check(values, image, k, d, zeta, iterations, outcome, what):
    if (k // 2) * d > MAX_REACH:
        assert isinstance(outcome, ValueError) and ("dilation" in str(outcome) or "kernel_size" in str(outcome)), (
            f"{what}: a reach past 2^29 must raise ValueError naming dilation/kernel_size, got {outcome!r}")
        return
    if isinstance(outcome, Exception):
        raise AssertionError(f"{what}: unexpected {outcome!r}")
    # Each iteration is a weighted mean: errors stay relative to max |values| (iterations add up).
    for i, ref in enumerate(_reference(values, image, k, d, zeta, iterations)):
        vmax = float(values[i].abs().max())
        assert_close(outcome[i].double().numpy(), ref, values.dtype, vmax * (1 + iterations), what)


def _outcome(reply, what):
    if reply[0] == "ok":
        return torch.from_numpy(reply[1])
    assert reply[1] in ("ValueError", "TypeError"), f"{what}: {reply}"
    assert names_an_argument(reply[2], NAMES), f"{what}: {reply[2]!r} names no argument"
    return ValueError(reply[2]) if reply[1] == "ValueError" else TypeError(reply[2])


@pytest.mark.parametrize("backend", BACKENDS)
@given(problem=problems(), zeta=ZETAS, k=st.sampled_from([1, 3, 5, 7]), d=st.integers(1, 3),
       iterations=st.integers(0, 3), int_type=st.sampled_from([int, np.int64, np.int32]))
def test_local_filter_matches_loops(guard, backend, problem, zeta, k, d, iterations, int_type):
    values, image, meta = problem
    what = f"{backend} local_filter({meta}, k={k}, d={d}, zeta={zeta:.3g}, iterations={iterations})"
    reply = guard.call("local_filter", backend, values=values, image=image, kernel_size=int_type(k),
                       dilation=int_type(d), zeta=zeta, iterations=int_type(iterations))
    _check(values, image, k, d, zeta, iterations, _outcome(reply, what), what)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(phases=NO_SHRINK)
@given(problem=problems(), zeta=ZETAS,
       k=st.sampled_from([3, 5, 20001, 2**20 + 1, 2**30 + 1, 2**31 + 1, 2**62 + 1]),
       d=st.sampled_from([1, 2, 7, 10**6, 1073741818, 2**31, 2**40]), iterations=st.integers(0, 2))
def test_far_reaching_kernels(guard, backend, problem, zeta, k, d, iterations):
    """Kernels and dilations far past the image: the in-image neighbours only, or a ValueError
    naming the argument; never a crash."""
    values, image, meta = problem
    what = f"{backend} local_filter({meta}, k={k}, d={d}, zeta={zeta:.3g}, iterations={iterations})"
    reply = guard.call("local_filter", backend, values=values, image=image, kernel_size=k, dilation=d, zeta=zeta,
                       iterations=iterations)
    _check(values, image, k, d, zeta, iterations, _outcome(reply, what), what)
