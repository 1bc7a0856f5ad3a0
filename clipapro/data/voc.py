"""PASCAL VOC 2012 segmentation (``voc21`` with background, ``voc20`` without).

Layout (the devkit's, as mmsegmentation reads it; ``root`` may be ``VOCdevkit/VOC2012``, ``VOCdevkit``
or its parent)::

    VOC2012/JPEGImages/<id>.jpg
    VOC2012/SegmentationClass/<id>.png        palette PNGs: 0 background, 1..20 classes, 255 void
    VOC2012/SegmentationClassAug/<id>.png     optional (SBD "aug" labels, index PNGs, same ids)
    VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt, trainaug.txt (or mmseg's aug.txt)

``voc20`` maps background (0) to ignore and shifts the rest down by one (mmsegmentation's
``reduce_zero_label``; SCLIP/NACLIP's PascalVOC20Dataset), so the 255 void border stays ignored in both.
"""

from __future__ import annotations

from pathlib import Path

from .base import FileListDataset, Sample, missing_folder_error, read_split_file

__all__ = ["VOCDataset", "find_dataset_root"]

_AUG_SPLITS = ("trainaug", "aug")


def find_dataset_root(root, marker: str, candidates) -> Path:
    """Return ``root`` or the first ``root/<candidate>`` that contains the folder ``marker``."""
    root = Path(root)
    for base in [root, *(root / c for c in candidates)]:
        if (base / marker).is_dir():
            return base
    tried = ", ".join(str(root / c) for c in ("", *candidates))
    raise missing_folder_error(root / marker, marker, f"looked under {tried}")


class VOCDataset(FileListDataset):
    """PASCAL VOC 2012 segmentation: ``ds[i] = {"image", "mask", "id"}`` (see :mod:`clipapro.data.base`).

    Args:
        root: ``VOCdevkit/VOC2012`` (or a folder above it).
        split: ``train``, ``val``, ``trainval``, ``trainaug`` (``ImageSets/Segmentation/<split>.txt``).
        background: ``True`` for voc21 (21 classes), ``False`` for voc20 (background -> ignore).
        mask_dir: label folder; default ``SegmentationClassAug`` for aug splits, else ``SegmentationClass``.

    Example:
        >>> ds = VOCDataset("data/VOCdevkit/VOC2012", split="val")  # doctest: +SKIP
        >>> item = ds[0]; item["image"].shape, item["mask"].dtype  # doctest: +SKIP
        ((366, 500, 3), dtype('int64'))
    """

    def __init__(self, root, *, split: str = "val", background: bool = True, mask_dir: str | None = None,
                 check_labels: bool = True):
        base = find_dataset_root(root, "JPEGImages", ("VOC2012", "VOCdevkit/VOC2012"))
        sets = base / "ImageSets" / "Segmentation"
        split_file = sets / f"{split}.txt"
        if split in _AUG_SPLITS and not split_file.is_file():
            split_file = sets / ("aug.txt" if split == "trainaug" else "trainaug.txt")
        if not split_file.is_file():
            have = sorted(p.stem for p in sets.glob("*.txt")) if sets.is_dir() else []
            raise FileNotFoundError(f"VOC split file not found: {sets / (split + '.txt')} (have: {have})")
        if mask_dir is None:
            mask_dir = "SegmentationClassAug" if split in _AUG_SPLITS else "SegmentationClass"
        masks = base / mask_dir
        if not masks.is_dir():
            raise missing_folder_error(masks, "VOC label", "SegmentationClass/ or SegmentationClassAug/")
        samples = [Sample(i, base / "JPEGImages" / f"{i}.jpg", masks / f"{i}.png")
                   for i in read_split_file(split_file)]
        name = "voc21" if background else "voc20"
        super().__init__(samples, classes=name, reduce_zero=not background, check_labels=check_labels,
                         name=f"{name}/{split}")
