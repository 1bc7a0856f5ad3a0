"""Segmentation metrics as a value object, with JSON, CSV and Markdown output (values in percent)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

__all__ = ["SegMetrics"]


def _pct(x: float, digits: int = 2):
    return None if x is None or math.isnan(x) else round(100.0 * x, digits)


@dataclass
class SegMetrics:
    """mIoU, mAcc, aAcc and per-class IoU/Acc as fractions; NaN marks a class left out of the mean.

    ``class_names``, ``num_images`` and ``skipped`` (ids of samples skipped as corrupt) are filled by
    the evaluators. ``as_dict()`` gives the JSON layout (percent, 2 decimals, ``null`` for NaN).
    """

    iou: list[float]
    acc: list[float]
    miou: float
    macc: float
    aacc: float
    pixels: int = 0
    class_names: tuple[str, ...] | None = None
    num_images: int | None = None
    skipped: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        if self.class_names is not None and len(self.class_names) == len(self.iou):
            return list(self.class_names)
        return [str(i) for i in range(len(self.iou))]

    def as_dict(self, digits: int = 2) -> dict:
        """``{"mIoU", "aAcc", "mAcc", "IoU": {name: pct|None}, "Acc": {...}, "num_images", ...}``."""
        names = self.names()
        out = {
            "mIoU": _pct(self.miou, digits), "aAcc": _pct(self.aacc, digits), "mAcc": _pct(self.macc, digits),
            "IoU": {n: _pct(v, digits) for n, v in zip(names, self.iou, strict=True)},
            "Acc": {n: _pct(v, digits) for n, v in zip(names, self.acc, strict=True)},
            "num_classes": len(names), "classes_in_mean": sum(not math.isnan(v) for v in self.iou),
            "pixels": self.pixels,
        }
        if self.num_images is not None:
            out["num_images"] = self.num_images
        if self.skipped:
            out["skipped"] = list(self.skipped)
        return out

    def to_csv(self) -> str:
        """``class,IoU,Acc`` rows in percent (empty cell for a class left out), then a ``mean`` row."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["class", "IoU", "Acc"])
        for n, i, a in zip(self.names(), self.iou, self.acc, strict=True):
            w.writerow([n, _cell(i), _cell(a)])
        w.writerow(["mean", _fmt(self.miou), _fmt(self.macc)])
        w.writerow(["aAcc", _fmt(self.aacc), ""])
        return buf.getvalue()

    def to_markdown(self, *, title: str | None = None) -> str:
        """A Markdown table: one row per class (IoU, Acc in %), then the summary line."""
        lines = [f"### {title}", ""] if title else []
        lines += ["| class | IoU | Acc |", "| --- | ---: | ---: |"]
        for n, i, a in zip(self.names(), self.iou, self.acc, strict=True):
            lines.append(f"| {n} | {_fmt(i)} | {_fmt(a)} |")
        lines += ["", f"**mIoU {_fmt(self.miou)}** · mAcc {_fmt(self.macc)} · aAcc {_fmt(self.aacc)}"
                  + (f" · {self.num_images} images" if self.num_images is not None else "")]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} corrupt samples: {', '.join(self.skipped[:10])}")
        return "\n".join(lines) + "\n"


def _cell(x: float) -> str:
    return "" if math.isnan(x) else f"{100 * x:.2f}"


def _fmt(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{100 * x:.2f}"
