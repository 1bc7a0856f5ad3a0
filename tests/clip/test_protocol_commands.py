"""--protocol in the commands: segment (and --save-probs), prompts --protocols, evaluate's pipeline mode."""

import json

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import save_file

from clipapro.cli import main
from tests.data.conftest import write_voc


@pytest.fixture
def tiny_model_files(oc_vit, vit_cfg, tmp_path):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(vit_cfg))
    ckpt = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in oc_vit.clip.state_dict().items()}, str(ckpt))
    return str(cfg), str(ckpt)


def test_segment_protocol_and_save_probs(tiny_model_files, tmp_path, capsys):
    cfg, ckpt = tiny_model_files
    rng = np.random.default_rng(0)
    img = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(img)
    out, probs_dir = tmp_path / "out", tmp_path / "probs"
    argv = ["segment", str(img), "--protocol", "sclip-voc20", "--model", cfg, "--pretrained", ckpt,
            "--templates", "single", "--out-dir", str(out), "--save-probs", str(probs_dir), "--no-overlay"]
    assert main(argv) == 0
    probs = np.load(probs_dir / "photo.npy")
    assert probs.shape == (20, 37, 45) and probs.dtype == np.float32  # the preset's class set: voc20
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(np.asarray(Image.open(out / "photo.png")), probs.argmax(0))
    # an explicit flag overrides the preset: another logit scale gives other probabilities
    assert main(argv[:-1] + ["--logit-scale", "5", "--save-probs", str(tmp_path / "p5")]) == 0
    assert np.abs(np.load(tmp_path / "p5" / "photo.npy") - probs).max() > 1e-4
    assert main(argv[:3] + ["nope-voc21"] + argv[4:]) == 2
    assert "unknown protocol" in capsys.readouterr().err


def test_prompts_lists_protocols_with_their_numbers(capsys):
    assert main(["prompts", "--protocols"]) == 0
    out = capsys.readouterr().out
    assert "naclip-voc21" in out and "64.07" in out and "sclip-context60" in out and "31.74" in out
    assert main(["prompts", "--show", "maskclip-voc20"]) == 0
    assert json.loads(capsys.readouterr().out)["predict"]["remainder"] == "pad-corner"


def test_evaluate_runs_a_protocol_over_a_dataset(tiny_model_files, tmp_path, capsys):
    cfg, ckpt = tiny_model_files
    write_voc(tmp_path, np.random.default_rng(1))
    root = tmp_path / "VOCdevkit" / "VOC2012"
    preds, report = tmp_path / "preds", tmp_path / "m.json"
    argv = ["evaluate", "--protocol", "clearclip-voc20", "--root", str(root), "--model", cfg, "--pretrained", ckpt,
            "--pred-dir", str(preds), "--workers", "0", "--limit", "3", "--quiet", "--out", str(report),
            "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    result = json.loads(report.read_text())
    assert result["dataset"] == "voc20" and result["protocol"] == "clearclip-voc20"
    assert result["reported"]["mIoU"] == 80.9 and 0 <= result["mIoU"] <= 100
    assert len(list(preds.glob("*.png"))) == 3
    # the predictions are kept: scoring them again without the pipeline gives the same number
    assert main(["evaluate", "--dataset", "voc20", "--root", str(root), "--pred-dir", str(preds), "--workers", "0",
                 "--quiet", "--out", str(tmp_path / "again.json")]) == 0
    assert "published 80.9" in capsys.readouterr().out
