"""The annotated photo sets of ``../shared/data`` as the refinement study reads them.

Every set with ground truth: ``voc_samples`` (5), ``voc_extra`` (5), ``camvid_train`` (80),
``camvid_val`` (20), ``cocostuff`` (13, K = 171), ``cocostuff150`` and ``pennfudan`` (113, K = 2).
``cocostuff150`` is the ADE20K-sized variant: the same photos with K = 150, keeping the 150 classes
of the 171 with the most pixels in these photos (ties by index; the 21 dropped ones are classes
absent from every photo, so no pixel changes class) renumbered in order, any dropped class -> 255.

Photos are resized so that the long side is at most ``max_side`` (513; bilinear for the photo,
nearest for the mask); a set of more than ``per_set`` photos is subsampled evenly over its sorted ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
MAX_SIDE = 513

#: name -> (folder, split in meta.json or None, K override or None, background class or None)
SETS = {
    "voc_samples": ("voc_samples", None, None, 0),
    "voc_extra": ("voc_extra", None, None, 0),
    "camvid_train": ("camvid", "train", None, None),
    "camvid_val": ("camvid", "val", None, None),
    "cocostuff": ("cocostuff", None, None, None),
    "cocostuff150": ("cocostuff", None, 150, None),
    "pennfudan": ("pennfudan", None, None, 0),
}


@dataclass
class PhotoSet:
    name: str
    num_classes: int
    classes: list
    background: int | None
    photos: list = field(default_factory=list)  # (id, image uint8 (H, W, 3), gt (H, W) uint8/255 void)


def _meta(folder: Path) -> dict:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _resize(img: Image.Image, mask: Image.Image, max_side: int):
    w, h = img.size
    s = max_side / max(w, h)
    if s < 1:
        size = (max(1, round(w * s)), max(1, round(h * s)))
        img, mask = img.resize(size, Image.BILINEAR), mask.resize(size, Image.NEAREST)
    return np.array(img.convert("RGB")), np.array(mask)


def _spread(ids: list, n: int | None) -> list:
    if n is None or n >= len(ids):
        return list(ids)
    return [ids[(i * len(ids)) // n] for i in range(n)]


def _keep_most_frequent(masks: list, k_from: int, k_to: int) -> np.ndarray:
    """A lookup table (256,) mapping the ``k_to`` classes with most pixels to 0..k_to-1, the rest to 255."""
    counts = np.zeros(k_from, np.int64)
    for m in masks:
        v = m[m < k_from]
        counts += np.bincount(v.ravel(), minlength=k_from)[:k_from]
    keep = np.sort(np.argsort(-counts, kind="stable")[:k_to])
    lut = np.full(256, 255, np.uint8)
    lut[keep] = np.arange(k_to)
    return lut


def load_set(root: Path, name: str, *, per_set: int | None = None, max_side: int = MAX_SIDE,
             per_set_large: int | None = None, large_k: int = 100, exclude: int | None = None) -> PhotoSet:
    """Read set ``name`` (a key of :data:`SETS`) under ``root``; an empty PhotoSet if it is missing.
    ``per_set`` photos (all when None), ``per_set_large`` for a set with more than ``large_k`` classes.
    ``exclude``: first leave out the photos a run with ``per_set=exclude`` would pick (held-out photos)."""
    folder_name, split, k_override, background = SETS[name]
    folder = Path(root) / folder_name
    meta = _meta(folder)
    k = int(meta.get("num_classes", 21))
    classes = list(meta.get("classes", VOC_CLASSES))
    if split is not None:
        ids = sorted(meta.get("splits", {}).get(split, []))
    else:
        ids = sorted(p.stem for p in (folder / "masks").glob("*.png"))
    ids = [i for i in ids if (folder / "images" / f"{i}.png").is_file() and (folder / "masks" / f"{i}.png").is_file()]
    every_id = list(ids)
    if exclude is not None:
        used = set(_spread(ids, exclude))
        ids = [i for i in ids if i not in used]
    out = PhotoSet(name, k, classes, background)
    if not ids:
        return out
    lut = None
    if k_override is not None and k_override < k:
        # class frequencies over every photo of the folder (not just the subsample), so the mapping is fixed
        every = [np.array(Image.open(folder / "masks" / f"{i}.png")) for i in every_id]
        lut = _keep_most_frequent(every, k, k_override)
        out.classes = [c for c, j in zip(classes, lut[:k], strict=False) if j != 255]
        out.num_classes = k_override
    if out.num_classes > large_k and per_set_large is not None:
        per_set = per_set_large if per_set is None else min(per_set, per_set_large)
    for i in _spread(ids, per_set):
        img, gt = _resize(Image.open(folder / "images" / f"{i}.png"), Image.open(folder / "masks" / f"{i}.png"),
                          max_side)
        if lut is not None:
            gt = lut[gt]
        out.photos.append((i, img, gt.astype(np.uint8)))
    return out
