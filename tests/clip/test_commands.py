"""The ``segment`` and ``prompts`` commands end to end with a tiny model checkpoint."""

import json

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from clipapro.cli import main


@pytest.fixture
def tiny_model_files(oc_vit, vit_cfg, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(vit_cfg))
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in oc_vit.clip.state_dict().items()}, str(ckpt))
    return str(cfg), str(ckpt)


def _photo(path, size=(45, 37)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("refine", [False, True])
def test_segment_writes_label_and_overlay(tiny_model_files, tmp_path, capsys, refine):
    cfg, ckpt = tiny_model_files
    img = _photo(tmp_path / "photo.jpg")
    out = tmp_path / "out"
    argv = ["segment", img, "--classes", "voc21", "--model", cfg, "--pretrained", ckpt, "--templates",
            "single", "--out-dir", str(out), "--dense-mode", "naclip", "--slide-crop", "32"]
    if not refine:
        argv.append("--no-refine")
    assert main(argv) == 0
    labels = Image.open(out / "photo.png")
    assert labels.mode == "P" and labels.size == (45, 37)
    assert np.asarray(labels).max() < 21
    overlay = Image.open(out / "photo_overlay.png")
    assert overlay.mode == "RGB" and overlay.size == (45, 37)
    assert "photo.jpg:" in capsys.readouterr().out
    assert list((out / ".text_cache").glob("*.safetensors"))


def test_segment_errors(tiny_model_files, tmp_path, capsys):
    cfg, ckpt = tiny_model_files
    img = _photo(tmp_path / "p.png")
    base = ["segment", img, "--classes", "cat,dog", "--model", cfg, "--out-dir", str(tmp_path / "o")]
    assert main(base + ["--pretrained", ckpt, "--slide-stride", "8"]) == 2
    assert "--slide-stride needs --slide-crop" in capsys.readouterr().err
    # missing or unreadable inputs are bad arguments: exit 2, one line naming the file
    assert main(base + ["--pretrained", str(tmp_path / "nope.bin")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "missing.jpg"), "--classes", "cat,dog", "--model", cfg,
                 "--pretrained", ckpt, "--out-dir", str(tmp_path / "o")]) == 2
    assert "image not found" in capsys.readouterr().err
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert main(["segment", str(tmp_path / "bad.jpg"), "--classes", "cat,dog", "--model", cfg,
                 "--pretrained", ckpt, "--out-dir", str(tmp_path / "o"), "--refine", "none"]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_segment_offline_tag_error_says_how_to_pass_a_file(tmp_path, capsys, monkeypatch):
    import open_clip

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip, "create_model", offline)
    img = _photo(tmp_path / "p.png")
    argv = ["segment", img, "--classes", "cat,dog", "--model", "ViT-B-16", "--out-dir", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "ViT-B-16/openai" in err and "--pretrained /path/to/open_clip_model.bin" in err


def test_prompts_lists_and_shows(capsys):
    assert main(["prompts"]) == 0
    out = capsys.readouterr().out
    for name in ("voc21", "context60", "cocostuff171", "imagenet80", "maskclip85", "single"):
        assert name in out
    assert main(["prompts", "--show", "voc21"]) == 0
    assert "background: sky" in capsys.readouterr().out
    assert main(["prompts", "--show", "maskclip85"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 85
    assert main(["prompts", "--show", "nope"]) == 2


def test_segment_skip_existing_and_no_overlay(tiny_model_files, tmp_path):
    cfg, ckpt = tiny_model_files
    a, b = _photo(tmp_path / "a.png"), _photo(tmp_path / "b.png", size=(20, 30))
    out = tmp_path / "out"
    base = ["segment", "--classes", "cat,dog", "--model", cfg, "--pretrained", ckpt, "--templates", "single",
            "--out-dir", str(out), "--no-refine", "--no-overlay"]
    assert main(base[:1] + [a] + base[1:]) == 0
    (out / "a.png").write_bytes(b"sentinel")  # must survive: a is done already
    assert main(base[:1] + [a, b] + base[1:] + ["--skip-existing"]) == 0
    assert (out / "a.png").read_bytes() == b"sentinel"
    assert Image.open(out / "b.png").size == (20, 30)
    assert not list(out.glob("*_overlay.png"))
