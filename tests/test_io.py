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


def test_load_probs_npy_and_npz(tmp_path):
    from clipapro.io import UnreadableFileError, load_probs

    p = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "a.npy", p)
    np.savez(tmp_path / "one.npz", whatever=p)
    np.savez(tmp_path / "named.npz", probs=p, other=p[:1])
    np.savez(tmp_path / "two.npz", a=p, b=p)
    for name in ("a.npy", "one.npz", "named.npz"):
        np.testing.assert_array_equal(load_probs(tmp_path / name), p)
    with pytest.raises(UnreadableFileError, match=r"two\.npz holds arrays \['a', 'b'\]"):
        load_probs(tmp_path / "two.npz")
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnreadableFileError, match="obj.npy"):
        load_probs(tmp_path / "obj.npy")
    np.save(tmp_path / "flat.npy", p[0])
    with pytest.raises(UnreadableFileError, match=r"\(K, H, W\)"):
        load_probs(tmp_path / "flat.npy")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_probs(tmp_path / "nope.npy")


def test_image_to_tensor_contract():
    import torch
    from PIL import Image as PILImage

    from clipapro.io import image_to_tensor

    u8 = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = image_to_tensor(u8)
    assert t.shape == (1, 3, 2, 3) and t.dtype == torch.float32 and float(t[0, 1, 0, 0]) == pytest.approx(1 / 255)
    assert torch.equal(image_to_tensor(PILImage.fromarray(u8)), t)
    assert torch.equal(image_to_tensor(t[0]), t) and image_to_tensor(u8, dtype=torch.float64).dtype == torch.float64
    assert image_to_tensor(np.stack([u8, u8])).shape == (2, 3, 2, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        image_to_tensor(t + 2)
    with pytest.raises(TypeError, match="uint8"):
        image_to_tensor(u8.astype(np.int32))
    with pytest.raises(ValueError, match="empty"):
        image_to_tensor(np.zeros((0, 3, 3), np.uint8))


def test_read_label_png_modes_and_errors(tmp_path):
    from clipapro.io import UnreadableFileError, read_label_png

    Image.fromarray(np.array([[0, 60000]], np.uint16)).save(tmp_path / "i16.png")
    assert read_label_png(tmp_path / "i16.png").tolist() == [[0, 60000]]
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(UnreadableFileError, match="mode 'RGB'"):
        read_label_png(tmp_path / "rgb.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(UnreadableFileError, match="cannot read label map .*bad.png"):
        read_label_png(tmp_path / "bad.png")


def test_check_output_path_refuses_links_devices_and_folders(tmp_path):
    from clipapro.io import check_output_path

    (tmp_path / "f").write_text("x")
    (tmp_path / "l").symlink_to(tmp_path / "f")
    assert check_output_path(tmp_path / "f") == tmp_path / "f" and check_output_path(tmp_path / "new")
    for bad, what in ((tmp_path / "l", "symbolic link"), ("/dev/null", "not a regular file"), (tmp_path, "folder")):
        with pytest.raises(ValueError, match=what):
            check_output_path(bad)
