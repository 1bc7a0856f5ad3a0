"""COCO-Stuff 164k with 171 classes (``cocostuff171``) and the raw-id -> train-id conversion.

Layout (mmsegmentation's, after ``tools/dataset_converters/coco_stuff164k.py``)::

    images/{train2017,val2017}/<id>.jpg
    annotations/{train2017,val2017}/<id>_labelTrainIds.png    train ids 0..170, 255 = unlabeled

The raw ``stuffthingmaps_trainval2017`` PNGs hold ``COCO category id - 1``: 0..181 (80 things among
ids 0..90, 91 stuff classes 91..181) and 255 for unlabeled. Eleven thing ids are defined by COCO but
never annotated (raw 11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90: street sign, hat, shoe, eye glasses,
plate, mirror, window, desk, door, blender, hair brush); removing them and keeping the order gives the
171 train ids, exactly mmsegmentation's ``clsID_to_trID`` table. Unused raw ids map to 255 here
(the mmseg script leaves them unchanged; they never occur in the real maps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import IGNORE_INDEX, FileListDataset, Sample, missing_folder_error, read_label_png

__all__ = ["COCOStuffDataset", "UNUSED_RAW_IDS", "convert_stuffthingmaps", "raw_to_train_ids",
           "stuffthingmap_lut"]

UNUSED_RAW_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
_SPLITS = {"train": "train2017", "val": "val2017", "train2017": "train2017", "val2017": "val2017"}


def stuffthingmap_lut() -> np.ndarray:
    """Lookup table (256,) int64: raw stuffthingmap value -> train id (0..170) or 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.int64)
    used = [r for r in range(182) if r not in UNUSED_RAW_IDS]
    lut[used] = np.arange(len(used))
    return lut


def raw_to_train_ids(raw) -> np.ndarray:
    """Map a raw COCO-Stuff stuffthingmap (H, W) with values 0..181/255 to train ids (H, W) int64.

    Example:
        >>> raw_to_train_ids(np.array([[0, 10, 12], [91, 181, 255]])).tolist()
        [[0, 10, 11], [80, 170, 255]]
    """
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        raise ValueError(f"raw stuffthingmap values must lie in 0..255, got [{raw.min()}, {raw.max()}]")
    bad = (raw > 181) & (raw != IGNORE_INDEX)
    if bad.any():
        raise ValueError(f"raw stuffthingmap holds ids {np.unique(raw[bad])[:8].tolist()} outside 0..181/255")
    return stuffthingmap_lut()[raw.astype(np.int64)]


def convert_stuffthingmaps(src_dir, dst_dir, *, overwrite: bool = False, progress: bool = True) -> int:
    """Convert every raw ``<id>.png`` in ``src_dir`` to ``dst_dir/<id>_labelTrainIds.png``; returns the count.

    Resumable: existing outputs are kept unless ``overwrite``; each file is written atomically.

    Example:
        >>> convert_stuffthingmaps("stuffthingmaps_trainval2017/val2017",
        ...                        "coco_stuff164k/annotations/val2017")  # doctest: +SKIP
    """
    from PIL import Image
    from tqdm import tqdm

    from clipapro.io import atomic_path

    src, dst = Path(src_dir), Path(dst_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"stuffthingmaps folder not found: {src}")
    files = sorted(p for p in src.glob("*.png") if not p.stem.endswith("_labelTrainIds"))
    if not files:
        raise ValueError(f"no raw stuffthingmap PNGs in {src}")
    dst.mkdir(parents=True, exist_ok=True)
    done = 0
    for path in tqdm(files, desc="stuffthingmaps -> trainIds", disable=not progress):
        out = dst / f"{path.stem}_labelTrainIds.png"
        if out.exists() and not overwrite:
            continue
        try:
            train = raw_to_train_ids(read_label_png(path))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        with atomic_path(out) as tmp:
            Image.fromarray(train.astype(np.uint8), mode="L").save(tmp, format="PNG")
        done += 1
    return done


class COCOStuffDataset(FileListDataset):
    """COCO-Stuff 164k, 171 classes: ``ds[i] = {"image", "mask", "id"}`` (see :mod:`clipapro.data.base`).

    Args:
        root: the folder holding ``images/`` and ``annotations/``.
        split: ``val`` / ``val2017`` or ``train`` / ``train2017``. Samples are the images of
            ``images/<split>``, sorted; each needs ``annotations/<split>/<id>_labelTrainIds.png``.
        raw: read raw stuffthingmaps ``annotations/<split>/<id>.png`` and convert on the fly instead.

    Example:
        >>> ds = COCOStuffDataset("data/coco_stuff164k", split="val")  # doctest: +SKIP
        >>> len(ds), ds.num_classes  # doctest: +SKIP
        (5000, 171)
    """

    def __init__(self, root, *, split: str = "val", raw: bool = False, check_labels: bool = True):
        if split not in _SPLITS:
            raise ValueError(f"COCO-Stuff split must be one of {sorted(_SPLITS)}, got {split!r}")
        root, sub = Path(root), _SPLITS[split]
        images, annots = root / "images" / sub, root / "annotations" / sub
        for folder, what in ((images, "COCO-Stuff image"), (annots, "COCO-Stuff annotation")):
            if not folder.is_dir():
                raise missing_folder_error(folder, what, "expected images/ and annotations/<split>2017")
        suffix = ".png" if raw else "_labelTrainIds.png"
        stems = sorted(p.stem for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not stems:
            raise ValueError(f"no images in {images}")
        samples = [Sample(s, images / f"{s}.jpg" if (images / f"{s}.jpg").exists() else images / f"{s}.png",
                          annots / f"{s}{suffix}") for s in stems]
        super().__init__(samples, classes="cocostuff171", check_labels=check_labels,
                         label_map=raw_to_train_ids if raw else None, name=f"cocostuff171/{sub}")
