"""A generic folder dataset: ``images/`` and ``masks/`` side by side, matched by file stem.

Layout::

    root/images/<id>.{jpg,jpeg,png,bmp,tif,tiff}
    root/masks/<id>.png                       index PNGs (P or L mode), 255 = ignore
    root/<split>.txt                          optional: ids to use (else every image with a mask)
    root/meta.json                            optional: {"splits": {"<split>": [ids]}}, used when there
                                              is no <split>.txt (the common layout of ../shared/data)
"""

from __future__ import annotations

from pathlib import Path

from .base import FileListDataset, Sample, missing_folder_error, read_split_file

__all__ = ["FolderDataset"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class FolderDataset(FileListDataset):
    """Images and index-PNG masks matched by stem: ``ds[i] = {"image", "mask", "id"}``.

    Args:
        root: the folder holding ``image_dir`` and ``mask_dir``.
        classes: class-set spec (a registered name such as ``voc21``, a file or a comma list).
        split: optional split name; ids then come from ``root/<split>.txt``, or, when there is no such
            file, from ``splits[<split>]`` of ``root/meta.json``. Without one, every image
            that has a mask is used; images without a mask raise (``require_masks``) or are dropped.
        reduce_zero: mmsegmentation's ``reduce_zero_label`` (0 -> ignore, others -1).

    Example:
        >>> ds = FolderDataset("my_data", classes="cat, dog, grass")  # doctest: +SKIP
    """

    def __init__(self, root, *, classes, split: str | None = None, image_dir: str = "images",
                 mask_dir: str = "masks", reduce_zero: bool = False, require_masks: bool = True,
                 check_labels: bool = True):
        root = Path(root)
        images, masks = root / image_dir, root / mask_dir
        for folder, what in ((images, "image"), (masks, "mask")):
            if not folder.is_dir():
                raise missing_folder_error(folder, what, f"expected {image_dir}/ and {mask_dir}/ in {root}")
        by_stem = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        if split is not None and split not in ("", "all"):
            ids = _split_ids(root, split)
        else:
            ids = sorted(by_stem)
            if not require_masks:
                ids = [i for i in ids if (masks / f"{i}.png").is_file()]
        if not ids:
            raise ValueError(f"no samples found in {images}")
        # a listed id without an image keeps a .jpg path, so reading it raises naming the missing file
        samples = [Sample(i, by_stem.get(i, images / f"{i}.jpg"), masks / f"{i}.png") for i in ids]
        super().__init__(samples, classes=classes, reduce_zero=reduce_zero, check_labels=check_labels,
                         name=f"folder:{root.name}" + (f"/{split}" if split else ""))


def _split_ids(root: Path, split: str) -> list[str]:
    """Ids of ``split``: ``root/<split>.txt``, else ``splits[split]`` of ``root/meta.json``."""
    import json

    txt, meta = root / f"{split}.txt", root / "meta.json"
    if txt.is_file() or not meta.is_file():
        return read_split_file(txt)  # a missing file raises naming <split>.txt
    try:
        splits = json.loads(meta.read_text()).get("splits")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"cannot read splits from {meta}: {err}") from None
    if not isinstance(splits, dict) or split not in splits:
        have = sorted(splits) if isinstance(splits, dict) else []
        raise FileNotFoundError(f"split {split!r}: no {txt} and {meta} lists splits {have}")
    ids = [str(i) for i in splits[split]]
    if not ids:
        raise ValueError(f"split {split!r} in {meta} lists no samples")
    return ids
