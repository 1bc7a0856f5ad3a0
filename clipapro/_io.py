"""Atomic file writing: every file is written to a temporary name beside its target and renamed, so
an interrupted run never leaves a partial file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it is renamed to ``path`` (atomic on POSIX).

    Example:
        >>> with atomic_path("out.png") as tmp:  # doctest: +SKIP
        ...     image.save(tmp, format="PNG")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path, obj, **kwargs) -> None:
    kwargs.setdefault("indent", 2)
    write_bytes_atomic(path, (json.dumps(obj, **kwargs) + "\n").encode())


def save_label_png(path, labels, palette=None) -> None:
    """Write an (H, W) integer label map (values 0..255) as a palette PNG, atomically.

    ``palette`` is a flat list of 768 ints; default: the PASCAL VOC palette.
    """
    from PIL import Image

    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be (H, W), got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"labels must lie in 0..255 for a palette PNG, got range [{arr.min()}, {arr.max()}]")
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(palette if palette is not None else voc_palette())
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour palette (bit-interleaved), flat list of 3*n ints; index 255 is (224,224,192)."""
    pal = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal.extend([r, g, b])
    return pal
