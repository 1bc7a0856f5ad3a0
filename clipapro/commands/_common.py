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


_FIGURE_HELP = "also write a figure (PNG): the photo with the label colours and a legend of the classes present"


def add_figure_argument(parser, *, many: bool = False, help: str | None = None) -> None:
    """Add ``--figure PATH``: also write a PNG of the photo with its label colours and a class legend.

    ``many``: the command takes several images; PATH is then a folder of ``<image stem>.png`` figures
    (see :func:`figure_path`). ``help`` replaces the default help text (e.g. for a chart).
    """
    text = help or (_FIGURE_HELP + (" (several images: PATH is a folder of <stem>.png)" if many else ""))
    parser.add_argument("--figure", default=None, metavar="PATH", help=text)


def figure_path(figure, image_path, n_images: int):
    """Where the figure of ``image_path`` goes: ``figure`` itself for one image, else
    ``figure/<image stem>.png``; None without ``--figure``."""
    if figure is None:
        return None
    return Path(figure) if n_images == 1 else Path(figure) / f"{Path(image_path).stem}.png"


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
