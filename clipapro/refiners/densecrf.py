"""DenseCRF (Krähenbühl & Koltun, NeurIPS 2011) through ``pydensecrf2``, for benchmarking only.

Settings are the ones every pydensecrf user starts from (its README and the DeepLab post-processing):
a Gaussian smoothness kernel (sxy=3, compat=3) and a bilateral appearance kernel (sxy=80, srgb=13,
compat=10), Potts compatibility, 5 mean-field iterations. The package is imported lazily.
"""

from __future__ import annotations

import numpy as np
import torch

from clipapro.refiners.registry import register_refiner


def _import():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("method 'densecrf' needs the optional package pydensecrf2 "
                          "(pip install pydensecrf2)") from err
    return dcrf


@register_refiner("densecrf", requires=[("pydensecrf", "pydensecrf2")])
@torch.no_grad()
def densecrf(image: torch.Tensor, probs: torch.Tensor, *, iterations: int = 5, sxy_gaussian: float = 3.0,
             compat_gaussian: float = 3.0, sxy_bilateral: float = 80.0, srgb: float = 13.0,
             compat_bilateral: float = 10.0) -> torch.Tensor:
    """DenseCRF via pydensecrf2 (baseline): (B, 3, H, W) image in [0, 1], (B, K, H, W) probs -> marginals.

    Example:
        >>> img = torch.rand(1, 3, 16, 16)
        >>> densecrf(img, torch.softmax(torch.randn(1, 3, 16, 16), 1)).shape  # doctest: +SKIP
        torch.Size([1, 3, 16, 16])
    """
    dcrf = _import()
    b, k, h, w = probs.shape
    out = []
    for i in range(b):
        rgb = np.ascontiguousarray((image[i].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8))
        unary = np.ascontiguousarray(-np.log(probs[i].reshape(k, -1).numpy().clip(1e-8, 1)), dtype=np.float32)
        crf = dcrf.DenseCRF2D(w, h, k)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=sxy_gaussian, compat=compat_gaussian)
        crf.addPairwiseBilateral(sxy=sxy_bilateral, srgb=srgb, rgbim=rgb, compat=compat_bilateral)
        q = np.array(crf.inference(int(iterations)), dtype=np.float32).reshape(k, h, w)
        out.append(torch.from_numpy(q))
    q = torch.stack(out).clamp_min(0)
    return q / q.sum(1, keepdim=True).clamp_min(1e-12)
