"""Fixtures that write tiny datasets in each benchmark's exact on-disk layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipapro.io import voc_palette

SIZES = [(5, 7), (6, 4), (8, 8)]  # (H, W) per sample: odd sizes catch H/W swaps


def save_jpg(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=95)


def save_index_png(path: Path, labels: np.ndarray, *, palette: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(labels.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        img.putpalette(voc_palette())
    img.save(path, format="PNG")


def random_labels(rng, shape, num_classes: int, *, ignore_frac: float = 0.15) -> np.ndarray:
    lab = rng.integers(0, num_classes, size=shape)
    lab[rng.random(shape) < ignore_frac] = 255
    return lab


def write_voc(root: Path, rng, *, splits=("train", "val"), aug: bool = False) -> dict:
    """VOCdevkit/VOC2012 with palette PNG masks (0..20, 255 border); returns {id: mask}."""
    base = root / "VOCdevkit" / "VOC2012"
    masks, ids = {}, []
    for n, (h, w) in enumerate(SIZES):
        sid = f"2007_{n:06d}"
        ids.append(sid)
        save_jpg(base / "JPEGImages" / f"{sid}.jpg", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        masks[sid] = random_labels(rng, (h, w), 21)
        save_index_png(base / "SegmentationClass" / f"{sid}.png", masks[sid], palette=True)
        if aug:
            save_index_png(base / "SegmentationClassAug" / f"{sid}.png", masks[sid], palette=False)
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    for split in splits:
        (sets / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return masks


def write_context(root: Path, rng) -> dict:
    """VOCdevkit/VOC2010 in mmseg's PASCAL Context layout (L-mode PNGs 0..59); returns {id: mask}."""
    base = root / "VOCdevkit" / "VOC2010"
    masks = {}
    for n, (h, w) in enumerate(SIZES):
        sid = f"2008_{n:06d}"
        save_jpg(base / "JPEGImages" / f"{sid}.jpg", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        masks[sid] = rng.integers(0, 60, size=(h, w))
        save_index_png(base / "SegmentationClassContext" / f"{sid}.png", masks[sid], palette=False)
    sets = base / "ImageSets" / "SegmentationContext"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("\n".join(masks) + "\n")
    return masks


UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)


def write_cocostuff(root: Path, rng) -> tuple[dict, dict]:
    """images/val2017 + annotations/val2017 with raw stuffthingmaps <id>.png (0..181/255) and the
    matching <id>_labelTrainIds.png; returns ({id: raw}, {id: train ids})."""
    used = np.array([r for r in range(182) if r not in UNUSED])
    raws, trains = {}, {}
    for n, (h, w) in enumerate(SIZES):
        sid = f"{n + 1:012d}"
        save_jpg(root / "images" / "val2017" / f"{sid}.jpg", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        train = random_labels(rng, (h, w), 171)
        raw = np.where(train == 255, 255, used[np.minimum(train, 170)])
        raws[sid], trains[sid] = raw, train
        save_index_png(root / "annotations" / "val2017" / f"{sid}.png", raw, palette=False)
        save_index_png(root / "annotations" / "val2017" / f"{sid}_labelTrainIds.png", train, palette=False)
    return raws, trains


@pytest.fixture
def voc_root(tmp_path, rng):
    masks = write_voc(tmp_path, rng)
    return tmp_path / "VOCdevkit" / "VOC2012", masks


@pytest.fixture
def context_root(tmp_path, rng):
    masks = write_context(tmp_path, rng)
    return tmp_path / "VOCdevkit" / "VOC2010", masks


@pytest.fixture
def coco_root(tmp_path, rng):
    raws, trains = write_cocostuff(tmp_path / "coco_stuff164k", rng)
    return tmp_path / "coco_stuff164k", raws, trains
