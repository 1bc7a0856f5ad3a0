"""``clipapro demo`` end to end on small copies of the bundled photos (``--max-side 64`` keeps it fast)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from clipapro.cli import main
from clipapro.commands import _demo_scenes as scenes
from clipapro.commands import demo

TINY_VIT = {"embed_dim": 16, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def _pngs_ok(paths):
    for p in paths:
        with Image.open(p) as im:
            im.verify()


def test_demo_without_weights_writes_figures_and_says_how_to_get_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "find_cached_weights", lambda model: None)  # whatever this machine caches
    out = tmp_path / "demo_out"
    assert main(["demo", "--out", str(out), "--max-side", "64"]) == 0
    printed = capsys.readouterr().out
    expected = ([f"box2mask_{p}.png" for p in scenes.BOXES] + [f"scribble2mask_{p}.png" for p in scenes.SCRIBBLES]
                + [f"refine_{p}.png" for p in scenes.SCRIBBLES] + [f"refine_{p}_iou.png" for p in scenes.SCRIBBLES])
    for name in expected:
        assert (out / name).is_file(), name
        assert name in printed, name
    _pngs_ok(out / n for n in expected)
    assert not list(out.glob("segment_*.png"))
    assert "--pretrained /path/to/open_clip_model.safetensors" in printed
    assert "open_clip.create_model('ViT-B-16', pretrained='openai')" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["segment"] == "skipped: no weights on disk"
    for photo in scenes.SCRIBBLES:
        miou = summary["refine"][photo]["mIoU"]
        assert all(0 <= v <= 100 for v in miou.values()) and "coarse (simulated CLIP)" in miou
    assert summary["box2mask"]["astronaut"]["boxes"] == ["person", "helmet", "rocket"]
    # the printed command lines run as they are on the inputs the demo saved
    cmd = summary["refine"]["coffee"]["command"]
    assert cmd in printed and (out / "inputs" / "coffee_coarse.npy").is_file()
    assert main(cmd.split()[3:]) == 0
    assert np.load(out / "coffee_refined.npy").shape == np.load(out / "inputs" / "coffee_coarse.npy").shape
    cmd = summary["box2mask"]["coffee"]["command"].replace('"', "")
    assert main(cmd.split()[3:]) == 0 and (out / "coffee_instances.png").is_file()
    assert main(summary["scribble2mask"]["coffee"]["command"].split()[3:]) == 0


def test_demo_segments_with_given_weights(tmp_path, capsys):
    """--pretrained runs the CLIP step (here a tiny random checkpoint stands in for real weights)."""
    from clipapro.clip import create_model

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_VIT))
    clip = create_model("tiny", model_cfg=TINY_VIT, random_init=True).clip
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(ckpt))
    out = tmp_path / "o"
    assert main(["demo", "--out", str(out), "--max-side", "48", "--model", str(cfg), "--pretrained", str(ckpt),
                 "--steps", "clip"]) == 0
    segs = sorted(p.name for p in out.glob("segment_*.png"))
    assert segs == ["segment_astronaut.png", "segment_coffee.png", "segment_grace_hopper.png"]
    _pngs_ok(out / s for s in segs)
    assert "CLIP segment" in capsys.readouterr().out
    assert json.loads((out / "summary.json").read_text())["segment"]["weights"] == str(ckpt)


def test_demo_rejects_missing_checkpoint(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--max-side", "32", "--pretrained", str(tmp_path / "x.bin"),
                 "--no-quick-gelu"]) == 2
    assert "--pretrained" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path), "--steps", "boxes,magic"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # usage errors are found before any work


def test_find_cached_weights_never_downloads(monkeypatch, tmp_path):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: asked.append((repo, name)))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded"))
    assert demo.find_cached_weights("ViT-B-16") is None
    assert asked and asked[0][0] == "timm/vit_base_patch16_clip_224.openai"
    hit = tmp_path / "open_clip_model.safetensors"
    hit.write_bytes(b"x")
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(hit))
    assert demo.find_cached_weights("ViT-B-16") == str(hit)
    assert demo.find_cached_weights("no-such-model") is None


def test_scenes_fit_the_photos():
    for photo in scenes.BOXES:
        img = scenes.load_photo(photo, 100)
        assert max(img.shape[:2]) == 100 and img.dtype == np.uint8
        names, boxes = scenes.pixel_boxes(photo, img.shape[:2])
        assert len(names) == len(boxes)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
    for photo in scenes.SCRIBBLES:
        names, s = scenes.scribble_map(photo, (50, 70))
        assert s.shape == (50, 70) and set(np.unique(s)) == set(range(len(names))) | {255}
    coarse = scenes.coarse_probs(np.repeat(np.arange(3), 20)[None].repeat(30, 0), 3)
    assert coarse.shape == (3, 30, 60) and np.allclose(coarse.sum(0), 1, atol=1e-5)
    assert (coarse.argmax(0) == np.repeat(np.arange(3), 20)[None]).mean() > 0.5
    torch.testing.assert_close(torch.from_numpy(coarse), torch.from_numpy(scenes.coarse_probs(
        np.repeat(np.arange(3), 20)[None].repeat(30, 0), 3)))  # seeded
