"""Photos and hand-placed annotations for ``clipapro demo`` (private: not a command).

The photos ship with libraries clipapro already depends on: scikit-image's ``data`` module
(astronaut, coffee) and matplotlib's sample data (grace_hopper.jpg), so the demo needs no download.
Boxes and scribble strokes were placed by hand, by looking at each photo, in *fractions* of the
photo's width and height, so they fit any resized copy.
"""

from __future__ import annotations

import numpy as np

#: photo -> [(class name, box (x0, y0, x1, y1) as fractions of width/height)]
BOXES = {
    "astronaut": [("person", (0.03, 0.03, 0.71, 1.0)), ("helmet", (0.55, 0.66, 0.99, 1.0)),
                  ("rocket", (0.69, 0.0, 0.92, 0.57))],
    "coffee": [("cup", (0.29, 0.02, 0.69, 0.71)), ("spoon", (0.52, 0.28, 0.68, 0.82))],
}

#: photo -> (class names, [(class index, polyline [(x, y), ...] as fractions)])
SCRIBBLES = {
    "grace_hopper": (("background", "person"), [
        (0, [(0.04, 0.08), (0.08, 0.35), (0.05, 0.6)]),            # flag, left
        (0, [(0.86, 0.05), (0.9, 0.3), (0.95, 0.55)]),             # sky, right
        (0, [(0.72, 0.12), (0.8, 0.3), (0.76, 0.5)]),              # sky, beside the face
        (0, [(0.25, 0.02), (0.4, 0.02)]),                           # above the cap
        (0, [(0.03, 0.45), (0.12, 0.52), (0.22, 0.6)]),             # flag stripes
        (1, [(0.35, 0.14), (0.5, 0.1), (0.65, 0.15)]),              # cap
        (1, [(0.5, 0.3), (0.47, 0.45), (0.5, 0.58)]),               # face
        (1, [(0.25, 0.85), (0.5, 0.75), (0.8, 0.85)]),              # uniform
    ]),
    "coffee": (("table", "cup", "saucer", "spoon"), [
        (0, [(0.04, 0.45), (0.06, 0.75), (0.1, 0.95)]),
        (0, [(0.86, 0.2), (0.92, 0.5), (0.86, 0.85)]),
        (0, [(0.03, 0.05), (0.15, 0.03), (0.25, 0.02)]),            # dark corner, top left
        (0, [(0.68, 0.01), (0.8, 0.06)]),                           # behind the cup
        (0, [(0.42, 0.0), (0.6, 0.0)]),                             # above the rim
        (1, [(0.36, 0.1), (0.5, 0.05), (0.62, 0.1)]),               # rim
        (1, [(0.4, 0.32), (0.52, 0.3), (0.6, 0.36)]),               # coffee inside the cup
        (1, [(0.45, 0.6), (0.52, 0.62)]),                           # cup body
        (2, [(0.2, 0.45), (0.22, 0.7), (0.32, 0.88)]),
        (2, [(0.45, 0.9), (0.58, 0.92), (0.7, 0.85)]),
        (3, [(0.6, 0.62), (0.61, 0.74)]),
    ]),
}


def load_photo(name: str, max_side: int) -> np.ndarray:
    """A bundled photo as uint8 (H, W, 3), shrunk so its longer side is at most ``max_side``."""
    from PIL import Image

    from clipapro._deps import require

    if name == "grace_hopper":
        cbook = require("matplotlib.cbook", what="the demo photo grace_hopper")

        with cbook.get_sample_data("grace_hopper.jpg") as f, Image.open(f) as im:
            photo = im.convert("RGB")
            photo.load()
    else:
        skdata = require("skimage.data", what=f"the demo photo {name}")
        photo = Image.fromarray(getattr(skdata, name)())
    scale = max_side / max(photo.size)
    if scale < 1:
        photo = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))),
                             Image.Resampling.LANCZOS)
    return np.asarray(photo.convert("RGB"))


def pixel_boxes(name: str, hw) -> tuple[list[str], list[list[float]]]:
    h, w = hw
    names = [n for n, _ in BOXES[name]]
    return names, [[x0 * w, y0 * h, x1 * w, y1 * h] for _, (x0, y0, x1, y1) in BOXES[name]]


def scribble_map(name: str, hw, *, width: int = 5, ignore_index: int = 255) -> tuple[tuple[str, ...], np.ndarray]:
    """(class names, (H, W) int64 scribble map: class index on the strokes, ``ignore_index`` elsewhere)."""
    from PIL import Image, ImageDraw

    h, w = hw
    names, strokes = SCRIBBLES[name]
    canvas = Image.new("L", (w, h), ignore_index)
    draw = ImageDraw.Draw(canvas)
    for cls, line in strokes:
        draw.line([(x * (w - 1), y * (h - 1)) for x, y in line], fill=cls, width=width)
    return names, np.asarray(canvas, dtype=np.int64)


def coarse_probs(labels: np.ndarray, num_classes: int, *, patch: int = 16, gain: float = 4.0,
                 noise: float = 1.5, seed: int = 0) -> np.ndarray:
    """A CLIP-like coarse prediction (K, H, W) from a label map (H, W): per 16-pixel patch (a ViT-B/16's
    grid) logits = ``gain`` x the class's pixel fraction + ``noise`` x N(0, 1), bilinearly upsampled
    to full size, softmax over K. The same noise model as the "iid" case of
    ``scripts/refine_quality.py``."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    h, w = labels.shape
    onehot = torch.from_numpy(np.eye(num_classes, dtype=np.float32)[labels]).permute(2, 0, 1)[None]
    frac = F.adaptive_avg_pool2d(onehot, (-(-h // patch), -(-w // patch)))
    logits = gain * frac + noise * torch.from_numpy(rng.standard_normal(frac.shape).astype(np.float32))
    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits[0].softmax(0).numpy()
