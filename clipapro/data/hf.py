"""Hugging Face ``datasets`` adapter: any dataset with an image column and a label-map column.

``build_dataset("hf:<name or folder>", ...)`` loads with ``datasets.load_from_disk`` when the spec is a
folder written by ``Dataset.save_to_disk`` (no network), else ``datasets.load_dataset(name, config,
split=...)`` (which may download: run it where the hub is reachable, or point ``HF_HOME`` at a cache).
Image cells may be PIL images, arrays or file paths; mask cells PIL images (P/L mode) or integer arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import ClassSetMixin, DatasetItemError, check_label_range, reduce_zero_label

__all__ = ["HFSegmentationDataset", "load_hf_dataset"]


def load_hf_dataset(spec: str, *, split: str | None = "validation", config: str | None = None):
    """Load a ``datasets.Dataset`` from a saved folder or a hub name (``spec`` without the ``hf:`` prefix)."""
    from clipapro._deps import require

    datasets = require("datasets", what="hf: datasets")

    path = Path(spec)
    if path.exists():
        data = datasets.load_from_disk(str(path))
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise ValueError(f"hf dataset {spec!r} has splits {sorted(data)}, not {split!r}")
            data = data[split]
        return data
    return datasets.load_dataset(spec, config, split=split)


def _to_array(cell, what: str, where: str) -> np.ndarray:
    from PIL import Image

    if isinstance(cell, (str, Path)):
        from .base import read_image, read_label_png

        return read_image(cell) if what == "image" else read_label_png(cell)
    if isinstance(cell, Image.Image):
        if what == "image":
            return np.asarray(cell.convert("RGB"), dtype=np.uint8)
        if cell.mode not in ("P", "L", "I", "I;16", "1"):
            raise DatasetItemError(f"{where}: mask has mode {cell.mode!r}, expected an index image (P/L)")
        return np.asarray(cell, dtype=np.int64)
    arr = np.asarray(cell)
    if what == "image":
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise DatasetItemError(f"{where}: image must be (H, W, 3), got shape {arr.shape}")
        # datasets returns untyped cells as nested lists (int64 here): accept integers within 0..255
        if arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.integer) or (arr.size and (arr.min() < 0 or arr.max() > 255)):
                raise DatasetItemError(f"{where}: image must be uint8 (or ints in 0..255), got {arr.dtype}")
            arr = arr.astype(np.uint8)
        return np.ascontiguousarray(arr[..., :3])
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise DatasetItemError(f"{where}: mask must be an integer (H, W) array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


class HFSegmentationDataset(ClassSetMixin):
    """A ``datasets.Dataset`` seen through the clipapro item contract (see :mod:`clipapro.data.base`).

    Args:
        data: a ``datasets.Dataset`` (or a spec for :func:`load_hf_dataset`).
        classes: class-set spec: label ``i`` of the mask column is ``classes[i]``.
        image_column, mask_column: column names; ``id_column``: optional id column (default: row index).
        reduce_zero: mmsegmentation's ``reduce_zero_label`` (ADE20K-style masks with 0 = other).

    Example:
        >>> import datasets
        >>> data = datasets.Dataset.from_dict({"image": [np.zeros((2, 3, 3), np.uint8)],
        ...                                    "label": [np.ones((2, 3), np.int64)]})
        >>> ds = HFSegmentationDataset(data, classes="a, b", mask_column="label")
        >>> ds[0]["mask"].tolist()
        [[1, 1, 1], [1, 1, 1]]
    """

    def __init__(self, data, *, classes, image_column: str = "image", mask_column: str = "annotation",
                 id_column: str | None = None, reduce_zero: bool = False, check_labels: bool = True,
                 split: str | None = "validation", config: str | None = None, name: str | None = None):
        from clipapro.prompts import get_class_set

        if isinstance(data, (str, Path)):
            name = name or f"hf:{data}"
            data = load_hf_dataset(str(data), split=split, config=config)
        columns = list(getattr(data, "column_names", []))
        for col, what in ((image_column, "image_column"), (mask_column, "mask_column")):
            if col not in columns:
                raise ValueError(f"{what} {col!r} is not a column of the dataset (columns: {columns})")
        if id_column is not None and id_column not in columns:
            raise ValueError(f"id_column {id_column!r} is not a column of the dataset (columns: {columns})")
        self.data = data
        self.class_set = get_class_set(classes)
        self.image_column, self.mask_column, self.id_column = image_column, mask_column, id_column
        self.reduce_zero, self.check_labels = bool(reduce_zero), bool(check_labels)
        self.name = name or "hf"


    def __len__(self) -> int:
        return len(self.data)

    @property
    def ids(self) -> list[str]:
        if self.id_column is None:
            return [f"{i:06d}" for i in range(len(self))]
        return [str(v) for v in self.data[self.id_column]]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        row = self.data[index]
        sid = str(row[self.id_column]) if self.id_column else f"{index:06d}"
        where = f"{self.name} row {index} (id {sid})"
        try:
            image = _to_array(row[self.image_column], "image", where)
            mask = _to_array(row[self.mask_column], "mask", where)
            if self.reduce_zero:
                mask = reduce_zero_label(mask)
            if self.check_labels:
                check_label_range(mask, self.num_classes, where=where)
        except DatasetItemError as err:
            err.sample_id = sid
            raise
        except (OSError, ValueError) as err:
            raise DatasetItemError(f"{where}: {err}", sample_id=sid) from err
        if mask.shape != image.shape[:2]:
            raise DatasetItemError(f"{where}: mask shape {mask.shape} differs from image {image.shape[:2]}",
                                   sample_id=sid)
        return {"image": image, "mask": mask, "id": sid}
