import numpy as np
import pytest
import torch

from clipapro.propagation import LocalFilter, _twins, local_filter

from ._reference import loop_local_filter


@pytest.mark.parametrize("k, dilation, iterations", [(5, 1, 3), (3, 2, 2), (1, 1, 4), (5, 3, 1), (7, 1, 2)])
def test_matches_loop_reference(backend, k, dilation, iterations):
    rng = np.random.default_rng(k * 10 + dilation)
    for h, w in [(6, 7), (1, 5), (5, 1), (1, 1), (9, 4)]:
        values, image = rng.random((3, h, w)), rng.random((3, h, w))
        got = local_filter(torch.from_numpy(values)[None], torch.from_numpy(image)[None], kernel_size=k,
                           dilation=dilation, zeta=0.3, iterations=iterations)[0].numpy()
        ref = loop_local_filter(values, image, k, dilation, 0.3, iterations)
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_identity_cases(backend):
    v, img = torch.rand(2, 3, 8, 9, dtype=torch.float64), torch.rand(2, 3, 8, 9, dtype=torch.float64)
    torch.testing.assert_close(local_filter(v, img, iterations=0), v)
    torch.testing.assert_close(local_filter(v, img, kernel_size=1), v)


def test_constant_values_stay_constant_and_probabilities_stay_normalised(backend):
    img = torch.rand(1, 3, 12, 10, dtype=torch.float64)
    const = torch.full((1, 2, 12, 10), 0.7, dtype=torch.float64)
    torch.testing.assert_close(local_filter(const, img), const)
    probs = torch.softmax(torch.randn(1, 4, 12, 10, dtype=torch.float64), 1)
    torch.testing.assert_close(local_filter(probs, img).sum(1), torch.ones(1, 12, 10, dtype=torch.float64))


def test_compiled_equals_twin_and_batch_independence():
    v = torch.rand(3, 5, 17, 23, dtype=torch.float64)
    img = torch.rand(3, 3, 17, 23, dtype=torch.float64)
    out = local_filter(v, img, kernel_size=5, dilation=2, zeta=0.2, iterations=6)
    twin = _twins.local_filter(v, img, 5, 2, 0.2, 6)
    torch.testing.assert_close(out, twin, rtol=1e-10, atol=1e-12)
    for i in range(3):
        torch.testing.assert_close(out[i:i + 1], local_filter(v[i:i + 1], img[i:i + 1], kernel_size=5, dilation=2,
                                                              zeta=0.2, iterations=6))


def test_float32_and_layouts(backend):
    v = torch.rand(1, 4, 20, 16)
    img = torch.rand(1, 3, 20, 16)
    ref = local_filter(v.double(), img.double(), iterations=5)
    out = local_filter(v.to(memory_format=torch.channels_last), img[..., :].transpose(2, 3).transpose(2, 3),
                       iterations=5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-6)


def test_module_equals_function(backend):
    v, img = torch.rand(1, 2, 8, 8), torch.rand(1, 3, 8, 8)
    m = LocalFilter(kernel_size=3, dilation=2, zeta=0.2, iterations=4)
    torch.testing.assert_close(m(v, img), local_filter(v, img, kernel_size=3, dilation=2, zeta=0.2, iterations=4))
    assert "kernel_size=3" in repr(m)
