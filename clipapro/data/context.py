"""PASCAL Context in mmsegmentation's layout (``context60`` with background, ``context59`` without).

Layout (made by mmsegmentation's ``tools/dataset_converters/pascal_context.py`` from the VOC2010 images
and the Detail API ``trainval_merged.json``; ``root`` may be ``VOCdevkit/VOC2010`` or a folder above)::

    VOC2010/JPEGImages/<id>.jpg
    VOC2010/SegmentationClassContext/<id>.png      index PNGs, 0 = background, 1..59 the 59 classes
    VOC2010/ImageSets/SegmentationContext/{train,val}.txt

``context59`` is mmsegmentation's PascalContextDataset59 (``reduce_zero_label=True``): label 0 becomes
255 (ignore) and every other label moves down by one; ``context60`` keeps background as class 0.
"""

from __future__ import annotations

from .base import FileListDataset, Sample, missing_folder_error, read_split_file
from .voc import find_dataset_root

__all__ = ["PascalContextDataset"]


class PascalContextDataset(FileListDataset):
    """PASCAL Context: ``ds[i] = {"image", "mask", "id"}`` (see :mod:`clipapro.data.base`).

    Args:
        root: ``VOCdevkit/VOC2010`` (or a folder above it).
        split: ``train`` or ``val`` (file ``ImageSets/SegmentationContext/<split>.txt``).
        background: ``True`` for context60, ``False`` for context59 (background -> ignore).

    Example:
        >>> ds = PascalContextDataset("VOCdevkit/VOC2010", background=False)  # doctest: +SKIP
        >>> ds.num_classes  # doctest: +SKIP
        59
    """

    def __init__(self, root, *, split: str = "val", background: bool = True, check_labels: bool = True):
        base = find_dataset_root(root, "SegmentationClassContext", ("VOC2010", "VOCdevkit/VOC2010"))
        sets = base / "ImageSets" / "SegmentationContext"
        split_file = sets / f"{split}.txt"
        if not split_file.is_file():
            have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
            raise FileNotFoundError(f"PASCAL Context split file not found: {split_file} (have: {have})")
        if not (base / "JPEGImages").is_dir():
            raise missing_folder_error(base / "JPEGImages", "PASCAL Context image", "VOC2010 JPEGImages/")
        samples = [Sample(i, base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClassContext" / f"{i}.png")
                   for i in read_split_file(split_file)]
        name = "context60" if background else "context59"
        super().__init__(samples, classes=name, reduce_zero=not background, check_labels=check_labels,
                         name=f"{name}/{split}")
