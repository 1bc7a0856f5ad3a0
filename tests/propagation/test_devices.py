import pytest
import torch

from clipapro.propagation import apro, grid_mst, local_filter, tree_filter

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_cuda_inputs_come_back_on_cuda_and_match_cpu():
    v = torch.rand(2, 3, 20, 24, dtype=torch.float64)
    img = torch.rand(2, 3, 20, 24, dtype=torch.float64)
    vc, ic = v.cuda(), img.cuda()
    for fn in (lambda a, b: tree_filter(a, b, zeta=0.1), lambda a, b: local_filter(a, b), apro):
        out = fn(vc, ic)
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fn(v, img), rtol=1e-9, atol=1e-12)
    edges, weights = grid_mst(ic)
    assert edges.device.type == "cuda" and weights.device.type == "cuda"


@cuda
def test_mixed_devices_rejected():
    with pytest.raises(ValueError, match="is on"):
        tree_filter(torch.rand(1, 2, 4, 4).cuda(), torch.rand(1, 3, 4, 4), zeta=0.1)
