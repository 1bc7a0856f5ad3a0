"""clipapro.refine: valid probabilities, determinism, class counts, sizes, bad inputs, registry."""

import numpy as np
import pytest
import torch

import clipapro
from clipapro.refiners import DEFAULT_METHOD, get_refiner, list_refiners, refine, refiner_defaults, register_refiner

# DenseCRF is an optional benchmark dependency; every other method must run everywhere.
METHODS = [m for m in list_refiners() if m != "densecrf"]
try:
    import pydensecrf.densecrf  # noqa: F401

    METHODS.append("densecrf")
except ImportError:
    pass


def _scene(h=24, w=32, k=3, seed=0):
    """Two-region photo and a noisy prediction that mostly agrees with it."""
    g = torch.Generator().manual_seed(seed)
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2:] = (200, 40, 40)
    img[:, :w // 2] = (30, 90, 200)
    logits = torch.randn(k, h, w, generator=g)
    if k > 1:
        logits[0, :, : w // 2] += 2
        logits[1, :, w // 2:] += 2
    return img, torch.softmax(logits, 0)


def _check_probs(out, shape):
    assert tuple(out.shape) == tuple(shape)
    out = torch.as_tensor(out)
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0
    torch.testing.assert_close(out.sum(-3), torch.ones_like(out.sum(-3)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_valid_and_deterministic(method):
    img, p = _scene()
    a = refine(img, p, method=method)
    b = refine(img, p, method=method)
    _check_probs(a, p.shape)
    assert torch.equal(a, b)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("k", [1, 2, 200])
def test_class_counts(method, k):
    img, p = _scene(h=12, w=10, k=k)
    _check_probs(refine(img, p, method=method), p.shape)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (5, 1), (2, 3)])
def test_tiny_images(method, size):
    img, p = _scene(*size, k=3)
    _check_probs(refine(img, p, method=method), p.shape)


@pytest.mark.parametrize("method", ["auto", "pamr", "apro"])
def test_larger_image_and_batch(method):
    rng = np.random.default_rng(0)
    img = torch.rand(2, 3, 300, 260)
    p = torch.softmax(torch.from_numpy(rng.standard_normal((2, 5, 300, 260)).astype(np.float32)), 1)
    out = refine(img, p, method=method)
    _check_probs(out, p.shape)
    one = refine(img[1], p[1], method=method)  # batch elements are independent
    torch.testing.assert_close(out[1], one, atol=1e-5, rtol=0)


def test_default_cleans_a_noisy_two_region_prediction():
    img, p = _scene(h=64, w=64, k=3, seed=1)
    truth = torch.zeros(64, 64, dtype=torch.long)
    truth[:, 32:] = 1
    before = (p.argmax(0) == truth).float().mean()
    after = (refine(img, p).argmax(0) == truth).float().mean()
    assert after > before and after > 0.97


def test_numpy_in_numpy_out_and_logits():
    img, p = _scene()
    logits = torch.log(p) + 3.0  # softmax-invariant shift: unnormalised scores
    a = refine(img, p.numpy(), method="pamr")
    b = refine(img, logits, method="pamr", logits=True)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_allclose(a, b.numpy(), atol=1e-5)


def test_float_image_equals_uint8_image():
    img, p = _scene()
    f = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(refine(img, p), refine(f, p))


def test_registry_and_auto():
    assert DEFAULT_METHOD in list_refiners() and get_refiner("auto").name == DEFAULT_METHOD
    assert {"apro", "apro-gp", "apro-lp", "crf-tree", "pamr", "densecrf", "none"} <= set(list_refiners())
    assert all(callable(get_refiner(m).fn) for m in list_refiners())
    assert get_refiner("apro").accepts_tree and not get_refiner("pamr").accepts_tree
    img, p = _scene()
    torch.testing.assert_close(refine(img, p, method="none"), p)
    torch.testing.assert_close(refine(img, p), refine(img, p, method=DEFAULT_METHOD))
    torch.testing.assert_close(clipapro.refine(img, p), refine(img, p))


def test_apro_method_is_the_papers_apro():
    img, p = _scene()
    f = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
    torch.testing.assert_close(refine(img, p, method="apro"), clipapro.apro(p[None], f)[0])


@pytest.mark.parametrize("bad, match", [
    (lambda img, p: (img, p * 2), "sum to one"),
    (lambda img, p: (img, -p), "non-negative"),
    (lambda img, p: (img, p[:, :-1]), "H x W"),
    (lambda img, p: (img[:-2], p), "H x W"),
    (lambda img, p: (img, torch.where(p > 0.5, float("nan"), p)), "NaN"),
    (lambda img, p: (img.astype(np.float32), p), "must have shape|\\[0, 1\\]"),
    (lambda img, p: (img[..., :2], p), "shape"),
    (lambda img, p: (img, p[0]), "shape"),
    (lambda img, p: (img, p[:0]), "empty"),
    (lambda img, p: (img, p.long()), "floating"),
    (lambda img, p: ("photo.png", p), "numpy array, torch.Tensor or PIL image"),
    (lambda img, p: (np.stack([img, img]), p[None]), "batch"),
])
def test_bad_inputs(bad, match):
    img, p = _scene()
    image, probs = bad(img, p)
    with pytest.raises((ValueError, TypeError), match=match):
        refine(image, probs)


def test_bad_method_and_options():
    img, p = _scene()
    with pytest.raises(ValueError, match="unknown refiner 'nope'"):
        refine(img, p, method="nope")
    with pytest.raises(TypeError, match="not_an_option"):
        refine(img, p, method="crf-tree", not_an_option=1)
    with pytest.raises(TypeError, match="tree"):  # only methods that declare accepts_tree take one
        refine(img, p, method="pamr", tree=None)
    with pytest.raises(ValueError, match="w_tree"):
        refine(img, p, method="crf-tree", w_tree=-1)
    with pytest.raises(ValueError, match="guide"):
        refine(img, p, method="crf-tree", guide="hsv")


def test_apro_parts_are_the_papers_targets():
    img, p = _scene()
    f = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
    parts = clipapro.apro(p[None], f, return_parts=True)
    torch.testing.assert_close(refine(img, p, method="apro-gp"), parts.global_[0])
    torch.testing.assert_close(refine(img, p, method="apro-lp"), parts.local[0])


def test_defaults_are_read_from_the_signatures():
    import inspect

    from clipapro.refiners.pamr import pamr

    params = inspect.signature(pamr).parameters
    assert refiner_defaults("pamr") == {k: params[k].default for k in ("steps", "dilations")}
    apro_params = inspect.signature(clipapro.apro).parameters
    assert refiner_defaults("apro")["zeta_g"] == apro_params["zeta_g"].default
    assert "return_parts" not in refiner_defaults("apro") and "tree" not in refiner_defaults("apro")


def test_register_refiner_decorator_and_requirements():
    from clipapro.refiners import registry

    @register_refiner("test-double", requires=[("clipapro_no_such_module", "no-such-pkg")])
    def _double(image, probs, *, factor: float = 2.0):
        return probs

    try:
        assert "test-double" in list_refiners() and refiner_defaults("test-double") == {"factor": 2.0}
        img, p = _scene()
        with pytest.raises(ImportError, match="no-such-pkg"):
            refine(img, p, method="test-double")
    finally:
        registry._REFINERS.pop("test-double")
    with pytest.raises(ValueError, match="auto"):
        register_refiner("auto")
    with pytest.raises(TypeError, match="image, probs"):
        register_refiner("one-arg")(lambda probs: probs)
