"""Regression tests for hostile inputs to the propagation core (issue #14): crashes, silent wrong
results, NaN/Inf from finite inputs, numpy scalars, thread counts. Calls that used to crash the
interpreter run in the guarded worker (tests/fuzz/_guard.py), so a regression fails one test."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import clipapro
from clipapro import _ext
from clipapro.propagation import KruskalTree, apro, kruskal_tree, local_filter, tree_filter

from ._reference import brute_kruskal_filter, brute_tree_filter, loop_local_filter

BACKENDS = ["compiled", "twin"]


def _ok(reply):
    assert reply[0] == "ok", f"expected a result, got {reply}"
    return reply[1]


def _refused(reply, exc, *words):
    assert reply[0] == "error" and reply[1] == exc, f"expected {exc}, got {reply}"
    for word in words:
        assert word in reply[2], f"{word!r} not in {reply[2]!r}"
    return reply[2]


def _image(h=8, w=8, c=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, c, h, w, generator=g, dtype=dtype), torch.rand(1, 3, h, w, generator=g, dtype=dtype)


# 1. crashes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dilation", [(2**32 - 8) // 2, 1073741818])
def test_dilation_past_any_image_is_refused(guard, backend, dilation):
    v, g = _image()
    _refused(guard.call("local_filter", backend, values=v.numpy(), image=g.numpy(), dilation=dilation),
             "ValueError", "dilation", "2^29")


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_reaching_past_the_image_use_the_pixels_inside(guard, backend):
    v, g = _image()
    ref = loop_local_filter(v[0].double().numpy(), g[0].double().numpy(), 15, 1, 0.15, 20)
    for kw in (dict(kernel_size=20001), dict(kernel_size=15), dict(kernel_size=2**20 + 1, dilation=3)):
        if kw.get("dilation") == 3:
            ref_k = loop_local_filter(v[0].double().numpy(), g[0].double().numpy(), 5, 3, 0.15, 20)
        else:
            ref_k = ref
        y = _ok(guard.call("local_filter", backend, values=v.numpy(), image=g.numpy(), **kw))
        np.testing.assert_allclose(y[0], ref_k, atol=1e-5)
    # every neighbour outside: the identity
    y = _ok(guard.call("local_filter", backend, values=v.numpy(), image=g.numpy(), dilation=10**6))
    np.testing.assert_array_equal(y, v.numpy())


def test_local_filter_that_cannot_fit_in_memory_names_the_sizes(guard):
    v, g = _image(362, 362, c=1)
    for backend in BACKENDS:
        msg = _refused(guard.call("local_filter", backend, values=v.numpy(), image=g.numpy(), kernel_size=1001),
                       "MemoryError", "(1, 1, 362, 362)", "kernel_size=1001", "MiB")
        assert "bad_alloc" not in msg


def test_core_checks_memory_itself(guard):
    """The binding, called without the Python layer, refuses too (and names the sizes)."""
    pytest.importorskip("clipapro._C")
    from clipapro import _C

    v, g = _image(362, 362, c=1)
    with pytest.raises(MemoryError, match=r"local_filter of values \(1, 1, 362, 362\).*MiB"):
        _C.local_filter(v.numpy(), g.numpy(), 1001, 1, 0.15, 1, 1)


def _tree_arrays(h=3, w=3, seed=0):
    _, g = _image(h, w, seed=seed)
    kt = kruskal_tree(g)
    return kt, kt.parent.numpy().copy(), kt.height.numpy().copy()


def _as_worker_tree(kt, parent, height, size=None):
    return dict(kind="KruskalTree", parent=parent, height=height, edges=kt.edges.numpy(),
                edge_weights=kt.edge_weights.numpy(), size=list(size or kt.size))


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupted_kruskal_trees_are_refused(guard, backend):
    kt, parent, height = _tree_arrays()
    n = 9
    v = torch.rand(1, 2, 3, 3)

    def attempt(p, h):
        return guard.call("tree_filter", backend, values=v.numpy(), guide=_as_worker_tree(kt, p, h), zeta=0.1)

    for where, value, words in [
        (3, 10**6, ["parent[3] = 1000000", "[9, 17)"]),  # the out-of-range link
        (3, -(2**31), ["parent[3]"]),
        (0, 2 * n - 1, ["parent[0]"]),
        (n, n + 1, ["root"]),  # the root must have parent -1
        (n + 1, n + 5, ["come before it"]),  # a link forward: a cycle or a node below its child
        (n + 2, n + 2, ["come before it"]),  # its own parent
    ]:
        p = parent.copy()
        p[0, where] = value
        _refused(attempt(p, height), "ValueError", "guide is not a valid KruskalTree", *words)
    p = parent.copy()  # a node with three children (and one with one)
    leaves_of = {int(q): [i for i in range(n) if parent[0, i] == q] for q in set(parent[0, :n].tolist())}
    two = next(q for q, kids in leaves_of.items() if len(kids) == 2)
    other = next(i for i in range(n) if parent[0, i] != two)
    p[0, other] = two
    _refused(attempt(p, height), "ValueError", "more than two children")
    for bad in (np.nan, np.inf, -1.0):
        h = height.copy()
        h[0, 2] = bad
        _refused(attempt(parent, h), "ValueError", "height[2]")
    h = height.copy()
    h[0, 0] = -0.0
    h[0, 1:] = h[0, 1:] + 1.0  # children above the root
    _refused(attempt(parent, h), "ValueError", "never lower")
    _refused(guard.call("tree_filter", backend, values=v.numpy(), guide=_as_worker_tree(kt, parent.astype(np.int64),
                                                                                         height), zeta=0.1),
             "TypeError", "guide.parent")
    _refused(guard.call("tree_filter", backend, values=v.numpy(), guide=_as_worker_tree(kt, parent[:, :-1], height),
                        zeta=0.1), "ValueError", "guide.parent")
    # A sound tree, even one altered from the built tree, is used as it is.
    p = parent.copy()
    a, b = next((i, j) for i in range(n) for j in range(n) if parent[0, i] != parent[0, j])
    p[0, [a, b]] = p[0, [b, a]]
    y = _ok(attempt(p, height))
    ref = brute_kruskal_filter(v[0].double().numpy(), p[0], height[0], 0.1, dtype=np.float32)
    np.testing.assert_allclose(y[0], ref, atol=1e-5)


def test_refine_command_with_a_huge_dilation_exits_cleanly(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    np.save(tmp_path / "probs.npy", np.full((2, 8, 8), 0.5, np.float32))
    proc = subprocess.run([sys.executable, "-m", "clipapro", "refine", str(tmp_path / "photo.png"),
                           str(tmp_path / "probs.npy"), "--out", str(tmp_path / "out.npy"), "--refine", "apro",
                           "--refine-opt", "dilation=1073741818"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-2000:]}"  # a bad argument
    assert "dilation" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# 2. the twin's self-excluded sum ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_excluded_sum_matches_brute_force(backend):
    rng = np.random.default_rng(3)
    values, guide = rng.random((1, 2, 5, 5)), rng.random((1, 3, 5, 5))
    ref = brute_tree_filter(values[0], guide[0], 0.05, include_self=False)
    if backend == "twin":
        saved, _ext._STATE["ext"] = _ext.get_ext(), None
    elif not _ext.has_ext():
        pytest.skip("compiled core not built")
    try:
        for prebuilt in (False, True):
            g = torch.from_numpy(guide)
            y = tree_filter(torch.from_numpy(values), kruskal_tree(g) if prebuilt else g, zeta=0.05,
                            include_self=False)
            np.testing.assert_allclose(y[0].numpy(), ref, rtol=0, atol=1e-12)
    finally:
        if backend == "twin":
            _ext._STATE["ext"] = saved


# 3. finite inputs, finite outputs --------------------------------------------------------------


def _patch_guide(dtype, h=8, w=8):
    g = torch.rand(1, 3, h, w, dtype=dtype)
    g[..., :4, :4] = 0.5  # a constant patch: distances 0 inside it
    return g


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype, zeta", [(torch.float32, 1e-20), (torch.float32, 1e-30),
                                         (torch.float64, 1e-155), (torch.float64, 1e-200)])
def test_zeta_whose_square_underflows(backend, dtype, zeta):
    """Affinity 1 on ties, 0 elsewhere: the patch averages, every other pixel keeps its value."""
    g = _patch_guide(dtype)
    v = torch.rand(1, 2, 8, 8, dtype=dtype)
    expected = v.clone()
    expected[..., :4, :4] = v[..., :4, :4].mean((-1, -2), keepdim=True)
    saved = _ext.get_ext()
    if backend == "twin":
        _ext._STATE["ext"] = None
    elif saved is None:
        pytest.skip("compiled core not built")
    try:
        gp = tree_filter(v, g, zeta=zeta)
        lp = local_filter(v, g, zeta=zeta, iterations=3)
    finally:
        _ext._STATE["ext"] = saved
    torch.testing.assert_close(gp, expected)
    assert torch.isfinite(lp).all()
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[:5, :5] = False  # the patch and its one-pixel rim mix; the rest is untouched
    torch.testing.assert_close(lp[..., outside], v[..., outside])
    ref = loop_local_filter(v[0].double().numpy(), g[0].double().numpy(), 5, 1, zeta, 3)
    np.testing.assert_allclose(lp[0].double().numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_guide_and_zeta_scaled_together(dtype):
    v, g = _image(dtype=dtype)
    tol = dict(atol=2e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(tree_filter(v, g * 1e30, zeta=1e30), tree_filter(v, g, zeta=1.0), **tol)
    torch.testing.assert_close(local_filter(v, g * 1e30, zeta=1e30), local_filter(v, g, zeta=1.0), **tol)
    torch.testing.assert_close(tree_filter(v, g * 1e-30, zeta=1e-31), tree_filter(v, g, zeta=0.1), **tol)
    with pytest.raises(ValueError, match="guide has values up to .* overflow"):
        kruskal_tree(g * (1e30 if dtype == torch.float32 else 1e160))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_near_the_largest_float(dtype):
    top = torch.finfo(dtype).max
    v, g = _image(dtype=dtype)
    x = top * (0.5 + 0.5 * v)
    for y in (tree_filter(x, g, zeta=0.1), tree_filter(x, kruskal_tree(g), zeta=0.1), local_filter(x, g),
              tree_filter(x, g, zeta=0.1, include_self=False)):
        assert torch.isfinite(y).all()
        assert (y >= 0.5 * top * (1 - 1e-6)).all() and (y <= top).all()
    ref = brute_tree_filter((v[0] * 0.5 + 0.5).double().numpy(), g[0].double().numpy(), 0.1)
    np.testing.assert_allclose(tree_filter(x, g, zeta=0.1)[0].double().numpy() / top, ref, rtol=1e-4)
    with pytest.raises(ValueError, match="values has values up to .* unnormalised sums overflow"):
        tree_filter(x, g, zeta=10.0, normalize=False)


def test_refine_and_apro_with_tiny_zetas():
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    img[:8] = 128  # flat half: ties
    p = torch.softmax(torch.randn(3, 16, 16), 0)
    for method, opts in [("apro-lp", dict(zeta_s=1e-30)), ("apro", dict(zeta_g=1e-30, zeta_label=1e-30)),
                         ("apro-gp", dict(zeta_g=1e-30))]:
        out = clipapro.refine(img, p, method=method, **opts)
        assert torch.isfinite(out).all(), method
        torch.testing.assert_close(out.sum(0), torch.ones(16, 16))
    image = torch.zeros(1, 3, 16, 16)
    assert torch.isfinite(apro(p[None], image, zeta_g=1e-30, zeta_label=1e-30, zeta_s=1e-30)).all()
    for name in ("zeta_g", "zeta_label", "zeta_s"):
        with pytest.raises(ValueError, match=name):
            apro(p[None], image, **{name: 0.0})
    with pytest.raises(ValueError, match="image has values up to"):
        apro(p[None], torch.full((1, 3, 16, 16), 1e30).add_(torch.rand(1, 3, 16, 16) * 1e30))


# 4. numpy scalars ------------------------------------------------------------------------------


def test_numpy_scalars_are_numbers():
    v, g = _image()
    ref = local_filter(v, g, kernel_size=3, dilation=2, zeta=0.25, iterations=4)
    got = local_filter(v, g, kernel_size=np.int64(3), dilation=np.int32(2), zeta=np.float32(0.25),
                       iterations=np.uint8(4))
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(tree_filter(v, g, zeta=np.float64(0.1)), tree_filter(v, g, zeta=0.1))
    for kw, name in [(dict(zeta=True), "zeta"), (dict(zeta=np.bool_(True)), "zeta"),
                     (dict(kernel_size=True), "kernel_size"), (dict(kernel_size=np.bool_(True)), "kernel_size"),
                     (dict(kernel_size=np.float64(5.0)), "kernel_size"),
                     (dict(iterations=np.float32(2)), "iterations")]:
        with pytest.raises(TypeError, match=name):
            local_filter(v, g, **kw)
    with pytest.raises(ValueError, match="iterations must be <= 2147483647"):
        local_filter(v, g, iterations=2**31)


# 5. CLIPAPRO_NUM_THREADS -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["2147483648", "1000", str(10**30)])
def test_too_many_threads_are_capped_with_one_warning(monkeypatch, value):
    if not _ext.has_ext():
        pytest.skip("the thread count is read by the compiled path")
    v, g = _image(64, 64)
    ref = tree_filter(v, g, zeta=0.1)
    monkeypatch.setenv("CLIPAPRO_NUM_THREADS", value)
    monkeypatch.setitem(_ext._STATE, "thread_warning", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _ext.num_threads() == _ext.thread_cap()
        y = tree_filter(v, g, zeta=0.1)
        local_filter(v, g)
    mine = [w for w in caught if "CLIPAPRO_NUM_THREADS" in str(w.message)]
    assert len(mine) == 1 and "cores" in str(mine[0].message)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)


@pytest.mark.parametrize("value", ["0", "-1", "-2147483649"])
def test_thread_counts_below_one_are_refused(monkeypatch, value):
    monkeypatch.setenv("CLIPAPRO_NUM_THREADS", value)
    with pytest.raises(ValueError, match="CLIPAPRO_NUM_THREADS must be >= 1"):
        _ext.num_threads()


def test_thread_cap_follows_the_cpu_affinity():
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _ext.core_count() == cores
    assert _ext.thread_cap() == max(2, cores)


def test_kruskal_tree_fields_are_checked():
    v, _ = _image(3, 3)
    kt, parent, height = _tree_arrays()
    with pytest.raises(ValueError, match=r"guide.size must be a tuple"):
        tree_filter(v, KruskalTree(kt.parent, kt.height, kt.edges, kt.edge_weights, [3, 3]), zeta=0.1)
    with pytest.raises(TypeError, match=r"guide.height must be a torch.Tensor"):
        tree_filter(v, KruskalTree(kt.parent, height.tolist(), kt.edges, kt.edge_weights, (3, 3)), zeta=0.1)
    with pytest.raises(ValueError, match="at most 2\\^29"):
        tree_filter(torch.zeros(1).expand(1, 1, 1, 2**29 + 1), torch.zeros(1).expand(1, 1, 1, 2**29 + 1), zeta=1.0)
