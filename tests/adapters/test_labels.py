import json

import numpy as np
import pytest
from PIL import Image

from clipapro.adapters.labels import (
    Point,
    points_to_labels,
    read_points_json,
    read_scribble_png,
    write_points_json,
)
from clipapro.io import save_label_png


def test_scribble_png_roundtrip(tmp_path):
    lab = np.full((6, 7), 255, np.int64)
    lab[1, 2], lab[4, 5] = 0, 12
    save_label_png(tmp_path / "s.png", lab)
    out = read_scribble_png(tmp_path / "s.png", size=(6, 7), num_classes=21)
    assert out.dtype == np.int64 and np.array_equal(out, lab)


def test_scribble_png_errors(tmp_path):
    lab = np.full((6, 7), 255, np.int64)
    lab[1, 2] = 3
    save_label_png(tmp_path / "s.png", lab)
    with pytest.raises(ValueError, match="6x7 .* but the image is 7x6"):
        read_scribble_png(tmp_path / "s.png", size=(7, 6))
    with pytest.raises(ValueError, match="class 3"):
        read_scribble_png(tmp_path / "s.png", num_classes=3)
    save_label_png(tmp_path / "e.png", np.full((4, 4), 255))
    with pytest.raises(ValueError, match="no labelled pixel"):
        read_scribble_png(tmp_path / "e.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="mode RGB"):
        read_scribble_png(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="cannot read"):
        read_scribble_png(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError):
        read_scribble_png(tmp_path / "missing.png")


def test_points_roundtrip_and_raster(tmp_path):
    pts = [Point(1.5, 2.0, 3), Point(0, 0, 0)]
    write_points_json(tmp_path / "p.json", pts)
    back = read_points_json(tmp_path / "p.json", size=(5, 5), num_classes=4)
    assert back == pts
    lab = points_to_labels(back, (5, 5), radius=1)
    assert lab[2, 1] == 3 and lab[1, 1] == 3 and lab[0, 0] == 0 and lab[4, 4] == 255
    (tmp_path / "list.json").write_text(json.dumps([{"x": 2, "y": 1, "class": 1}]))
    assert read_points_json(tmp_path / "list.json") == [Point(2.0, 1.0, 1)]


@pytest.mark.parametrize("payload, msg", [
    ([], "empty"), ({"points": []}, "empty"), ([{"x": 1, "y": 1}], "keys"),
    ([{"x": float("nan"), "y": 1, "class": 0}], "non-finite"), ([{"x": 9, "y": 1, "class": 0}], "outside"),
    ([{"x": 1, "y": 1, "class": 255}], "class"), ([{"x": 1, "y": 1, "class": 7}], "num_classes"),
    ({"pts": []}, "expected a list"),
])
def test_points_json_errors(tmp_path, payload, msg):
    p = tmp_path / "p.json"
    p.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=msg):
        read_points_json(p, size=(5, 5), num_classes=4)


def test_points_bad_json_and_empty_raster(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot parse"):
        read_points_json(tmp_path / "p.json")
    with pytest.raises(ValueError, match="empty"):
        points_to_labels([], (4, 4))
