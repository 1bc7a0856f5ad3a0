"""Figures: label overlays with a class legend, side-by-side panels, per-class IoU bar charts.

Every figure is drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas (no display, no
pyplot state) and written atomically (:func:`clipapro.io.atomic_path`) as a PNG of an exact,
documented size in pixels (``dpi`` is fixed at 100, so a figure of ``W x H`` pixels is
``W/100 x H/100`` inches):

* :func:`save_overlay`: ``width`` x (``round(width * H / W)`` + legend rows) pixels, see
  :func:`overlay_figure_size`.
* :func:`save_panels` (and :func:`save_comparison`, image | coarse | refined | ground truth):
  ``len(panels) * panel_width`` x (``round(panel_width * H / W)`` + title
  strip + legend rows) pixels, see :func:`panels_figure_size`.
* :func:`save_iou_bars`: ``width`` x ``height`` pixels as given.

Colours are those of the label PNGs (:func:`clipapro.io.voc_palette`), so a figure's legend also
explains the PNG files the commands write. Index ``ignore_index`` (255, "void") is drawn in the
palette's colour for 255 and left out of the legend.

Example:
    >>> import numpy as np
    >>> img = np.zeros((40, 60, 3), np.uint8); lab = np.zeros((40, 60), np.int64); lab[10:30, 20:40] = 1
    >>> save_overlay("overlay.png", img, lab, ["background", "cat"])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from clipapro.io import atomic_path, voc_palette

__all__ = [
    "DPI", "instance_label_map", "label_colors", "overlay", "overlay_figure_size", "panels_figure_size",
    "save_comparison", "save_iou_bars", "save_overlay", "save_panels",
]

DPI = 100
_LEGEND_ROW_PX = 22  # one legend row at the legend font size (8 pt ~ 11 px, plus spacing)
_TITLE_PX = 24
_MAX_LEGEND = 24  # classes shown in a legend; the rest are summarised as "+n more"


def label_colors(palette=None) -> np.ndarray:
    """(256, 3) uint8 colours of label indices (default: the PASCAL VOC palette of the label PNGs)."""
    pal = np.asarray(palette if palette is not None else voc_palette(), dtype=np.uint8)
    if pal.size != 768:
        raise ValueError(f"palette must hold 256 RGB colours (768 values), got {pal.size}")
    return pal.reshape(256, 3)


def _as_image(image) -> np.ndarray:
    """uint8 (H, W, 3), or float (3, H, W)/(H, W, 3) in [0, 1] (numpy or tensor) -> uint8 (H, W, 3)."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.size == 0:
        raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"image must be uint8 or float in [0, 1], got dtype {arr.dtype}")
    return (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)


