"""Helpers shared by the commands (private: not a command): checked image reading and ``--figure``.

A command that writes labels gets a figure option in two lines::

    add_figure_argument(parser)                                          # in add_arguments
    write_label_figure(args.figure, image, labels, class_names)          # in run (no-op without --figure)
"""

from __future__ import annotations

from pathlib import Path


def read_image(path):
    """Read a photo as uint8 (H, W, 3) RGB (numpy). Missing or unreadable files raise one clear error
    naming the file: ``FileNotFoundError("image not found: ...")`` / ``ValueError("cannot read image
    ...")`` (truncated and corrupt files included: the pixels are decoded here, not lazily)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    if arr.size == 0:
        raise ValueError(f"cannot read image {path}: it has no pixels")
    return arr


def image_to_tensor(image):
    """uint8 (H, W, 3) numpy -> float32 (1, 3, H, W) tensor in [0, 1]."""
    import torch

    return torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float().div_(255.0).contiguous()


def add_figure_argument(parser) -> None:
    """Add ``--figure PATH``: also write a PNG of the photo with its label colours and a class legend."""
    parser.add_argument("--figure", default=None, metavar="PATH",
                        help="also write a figure (PNG): the photo with the label colours and a legend "
                             "of the class names present")


def write_label_figure(path, image, labels, class_names=None, *, quiet: bool = False):
    """Write :func:`clipapro.viz.save_overlay` to ``path`` (nothing when ``path`` is None) and say so.

    ``image``: uint8 (H, W, 3) or float (3, H, W) in [0, 1]; ``labels``: (H, W) ints in 0..255;
    ``class_names``: name per label index (or None: legend entries say ``class i``).
    """
    if path is None:
        return None
    from clipapro.viz import save_overlay

    out = save_overlay(path, image, labels, class_names)
    if not quiet:
        print(f"figure: {out}")
    return out
