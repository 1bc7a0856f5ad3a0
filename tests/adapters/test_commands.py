import numpy as np
import pytest
from PIL import Image

from clipapro.cli import main
from clipapro.io import save_label_png

from ..conftest import make_photo


@pytest.fixture
def photo(tmp_path):
    return make_photo(tmp_path / "photo.png", 40, 50)


def test_box2mask_writes_instance_png(photo, tmp_path, capsys):
    out = tmp_path / "m.png"
    assert main(["box2mask", str(photo), "--boxes", "8,6,42,34; 0,0,6,6", "--out", str(out)]) == 0
    m = np.array(Image.open(out))
    assert m.shape == (40, 50) and m[20, 25] == 1 and m[2, 45] == 0 and m[8, 10] == 0
    assert "2 instance(s)" in capsys.readouterr().out


@pytest.mark.parametrize("boxes, msg", [
    ("1,2,3", "4 numbers"), ("1,2,a,4", "non-numeric"), ("0,0,60,10", "outside"), ("5,5,2,9", "x1 > x0"),
    (";", "at least one")])
def test_box2mask_bad_boxes_exit_2(photo, tmp_path, capsys, boxes, msg):
    assert main(["box2mask", str(photo), "--boxes", boxes, "--out", str(tmp_path / "m.png")]) == 2
    assert msg in capsys.readouterr().err


def test_scribble2mask_png_and_points(photo, tmp_path):
    s = np.full((40, 50), 255)
    s[20, 15:35] = 15
    s[2, :] = 0
    save_label_png(tmp_path / "s.png", s)
    out = tmp_path / "m.png"
    assert main(["scribble2mask", str(photo), str(tmp_path / "s.png"), "--out", str(out)]) == 0
    m = np.array(Image.open(out))
    assert m[20, 25] == 15 and m[35, 5] == 0
    pts = '{"points": [{"x": 25, "y": 20, "class": 2}, {"x": 2, "y": 2, "class": 0}]}'
    (tmp_path / "p.json").write_text(pts)
    assert main(["scribble2mask", str(photo), str(tmp_path / "p.json"), "--out", str(out)]) == 0
    assert np.array(Image.open(out))[15, 30] == 2


def test_scribble2mask_wrong_size_is_a_clear_error(photo, tmp_path, capsys):
    save_label_png(tmp_path / "s.png", np.zeros((10, 10)))
    # bad or missing input files are bad arguments: exit 2
    assert main(["scribble2mask", str(photo), str(tmp_path / "s.png"), "--out", str(tmp_path / "m.png")]) == 2
    assert "10x10 (H x W) but the image is 40x50" in capsys.readouterr().err
    assert main(["scribble2mask", str(tmp_path / "nope.png"), str(tmp_path / "s.png"), "--out", "x.png"]) == 2


def test_sixteen_bit_scribble_with_a_huge_class_fails_before_work(photo, tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setattr("clipapro.adapters.tools.scribble_to_mask",
                        lambda *a, **k: pytest.fail("work started before the scribbles were checked"))
    arr = np.full((40, 50), 255, np.uint16)
    arr[5, 5], arr[30, 40] = 1, 60000
    Image.fromarray(arr).save(tmp_path / "s16.png")
    assert main(["scribble2mask", str(photo), str(tmp_path / "s16.png"), "--out", str(tmp_path / "m.png")]) == 2
    err = capsys.readouterr().err
    assert "s16.png has class 60000" in err and "below 255" in err