def _as_labels(labels, hw=None, name: str = "labels") -> np.ndarray:
    arr = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (H, W), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if hw is not None and arr.shape != tuple(hw):
        raise ValueError(f"{name} has shape {arr.shape} but the image is {tuple(hw)}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"{name} must lie in 0..255, got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def overlay(image, labels, *, alpha: float = 0.5, palette=None, hide_index: int | None = None) -> np.ndarray:
    """Blend label colours over the photo: uint8 (H, W, 3) = (1 - alpha) * image + alpha * colour.

    ``image``: uint8 (H, W, 3) or float (3, H, W) in [0, 1]; ``labels``: (H, W) ints in 0..255.
    Pixels labelled ``hide_index`` (e.g. 255 = unlabelled scribble pixels) show the photo unchanged.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    img = _as_image(image)
    lab = _as_labels(labels, img.shape[:2])
    out = (1 - alpha) * img.astype(np.float32) + alpha * label_colors(palette)[lab].astype(np.float32)
    if hide_index is not None:
        out[lab == hide_index] = img[lab == hide_index]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _legend_entries(label_maps, class_names, ignore_index):
    """(index, name, pixel count) of the classes present in any map, most pixels first."""
    counts = np.zeros(256, dtype=np.int64)
    for lab in label_maps:
        counts += np.bincount(lab.ravel(), minlength=256)[:256]
    present = [i for i in np.argsort(-counts, kind="stable") if counts[i] > 0 and i != ignore_index]
    names = list(class_names) if class_names is not None else []
    return [(int(i), names[i] if i < len(names) else f"class {i}", int(counts[i])) for i in present]


def _legend_rows(n_entries: int, columns: int) -> int:
    shown = min(n_entries, _MAX_LEGEND) + (n_entries > _MAX_LEGEND)
    return math.ceil(shown / columns) if shown else 0


def overlay_figure_size(image_hw, n_classes: int, *, width: int = 640, columns: int = 4) -> tuple[int, int]:
    """(width, height) in pixels of :func:`save_overlay`'s PNG for an image of ``image_hw`` = (H, W)
    showing ``n_classes`` legend entries: height = round(width * H / W) + 22 px per legend row."""
    h, w = image_hw
    return width, max(1, round(width * h / w)) + _LEGEND_ROW_PX * _legend_rows(n_classes, columns)


def panels_figure_size(image_hw, n_panels: int, n_classes: int, *, panel_width: int = 320,
                       columns: int = 6) -> tuple[int, int]:
    """(width, height) in pixels of :func:`save_panels`' PNG: ``n_panels * panel_width`` wide,
    round(panel_width * H / W) + 24 px of titles + 22 px per legend row high."""
    h, w = image_hw
    rows = _legend_rows(n_classes, columns)
    return n_panels * panel_width, max(1, round(panel_width * h / w)) + _TITLE_PX + _LEGEND_ROW_PX * rows


def _new_figure(width_px: int, height_px: int):
    from clipapro._deps import require

    require("matplotlib", what="figures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _add_legend(fig, entries, colors, *, columns: int, top: float) -> None:
    """A legend of coloured patches in the figure band below ``top`` (figure fraction)."""
    from matplotlib.patches import Patch

    shown = entries[:_MAX_LEGEND]
    handles = [Patch(facecolor=colors[i] / 255.0, edgecolor="black", linewidth=0.5, label=name)
               for i, name, _ in shown]
    if len(entries) > len(shown):
        handles.append(Patch(facecolor="white", edgecolor="white", label=f"+{len(entries) - len(shown)} more"))
    if handles:
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, top), ncol=columns,
                   fontsize=8, frameon=False, handlelength=1.2, columnspacing=1.0, borderaxespad=0.2)


def save_overlay(path, image, labels, class_names=None, *, alpha: float = 0.5, width: int = 640,
                 columns: int = 4, ignore_index: int = 255, palette=None, hide_index: int | None = None) -> Path:
    """Write the photo with its label colours blended in and a legend of the classes present.

    Args:
        path: output PNG (written atomically; folders are created).
        image: uint8 (H, W, 3) or float (3, H, W) in [0, 1]; labels: (H, W) ints in 0..255.
        class_names: name of each label index (the legend says ``class i`` for indices beyond it).
        width: figure width in pixels; the size is :func:`overlay_figure_size`.
        ignore_index: left out of the legend; hide_index: drawn without colour (see :func:`overlay`).

    Example:
        >>> import numpy as np
        >>> lab = np.zeros((30, 40), np.int64); lab[5:20, 5:20] = 1
        >>> save_overlay("o.png", np.zeros((30, 40, 3), np.uint8), lab, ["bg", "cat"])  # doctest: +SKIP
    """
    blended = overlay(image, labels, alpha=alpha, palette=palette, hide_index=hide_index)
    lab = _as_labels(labels)
    entries = _legend_entries([lab], class_names, ignore_index)
    w_px, h_px = overlay_figure_size(lab.shape, len(entries), width=width, columns=columns)
    img_h = max(1, round(width * lab.shape[0] / lab.shape[1]))
    fig = _new_figure(w_px, h_px)
    ax = fig.add_axes((0, 1 - img_h / h_px, 1, img_h / h_px))
    ax.imshow(blended, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    _add_legend(fig, entries, label_colors(palette), columns=columns, top=1 - img_h / h_px)
    return _save(fig, path)


def save_panels(path, image, panels, class_names=None, *, panel_width: int = 320, alpha: float = 0.6,
                columns: int = 6, ignore_index: int = 255, palette=None, hide_index: int | None = None) -> Path:
    """Write side-by-side panels: the photo, then one overlay per label map (e.g. coarse | refined |
    ground truth), with a shared legend of every class present in any of them.

    Args:
        panels: ``{title: labels (H, W)}`` in display order (a ``None`` value is skipped); the photo
            comes first, titled "image".
        panel_width: width of one panel in pixels; the size is :func:`panels_figure_size`.
        ignore_index, hide_index: as for :func:`save_overlay`.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((30, 40), np.int64); b = a.copy(); b[5:20, 5:20] = 1
        >>> save_panels("p.png", np.zeros((30, 40, 3), np.uint8), {"coarse": a, "refined": b},
        ...             ["bg", "cat"])  # doctest: +SKIP
    """
    img = _as_image(image)
    maps = {str(t): _as_labels(v, img.shape[:2], name=f"panel {t!r}") for t, v in dict(panels).items()
            if v is not None}
    if not maps:
        raise ValueError("panels must contain at least one label map")
    entries = _legend_entries(list(maps.values()), class_names, ignore_index)
    n = len(maps) + 1
    w_px, h_px = panels_figure_size(img.shape[:2], n, len(entries), panel_width=panel_width, columns=columns)
    img_h = max(1, round(panel_width * img.shape[0] / img.shape[1]))
    fig = _new_figure(w_px, h_px)
    bottom = 1 - (img_h + _TITLE_PX) / h_px
    for k, (title, pic) in enumerate([("image", img)] + [(t, overlay(img, m, alpha=alpha, palette=palette,
                                                                           hide_index=hide_index))
                                                          for t, m in maps.items()]):
        ax = fig.add_axes((k / n, bottom, 1 / n, img_h / h_px))
        ax.imshow(pic, interpolation="nearest", aspect="auto")
        ax.set_axis_off()
        fig.text((k + 0.5) / n, 1 - 0.5 * _TITLE_PX / h_px, title, ha="center", va="center", fontsize=10)
    _add_legend(fig, entries, label_colors(palette), columns=columns, top=bottom)
    return _save(fig, path)


def _labels_of(x):
    """Labels (H, W) as they are, or the argmax of float probabilities (K, H, W)."""
    if x is None:
        return None
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return arr.argmax(0) if arr.ndim == 3 and np.issubdtype(arr.dtype, np.floating) else arr


def save_comparison(path, image, coarse, refined, ground_truth=None, class_names=None, **options) -> Path:
    """Write image | coarse | refined | ground truth (when given) side by side (:func:`save_panels`).

    ``coarse`` / ``refined``: label maps (H, W) or probabilities (K, H, W) (their argmax is shown);
    ``ground_truth``: (H, W) labels, 255 = void. ``options`` go to :func:`save_panels`.

    Example:
        >>> import numpy as np
        >>> p = np.random.default_rng(0).dirichlet(np.ones(3), (30, 40)).transpose(2, 0, 1)
        >>> save_comparison("c.png", np.zeros((30, 40, 3), np.uint8), p, p, None, ["a", "b", "c"])  # doctest: +SKIP
    """
    panels = {"coarse": _labels_of(coarse), "refined": _labels_of(refined), "ground truth": _labels_of(ground_truth)}
    return save_panels(path, image, panels, class_names, **options)


def _read_metrics(metrics) -> dict:
    if isinstance(metrics, (str, Path)):
        p = Path(metrics)
        if not p.is_file():
            raise FileNotFoundError(f"metrics file not found: {p}")
        try:
            metrics = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"cannot parse metrics JSON {p}: {err}") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("IoU"), dict):
        raise ValueError("metrics must be the evaluator's JSON: a dict with an 'IoU' map {class: percent}")
    return metrics


def save_iou_bars(path, metrics, *, width: int = 800, height: int = 480, sort: bool = True,
                  title: str | None = None) -> Path:
    """Write a per-class IoU bar chart (percent) from evaluation results, with the mIoU as a line.

    Args:
        metrics: the JSON written by ``clipapro evaluate --out`` (path or dict): ``mIoU``, ``aAcc``,
            ``mAcc`` and ``IoU`` = {class: percent or null}; classes with null (absent from both
            prediction and ground truth) are left out, as they are of the mean.
        width, height: PNG size in pixels. sort: highest IoU first (else class order).

    Example:
        >>> save_iou_bars("iou.png", {"mIoU": 50.0, "IoU": {"cat": 60.0, "dog": 40.0}})  # doctest: +SKIP
    """
    m = _read_metrics(metrics)
    rows = [(str(k), float(v), i) for i, (k, v) in enumerate(m["IoU"].items())
            if v is not None and not math.isnan(float(v))]
    if sort:
        rows.sort(key=lambda r: -r[1])
    fig = _new_figure(width, height)
    ax = fig.add_axes((0.08, 0.25, 0.9, 0.67))
    xs = np.arange(len(rows))
    colors = label_colors()  # bar i has the colour of its class in the label PNGs
    ax.bar(xs, [v for _, v, _ in rows], color=[colors[i % 256] / 255.0 for _, _, i in rows], edgecolor="black",
           linewidth=0.3)
    ax.set_xticks(xs, [n for n, _, _ in rows], rotation=60, ha="right", fontsize=7 if len(rows) > 30 else 8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("IoU (%)")
    if m.get("mIoU") is not None:
        ax.axhline(float(m["mIoU"]), color="black", linestyle="--", linewidth=1, label=f"mIoU {m['mIoU']}")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
    summary = ", ".join(f"{k} {m[k]}" for k in ("mIoU", "aAcc", "mAcc") if m.get(k) is not None)
    ax.set_title(title or (f"{m.get('dataset', 'evaluation')}: {summary}" if summary else "per-class IoU"),
                 fontsize=10)
    ax.set_xlim(-0.6, max(len(rows), 1) - 0.4)
    return _save(fig, path)


def instance_label_map(masks, scores=None) -> np.ndarray:
    """(N, H, W) bool instance masks -> (H, W) int64 index map: 0 none, k + 1 for mask k; where masks
    overlap the higher score wins (the later mask without scores). At most 254 masks (PNG colours).

    Example:
        >>> m = np.zeros((2, 2, 3), bool); m[0, :, :2] = True; m[1, :, 1:] = True
        >>> instance_label_map(m, [0.9, 0.5]).tolist()
        [[1, 1, 2], [1, 1, 2]]
    """
    arr = np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks).astype(bool)
    if arr.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {arr.shape}")
    if arr.shape[0] > 254:
        raise ValueError(f"at most 254 masks fit an index map, got {arr.shape[0]}")
    order = range(arr.shape[0]) if scores is None else np.argsort(np.asarray(scores, dtype=np.float64),
                                                                   kind="stable")
    out = np.zeros(arr.shape[1:], np.int64)
    for k in order:
        out[arr[k]] = k + 1
    return out
