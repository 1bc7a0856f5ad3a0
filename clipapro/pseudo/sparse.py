"""Sparse training labels for ``clipapro train``: scribble PNGs or point JSON, checked before any work.

- **Scribbles** (``--scribbles DIR``): ``DIR/<id>.png`` per training image, single-channel class
  indices (8- or 16-bit, mode P, L or I;16), ``255`` = unlabelled; the ScribbleSup annotations that
  TEL and APro train on, once their colours are mapped to class indices.
- **Points** (``--points DIR`` or ``--points FILE.json``): ``DIR/<id>.json`` per image in the format
  of :func:`clipapro.adapters.labels.read_points_json`, or one JSON object ``{"<id>": [points], ...}``
  (each value a point list or ``{"points": [...]}``). Each point is rasterised as a disk of
  ``point_radius`` pixels (0: the one pixel).

:meth:`SparseLabels.check` reads every label once (file present, same size as its image, classes
below K, at least one labelled pixel) and raises one ``ValueError`` / ``FileNotFoundError`` naming the
file; it returns a content hash that a resumed run must match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clipapro.adapters.labels import parse_points, points_to_labels, read_points_json, read_scribble_png
from clipapro.pseudo.labels import image_size, item_ids, load_image

__all__ = ["SPARSE_KINDS", "SparseLabels"]

SPARSE_KINDS = ("scribbles", "points")


@dataclass(frozen=True)
class SparseLabels:
    """Where the sparse labels of a training set live and how to turn them into (H, W) label maps."""

    kind: str
    source: str
    point_radius: int = 0

    def __post_init__(self):
        if self.kind not in SPARSE_KINDS:
            raise ValueError(f"sparse label kind must be one of {SPARSE_KINDS}, got {self.kind!r}")
        r = self.point_radius
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"point_radius must be an int >= 0, got {r!r}")
        src = Path(self.source)
        if self.kind == "scribbles" and not src.is_dir():
            raise FileNotFoundError(f"scribble folder not found: {src}")
        if self.kind == "points" and not (src.is_dir() or src.is_file()):
            raise FileNotFoundError(f"point folder or JSON file not found: {src}")

    @classmethod
    def from_config(cls, d: dict | None) -> SparseLabels | None:
        """The inverse of :meth:`as_config` (``None`` stays ``None``)."""
        if d is None:
            return None
        return cls(d["kind"], d["source"], int(d.get("point_radius", 0)))

    def as_config(self, labels_hash: str) -> dict:
        return {"kind": self.kind, "source": str(self.source), "point_radius": self.point_radius,
                "hash": labels_hash}

    def path(self, image_id: str) -> Path:
        """The file holding the labels of ``image_id`` (the one JSON file for a combined point file)."""
        src = Path(self.source)
        if self.kind == "scribbles":
            return src / f"{image_id}.png"
        return src / f"{image_id}.json" if src.is_dir() else src

    def _combined(self) -> dict | None:
        src = Path(self.source)
        if self.kind != "points" or src.is_dir():
            return None
        cache = self.__dict__.get("_cache")
        if cache is None:
            try:
                cache = json.loads(src.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ValueError(f"cannot parse point JSON {src}: {err}") from None
            if not isinstance(cache, dict):
                raise ValueError(f"{src}: a combined point file must be an object {{image id: points}}")
            object.__setattr__(self, "_cache", cache)
        return cache

    def read(self, image_id: str, size, *, num_classes: int | None = None) -> np.ndarray:
        """The (H, W) int64 label map of ``image_id`` for an image of ``size`` = (H, W); 255 = unlabelled.

        Raises:
            FileNotFoundError / ValueError naming the file (missing, wrong size, class >= num_classes).
        """
        size = tuple(int(s) for s in size)
        if self.kind == "scribbles":
            return read_scribble_png(self.path(image_id), size=size, num_classes=num_classes)
        combined = self._combined()
        if combined is None:
            points = read_points_json(self.path(image_id), size=size, num_classes=num_classes)
        else:
            if image_id not in combined:
                raise FileNotFoundError(f"{self.source} has no points for image {image_id!r}")
            points = parse_points(combined[image_id], source=f"{self.source}[{image_id!r}]", size=size,
                                  num_classes=num_classes)
        return points_to_labels(points, size, radius=self.point_radius)

    def check(self, dataset, num_classes: int) -> str:
        """Read the labels of every image of ``dataset`` and validate them; returns their content hash.

        Raises one ``FileNotFoundError`` listing how many images lack a label file (and the first
        ones), or the ``ValueError`` of the first bad file (named in the message).
        """
        ids = item_ids(dataset)
        combined = self._combined()
        if combined is None:
            missing = [str(self.path(i)) for i in ids if not self.path(i).is_file()]
        else:
            missing = [i for i in ids if i not in combined]
        if missing:
            where = f"in {self.source}" if combined is None else f"in {self.source} (image ids)"
            raise FileNotFoundError(f"{len(missing)} of {len(ids)} training images have no {self.kind} file "
                                    f"{where} (first: {missing[:3]})")
        digest = hashlib.sha1(f"{self.kind}:{self.point_radius}".encode())
        for index, image_id in enumerate(ids):
            size = image_size(dataset, index)
            if size is None:
                size = load_image(dataset, index).shape[:2]
            labels = self.read(image_id, size, num_classes=num_classes)
            digest.update(image_id.encode())
            digest.update(np.ascontiguousarray(labels, dtype=np.uint16).tobytes())
        return digest.hexdigest()[:16]
