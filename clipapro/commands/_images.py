"""Photo reading shared by the adapter commands (private: not a command)."""

from __future__ import annotations

from pathlib import Path


def read_rgb(path):
    """Read a photo as a (3, H, W) float64 tensor in [0, 1]; clear errors for missing/corrupt files."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            arr = np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return torch.from_numpy(arr).permute(2, 0, 1).to(torch.float64) / 255
