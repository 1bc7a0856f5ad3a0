"""Fixtures for the zero-annotation pipeline tests: a tiny folder dataset in the real on-disk layout."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clipapro.io import voc_palette

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
        name = f"{ids_prefix}{k:02d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / name)
        Image.fromarray(mask, mode="L").save(root / "masks" / name)
    return root


@pytest.fixture
def toy_root(tmp_path):
    return write_toy_folder(tmp_path / "toy")


TINY_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2,
                                              "head_width": 16},
             "text_cfg": {"width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="session")
def tiny_clip_args(tmp_path_factory):
    """CLI options for a tiny randomly initialised open_clip ViT (config file, no weights) and a cheap
    APro (3 LP iterations)."""
    import json

    path = tmp_path_factory.mktemp("clip") / "tiny-vit.json"
    path.write_text(json.dumps(TINY_CLIP))
    return ["--model", str(path), "--model-opt", "random_init=True", "--templates", "single",
            "--refine", "apro", "--refine-opt", "iterations=3", "--device", "cpu", "--no-progress"]


@pytest.fixture
def voc_root(tmp_path):
    """A two-image PASCAL VOC 2012 devkit layout (JPEGImages, SegmentationClass, ImageSets)."""
    base = tmp_path / "VOCdevkit" / "VOC2012"
    (base / "JPEGImages").mkdir(parents=True)
    (base / "SegmentationClass").mkdir()
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    rng = np.random.default_rng(1)
    ids = ["2007_000001", "2007_000002"]
    for i in ids:
        image = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
        image.save(base / "JPEGImages" / f"{i}.jpg")
        mask = Image.fromarray(rng.integers(0, 21, (24, 40), dtype=np.uint8), mode="P")
        mask.putpalette(voc_palette())  # a palette PNG without a palette reads back remapped (Pillow 13)
        mask.save(base / "SegmentationClass" / f"{i}.png")
    (base / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids) + "\n")
    return base
