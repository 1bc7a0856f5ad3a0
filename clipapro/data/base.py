"""Shared pieces of every dataset reader: file reading with clear errors, the item contract, the
file-list dataset base class.

Item contract (every dataset in :mod:`clipapro.data`): ``ds[i]`` is a dict

* ``"image"``: ``numpy.ndarray`` uint8 of shape (H, W, 3), RGB;
* ``"mask"``: ``numpy.ndarray`` int64 of shape (H, W), values in ``0..num_classes-1`` or 255 (ignore);
* ``"id"``: ``str``, the sample id (file stem); predictions are saved as ``<id>.png``.

Items are numpy arrays (not tensors) so readers stay torch-free and a DataLoader worker can send them
as they are; use ``torch.from_numpy`` where a tensor is needed. Every read error is raised as
:class:`DatasetItemError` (a ``ValueError``) whose message names the offending file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipapro import io as _io
from clipapro.io import IGNORE_INDEX

__all__ = [
    "IGNORE_INDEX", "DatasetItemError", "FileListDataset", "LimitedDataset", "Sample", "read_image", "read_label_png",
    "read_split_file", "reduce_zero_label",
]


class DatasetItemError(ValueError):
    """A sample that cannot be read or fails a check; ``path`` is the file at fault."""

    def __init__(self, message: str, *, path=None, sample_id: str | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.sample_id = sample_id


def _as_item_error(read, path):
    try:
        return read(path)
    except (FileNotFoundError, _io.UnreadableFileError) as err:
        raise DatasetItemError(str(err), path=path) from None


def read_image(path) -> np.ndarray:
    """:func:`clipapro.io.read_image` (uint8 (H, W, 3) RGB), its errors raised as
    :class:`DatasetItemError` naming the file."""
    return _as_item_error(_io.read_image, path)


def read_label_png(path) -> np.ndarray:
    """:func:`clipapro.io.read_label_png` (int64 (H, W) indices), its errors raised as
    :class:`DatasetItemError` naming the file."""
    return _as_item_error(_io.read_label_png, path)


def read_split_file(path) -> list[str]:
    """Read a split file (one sample id per line, blank lines skipped) into a list of ids."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"split file {path} lists no samples")
    return ids


def reduce_zero_label(mask: np.ndarray) -> np.ndarray:
    """mmsegmentation's ``reduce_zero_label``: 0 -> 255 (ignore), every other label -1, 255 stays 255."""
    out = mask - 1
    out[mask == 0] = IGNORE_INDEX
    out[mask == IGNORE_INDEX] = IGNORE_INDEX
    return out


@dataclass(frozen=True)
class Sample:
    """One sample on disk: its id, image file and label file (``None`` when there is no label)."""

    id: str
    image: Path
    mask: Path | None


class ClassSetMixin:
    """``classes`` and ``num_classes`` of a dataset holding a :class:`clipapro.prompts.ClassSet` as
    ``self.class_set`` (names and label indices come from the class-set files)."""

    @property
    def classes(self) -> tuple[str, ...]:
        return self.class_set.names

    @property
    def num_classes(self) -> int:
        return len(self.class_set)


class FileListDataset(ClassSetMixin):
    """A dataset over a list of (id, image file, label file) samples; subclasses only build the list.

    Args:
        samples: the samples, in order.
        classes: class-set spec for :func:`clipapro.prompts.get_class_set` (names and label indices).
        reduce_zero: apply :func:`reduce_zero_label` to raw masks (context59, voc20).
        check_labels: raise when a mask holds a label outside ``0..K-1`` and not 255.
        name: a short name for messages.

    ``ds[i]`` returns ``{"image": uint8 (H, W, 3), "mask": int64 (H, W), "id": str}`` (see module doc).
    """

    def __init__(self, samples, *, classes, reduce_zero: bool = False, check_labels: bool = True,
                 name: str = "dataset", label_map=None):
        from clipapro.prompts import get_class_set

        self.samples = list(samples)
        self.class_set = get_class_set(classes)
        self.reduce_zero = bool(reduce_zero)
        self.check_labels = bool(check_labels)
        self.name = name
        self.label_map = label_map  # optional callable raw mask -> mask, applied before the checks


    @property
    def ids(self) -> list[str]:
        return [s.id for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, samples={len(self)}, classes={self.num_classes})"

    def load_mask(self, index: int) -> np.ndarray:
        """The label map of sample ``index``, int64 (H, W), after label mapping and checks."""
        sample = self.samples[index]
        if sample.mask is None:
            raise DatasetItemError(f"{self.name}: sample {sample.id!r} has no label map", sample_id=sample.id)
        mask = read_label_png(sample.mask)
        if self.label_map is not None:
            try:
                mask = self.label_map(mask)
            except DatasetItemError:
                raise
            except ValueError as err:
                raise DatasetItemError(f"label map {sample.mask}: {err}", path=sample.mask) from err
        if self.reduce_zero:
            mask = reduce_zero_label(mask)
        if self.check_labels:
            check_label_range(mask, self.num_classes, where=sample.mask)
        return mask

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        sample = self.samples[index]
        try:
            image = read_image(sample.image)
            mask = self.load_mask(index)
        except DatasetItemError as err:
            err.sample_id = sample.id
            raise
        if mask.shape != image.shape[:2]:
            raise DatasetItemError(
                f"{self.name}: label map {sample.mask} is {mask.shape[1]}x{mask.shape[0]} (WxH) but image "
                f"{sample.image} is {image.shape[1]}x{image.shape[0]}", path=sample.mask, sample_id=sample.id,
            )
        return {"image": image, "mask": mask, "id": sample.id}


def check_label_range(mask: np.ndarray, num_classes: int, *, where) -> None:
    """Raise :class:`DatasetItemError` naming ``where`` if ``mask`` holds labels outside 0..K-1 and 255."""
    bad = (mask < 0) | ((mask >= num_classes) & (mask != IGNORE_INDEX))
    if bad.any():
        values = np.unique(mask[bad])[:8].tolist()
        raise DatasetItemError(
            f"label map {where} holds labels {values} outside 0..{num_classes - 1} (255 = ignore)", path=where
        )


def missing_folder_error(path: Path, what: str, hint: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} folder not found: {path} ({hint})")


class LimitedDataset:
    """The first ``limit`` samples of a dataset (quick runs); keeps ``classes`` / ``num_classes``."""

    def __init__(self, dataset, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.dataset, self.limit = dataset, min(limit, len(dataset))
        self.classes, self.num_classes = dataset.classes, dataset.num_classes
        samples = getattr(dataset, "samples", None)
        if samples is not None:
            self.samples = samples[: self.limit]
        if hasattr(dataset, "load_mask"):
            self.load_mask = dataset.load_mask

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.limit:
            raise IndexError(index)
        return self.dataset[index]
