"""Fixtures for the zero-annotation pipeline tests: a tiny folder dataset in the real on-disk layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

CLASSES = "background, red, green"


def write_toy_folder(root, *, n: int = 8, size=(32, 48), seed: int = 0, ids_prefix: str = "img"):
    """``root/images/<id>.png`` + ``root/masks/<id>.png``: noisy grey background (class 0) with a red
    (class 1) and a green (class 2) rectangle at random places; every image is different."""
    rng = np.random.default_rng(seed)
    h, w = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img = rng.normal(120, 12, (h, w, 3))
        mask = np.zeros((h, w), np.uint8)
        for cls, colour in ((1, (220, 40, 40)), (2, (40, 200, 60))):
            rh, rw = rng.integers(h // 4, h // 2), rng.integers(w // 4, w // 2)
            top, left = rng.integers(0, h - rh), rng.integers(0, w - rw)
            img[top:top + rh, left:left + rw] = rng.normal(colour, 12, (rh, rw, 3))
            mask[top:top + rh, left:left + rw] = cls
        mask[0, :3] = 255  # a few void pixels, as in VOC
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / f"{ids_prefix}{k:02d}.png")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"{ids_prefix}{k:02d}.png")
    return root


@pytest.fixture
def toy_root(tmp_path):
    return write_toy_folder(tmp_path / "toy")
