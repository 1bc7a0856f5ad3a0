"""Sparse label formats: scribble PNGs and point lists (JSON), read with validation.

- **Scribble PNG**: a single-channel image (mode ``P`` palette or ``L`` grey) of the photo's size whose
  pixel values are class indices; ``255`` (``ignore_index``) marks unlabelled pixels.
- **Point JSON**: ``[{"x": 12, "y": 40, "class": 3}, ...]`` or ``{"points": [...]}``; ``x`` is the
  column and ``y`` the row in pixels (real numbers are floored to the pixel that contains them),
  ``class`` a class index. Turn points into a scribble-style label map with :func:`points_to_labels`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from clipapro.io import write_json_atomic

__all__ = ["Point", "parse_points", "points_to_labels", "read_points_json", "read_scribble_png", "write_points_json"]

from clipapro.io import IGNORE_INDEX, MAX_PNG_CLASSES


class Point(NamedTuple):
    """One clicked point: column ``x``, row ``y`` (pixels) and its class index."""

    x: float
    y: float
    cls: int


def read_scribble_png(path, *, size: tuple[int, int] | None = None, num_classes: int | None = None,
                      ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Read a scribble PNG into an (H, W) int64 label map (``ignore_index`` = unlabelled).

    Args:
        path: PNG file (mode P or L; class indices as pixel values).
        size: expected (H, W) of the photo it annotates; a mismatch is an error.
        num_classes: if given, labelled values must be < num_classes.

    Raises:
        FileNotFoundError, ValueError (unreadable/corrupt, wrong mode or size, bad class, no labelled pixel).

    Example:
        >>> labels = read_scribble_png("scribbles.png", size=(480, 640))  # doctest: +SKIP
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scribble file not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read scribble PNG {path}: {err}") from None
    if mode not in ("P", "L", "I", "I;16"):
        raise ValueError(f"scribble PNG {path} must be single-channel class indices (mode P or L), got mode "
                         f"{mode}; colour scribbles must first be mapped to class indices")
    labels = arr.astype(np.int64)
    if size is not None and tuple(labels.shape) != tuple(size):
        raise ValueError(f"scribble PNG {path} is {labels.shape[0]}x{labels.shape[1]} (H x W) but the image "
                         f"is {size[0]}x{size[1]}")
    labelled = labels != ignore_index
    if not labelled.any():
        raise ValueError(f"scribble PNG {path} has no labelled pixel (every pixel is {ignore_index})")
    limit = num_classes if num_classes else MAX_PNG_CLASSES
    bad = labels[labelled & ((labels < 0) | (labels >= limit))]
    if bad.size:
        why = f"num_classes is {num_classes}" if num_classes else \
            f"class indices must be below {MAX_PNG_CLASSES} ({IGNORE_INDEX} = unlabelled) to fit a label PNG"
        raise ValueError(f"scribble PNG {path} has class {int(bad.max())} but {why}")
    return labels


def _parse_point(item, i: int, path) -> Point:
    if not isinstance(item, dict) or not {"x", "y", "class"} <= set(item):
        raise ValueError(f"{path}: point {i} must be an object with keys x, y, class, got {item!r}")
    x, y, c = item["x"], item["y"], item["class"]
    for key, v in (("x", x), ("y", y)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{path}: point {i} has a non-finite or non-numeric {key}: {v!r}")
    if isinstance(c, bool) or not isinstance(c, int) or c < 0 or c == IGNORE_INDEX:
        raise ValueError(f"{path}: point {i} class must be an int >= 0 other than {IGNORE_INDEX}, got {c!r}")
    return Point(float(x), float(y), int(c))


def read_points_json(path, *, size: tuple[int, int] | None = None,
                     num_classes: int | None = None) -> list[Point]:
    """Read a point list (see module docstring); validates coordinates against ``size`` = (H, W).

    Raises:
        FileNotFoundError; ValueError for bad JSON, an empty list, missing keys, NaN, points outside the
        image or classes >= ``num_classes``.

    Example:
        >>> pts = read_points_json("points.json", size=(480, 640))  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"point file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot parse point JSON {path}: {err}") from None
    return parse_points(data, source=path, size=size, num_classes=num_classes)


def parse_points(data, *, source="points", size: tuple[int, int] | None = None,
                 num_classes: int | None = None) -> list[Point]:
    """Validate decoded point JSON (a list of ``{"x", "y", "class"}`` or ``{"points": [...]}``) into
    points; ``source`` names the data in errors (a file, or ``file[image id]``).

    Example:
        >>> parse_points([{"x": 1, "y": 2, "class": 0}], size=(4, 4))
        [Point(x=1.0, y=2.0, cls=0)]
    """
    path = source
    items = data.get("points") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list of points or {{\"points\": [...]}}")
    if not items:
        raise ValueError(f"{path}: the point list is empty")
    points = [_parse_point(item, i, path) for i, item in enumerate(items)]
    for i, p in enumerate(points):
        if size is not None and not (0 <= p.x < size[1] and 0 <= p.y < size[0]):
            raise ValueError(f"{path}: point {i} ({p.x}, {p.y}) lies outside the {size[0]}x{size[1]} image")
        if num_classes is not None and p.cls >= num_classes:
            raise ValueError(f"{path}: point {i} has class {p.cls} but num_classes is {num_classes}")
    return points


def write_points_json(path, points) -> None:
    """Write points (``Point`` or (x, y, class) triples) in the JSON format above, atomically."""
    write_json_atomic(path, {"points": [{"x": p[0], "y": p[1], "class": int(p[2])} for p in points]})


def points_to_labels(points, size: tuple[int, int], *, radius: int = 0,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Rasterise points into an (H, W) int64 label map: a disk of ``radius`` pixels per point.

    Example:
        >>> int(points_to_labels([Point(1, 2, 3)], (4, 4))[2, 1])
        3
    """
    if not points:
        raise ValueError("points must not be empty")
    h, w = size
    labels = np.full((h, w), ignore_index, dtype=np.int64)
    yy, xx = np.mgrid[0:h, 0:w]
    for i, p in enumerate(points):
        px, py = int(math.floor(p[0])), int(math.floor(p[1]))
        if not (0 <= px < w and 0 <= py < h):
            raise ValueError(f"point {i} ({p[0]}, {p[1]}) lies outside the {h}x{w} image")
        if radius <= 0:
            labels[py, px] = int(p[2])
        else:
            labels[(yy - py) ** 2 + (xx - px) ** 2 <= radius * radius] = int(p[2])
    return labels
