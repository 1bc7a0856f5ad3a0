"""clipapro.viz: figures are valid PNGs of the documented size, colours match the label PNGs, errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clipapro import viz
from clipapro.io import voc_palette
from clipapro.metrics import ConfusionMatrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, size):
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()  # full CRC check of every chunk
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size
        return np.asarray(im.convert("RGB"))


def _no_temp_files(folder):
    return not [p for p in folder.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]


@pytest.fixture
def scene(rng):
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    lab = np.zeros((37, 53), np.int64)
    lab[5:20, 10:30] = 1
    lab[25:, 40:] = 7
    lab[0, :] = 255
    return img, lab


@pytest.mark.parametrize("hw", [(37, 53), (120, 40), (10, 300)])
@pytest.mark.parametrize("n_classes", [1, 5, 30])
def test_overlay_png_has_documented_size(tmp_path, rng, hw, n_classes):
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    lab = rng.integers(0, n_classes, hw)
    lab.flat[:n_classes] = np.arange(n_classes)  # every class present
    out = viz.save_overlay(tmp_path / "sub" / "o.png", img, lab, [f"c{i}" for i in range(n_classes)], width=300)
    w, h = viz.overlay_figure_size(hw, n_classes, width=300)
    rows = -(-min(n_classes + (n_classes > 24), 25) // 4)
    assert (w, h) == (300, round(300 * hw[0] / hw[1]) + 22 * rows)
    _check_png(out, (w, h))
    assert _no_temp_files(out.parent)


def test_overlay_pixels_are_the_label_png_colours(tmp_path, scene):
    img, lab = scene
    pal = np.asarray(voc_palette(), np.float32).reshape(256, 3)
    blended = viz.overlay(img, lab, alpha=0.25)
    expect = np.clip(0.75 * img + 0.25 * pal[lab] + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(blended, expect)
    assert np.array_equal(viz.overlay(img, lab, alpha=1.0)[lab == 7][0], pal[7].astype(np.uint8))
    hidden = viz.overlay(img, lab, alpha=1.0, hide_index=255)
    assert np.array_equal(hidden[0], img[0]) and not np.array_equal(hidden[1], img[1])
    # float (3, H, W) tensors in [0, 1] are accepted and give the same picture (up to rounding)
    as_float = torch.from_numpy(img).permute(2, 0, 1).double() / 255
    assert np.abs(viz.overlay(as_float, torch.from_numpy(lab)).astype(int) - viz.overlay(img, lab)).max() <= 1
    # the figure shows the photo at full width: the top-left region holds the blended colours
    w, h = viz.overlay_figure_size(lab.shape, 3, width=530)
    pic = _check_png(viz.save_overlay(tmp_path / "o.png", img, lab, ["bg", "cat"], width=530, alpha=1.0), (w, h))
    y, x = round(12 * 530 / 53), round(20 * 530 / 53)  # inside the class-1 rectangle (5:20, 10:30)
    assert np.abs(pic[y, x].astype(int) - pal[1]).max() <= 2


def test_legend_names_classes_and_skips_void(scene):
    _, lab = scene
    entries = viz._legend_entries([lab], ["background", "aeroplane"], 255)
    assert [(i, n) for i, n, _ in entries] == [(0, "background"), (1, "aeroplane"), (7, "class 7")]


@pytest.mark.parametrize("n_panels", [1, 3])
def test_panels_png_size_and_order(tmp_path, scene, n_panels):
    img, lab = scene
    maps = {"coarse": lab, "refined": np.where(lab == 7, 1, lab), "ground truth": lab}
    maps = dict(list(maps.items())[:n_panels])
    out = viz.save_panels(tmp_path / "p.png", img, maps, ["bg", "cat"], panel_width=106)
    n_cls = len(viz._legend_entries(list(maps.values()), None, 255))
    size = viz.panels_figure_size(img.shape[:2], n_panels + 1, n_cls, panel_width=106)
    assert size[0] == 106 * (n_panels + 1)
    pic = _check_png(out, size)
    # the first panel is the photo itself: its pixel at (row 30, col 5) scaled by 2
    assert np.abs(pic[24 + 60, 10].astype(int) - img[30, 5].astype(int)).max() <= 40


def test_panels_errors(tmp_path, scene):
    img, lab = scene
    with pytest.raises(ValueError, match="panel 'gt' has shape"):
        viz.save_panels(tmp_path / "p.png", img, {"gt": lab[:-1]})
    with pytest.raises(ValueError, match="at least one label map"):
        viz.save_panels(tmp_path / "p.png", img, {"gt": None})
    with pytest.raises(ValueError, match=r"0\.\.255"):
        viz.save_overlay(tmp_path / "o.png", img, lab + 300)
    with pytest.raises(TypeError, match="integers"):
        viz.save_overlay(tmp_path / "o.png", img, lab.astype(np.float32))
    with pytest.raises(ValueError, match="image must be"):
        viz.save_overlay(tmp_path / "o.png", img[..., :2], lab)
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(img, lab, alpha=1.5)
    assert not (tmp_path / "p.png").exists() and not (tmp_path / "o.png").exists()


def _evaluator_json(tmp_path):
    """The JSON `clipapro evaluate --out` writes (metrics.as_dict() plus dataset and split)."""
    cm = ConfusionMatrix(4, class_names=["background", "cat", "dog", "bird"])
    gt = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 3]])
    cm.update(pred, gt)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"dataset": "folder", "split": "val", **cm.compute().as_dict()}))
    return path


def test_iou_bars_from_evaluator_json(tmp_path):
    path = _evaluator_json(tmp_path)
    metrics = json.loads(path.read_text())
    assert metrics["IoU"]["bird"] is None and metrics["IoU"]["cat"] == 66.67  # bird: only on a void pixel
    out = viz.save_iou_bars(tmp_path / "bars.png", path, width=500, height=300)
    _check_png(out, (500, 300))
    out = viz.save_iou_bars(tmp_path / "bars2.png", {"mIoU": None, "IoU": {"a": None, "b": 10.0}}, sort=False)
    _check_png(out, (800, 480))


def test_iou_bars_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        viz.save_iou_bars(tmp_path / "b.png", tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        viz.save_iou_bars(tmp_path / "b.png", bad)
    with pytest.raises(ValueError, match="'IoU'"):
        viz.save_iou_bars(tmp_path / "b.png", {"mIoU": 3})


def test_comparison_takes_probabilities_and_optional_ground_truth(tmp_path, scene, rng):
    img, lab = scene
    probs = rng.dirichlet(np.ones(3), lab.shape).transpose(2, 0, 1)
    refined = torch.from_numpy(probs).float()
    for gt, n_panels in ((lab, 4), (None, 3)):
        out = viz.save_comparison(tmp_path / f"c{n_panels}.png", img, probs, refined, gt, ["a", "b", "c"],
                                  panel_width=53)
        maps = [probs.argmax(0), probs.argmax(0)] + ([lab] if gt is not None else [])
        n_cls = len(viz._legend_entries(maps, None, 255))
        _check_png(out, viz.panels_figure_size(lab.shape, n_panels, n_cls, panel_width=53))
