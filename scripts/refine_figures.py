"""Comparison grids of the refinement study: one PNG per set, one row per noise model on the set's
first photo, columns image | coarse | each method | ground truth, in the label PNGs' VOC palette
(void in its palette colour). matplotlib with the Agg canvas, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipapro.io import atomic_path
from clipapro.viz import label_colors

PANEL_W = 200
TITLE_PX = 22
ROW_LABEL_PX = 70
GAP_PX = 4  # white space between panels


def _downsized(arr: np.ndarray, width: int) -> np.ndarray:
    """Nearest-neighbour resize of (H, W[, 3]) to ``width`` columns (labels stay labels)."""
    h, w = arr.shape[:2]
    height = max(1, round(width * h / w))
    ys = (np.arange(height) * h) // height
    xs = (np.arange(width) * w) // width
    return arr[ys][:, xs]


def save_grid(path, image: np.ndarray, rows: dict, gt: np.ndarray, methods: list, *, title: str = "") -> Path:
    """``rows``: {noise name: {"coarse": labels (H, W), method: labels (H, W), ...}}; writes ``path``."""
    from clipapro._deps import require

    require("matplotlib", what="the study's figures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colors = label_colors()
    cols = ["image", "coarse", *methods, "ground truth"]
    img = _downsized(image, PANEL_W)
    ph = img.shape[0]
    w_px = ROW_LABEL_PX + PANEL_W * len(cols)
    h_px = TITLE_PX * 2 + ph * len(rows)
    dpi = 100
    fig = Figure(figsize=(w_px / dpi, h_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    if title:
        fig.text(0.5, 1 - 0.5 * TITLE_PX / h_px, title, ha="center", va="center", fontsize=10)
    for j, name in enumerate(cols):
        fig.text((ROW_LABEL_PX + (j + 0.5) * PANEL_W) / w_px, 1 - 1.5 * TITLE_PX / h_px, name, ha="center",
                 va="center", fontsize=9)
    gt_pic = colors[_downsized(gt, PANEL_W)]
    for i, (noise, maps) in enumerate(rows.items()):
        top = 1 - (2 * TITLE_PX + (i + 1) * ph) / h_px
        fig.text(0.5 * ROW_LABEL_PX / w_px, top + 0.5 * ph / h_px, noise, ha="center", va="center", fontsize=9,
                 rotation=90)
        pics = [img] + [colors[_downsized(maps[c], PANEL_W)] for c in ["coarse", *methods]] + [gt_pic]
        for j, pic in enumerate(pics):
            ax = fig.add_axes(((ROW_LABEL_PX + j * PANEL_W + GAP_PX / 2) / w_px, top + GAP_PX / 2 / h_px,
                               (PANEL_W - GAP_PX) / w_px, (ph - GAP_PX) / h_px))
            ax.imshow(pic, interpolation="nearest", aspect="auto")
            ax.set_axis_off()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
