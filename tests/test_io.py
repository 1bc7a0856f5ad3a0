import os
import stat

import numpy as np
import pytest
from PIL import Image

from clipapro.io import atomic_path, save_label_png, voc_palette, write_json_atomic


def test_atomic_path_leaves_no_partial_file_on_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("crash")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_label_png_roundtrip_and_errors(tmp_path):
    labels = np.array([[0, 1], [255, 20]])
    save_label_png(tmp_path / "l.png", labels)
    img = Image.open(tmp_path / "l.png")
    assert img.mode == "P" and np.array_equal(np.asarray(img), labels)
    assert voc_palette()[3:6] == [128, 0, 0] and voc_palette()[255 * 3:] == [224, 224, 192]
    with pytest.raises(ValueError, match="0..255"):
        save_label_png(tmp_path / "bad.png", np.array([[300]]))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        save_label_png(tmp_path / "bad.png", np.zeros((2, 2, 2)))
