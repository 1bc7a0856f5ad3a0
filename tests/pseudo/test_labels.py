"""Pseudo-label generation through the real CLI path with a tiny random CLIP: every image labelled,
skip on rerun, refusal of foreign folders, bad configurations caught before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clipapro.cli import main
from clipapro.distributed import shard_indices
from clipapro.pseudo import labels as L

from .conftest import CLASSES


def test_probs_to_labels_threshold_and_argmax():
    p = torch.tensor([[[0.5, 0.2, 0.34]], [[0.3, 0.7, 0.33]], [[0.2, 0.1, 0.33]]])
    assert L.probs_to_labels(p).tolist() == [[0, 1, 0]]
    assert L.probs_to_labels(p, threshold=0.4).tolist() == [[0, 1, 255]]
    with pytest.raises(ValueError, match="K, H, W"):
        L.probs_to_labels(p[0])


def test_soft_labels_roundtrip_and_bytes_are_reproducible(tmp_path):
    p = torch.softmax(torch.randn(4, 5, 7), 0)
    L.save_soft_labels(tmp_path / "a.npz", p)
    L.save_soft_labels(tmp_path / "b.npz", p)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = L.load_soft_labels(tmp_path / "a.npz")
    assert back.dtype == torch.float16 and back.shape == (4, 5, 7)
    assert torch.allclose(back.float(), p, atol=1e-3)


def test_shards_are_disjoint_and_complete():
    for n in (0, 1, 7, 10):
        for w in (1, 2, 3):
            parts = [shard_indices(n, r, w) for r in range(w)]
            flat = sorted(i for p in parts for i in p)
            assert flat == list(range(n))
    with pytest.raises(ValueError):
        shard_indices(3, 2, 2)


def test_bad_ids_are_refused(tmp_path):
    for bad in ("../x", "/abs", ""):
        with pytest.raises(ValueError, match="relative file name"):
            L.label_path(tmp_path, bad)
    assert L.label_path(tmp_path, "a/b").name == "b.png"


def _labels(out, ids):
    return {i: np.asarray(Image.open(L.label_path(out, i))) for i in ids}


def test_pseudo_label_every_image(toy_root, tiny_clip_args, tmp_path, capsys):
    out = tmp_path / "pl"
    assert main(["pseudo-label", "--dataset", "folder", "--root", str(toy_root), "--classes", CLASSES,
                 "--out-dir", str(out), "--soft", "--threshold", "0.4", *tiny_clip_args]) == 0
    ids = sorted(p.stem for p in (toy_root / "images").iterdir())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_images"] == len(ids)
    assert manifest["classes"] == ["background", "red", "green"]
    assert manifest["config_hash"] == L.config_hash(manifest["config"])
    for i, lab in _labels(out, ids).items():
        assert lab.shape == (32, 48) and set(np.unique(lab)) <= {0, 1, 2, 255}
        soft = L.load_soft_labels(L.soft_path(out, i)).float()
        assert soft.shape == (3, 32, 48)
        assert torch.allclose(soft.sum(0), torch.ones(32, 48), atol=1e-2)
        sure = lab != 255
        agree = (soft.argmax(0).numpy() == lab)[sure].mean() if sure.any() else 1.0
        assert agree > 0.98
        assert (soft.max(0).values.numpy()[~sure] < 0.4 + 1e-3).all()
    capsys.readouterr()
    # a second run finds everything done
    assert main(["pseudo-label", "--dataset", "folder", "--root", str(toy_root), "--classes", CLASSES,
                 "--out-dir", str(out), "--soft", "--threshold", "0.4", *tiny_clip_args]) == 0
    assert "0 written, 8 already present" in capsys.readouterr().out
    # damaged outputs are found and redone, byte for byte: a 0-byte label, a truncated one, a foreign file
    ids2 = sorted(ids)
    before = {i: (L.label_path(out, i).read_bytes(), L.soft_path(out, i).read_bytes()) for i in ids2}
    L.label_path(out, ids2[0]).write_bytes(b"")
    L.label_path(out, ids2[1]).write_bytes(before[ids2[1]][0][:40])
    L.soft_path(out, ids2[2]).write_bytes(before[ids2[3]][1])  # a valid file, but not this image's
    assert L.missing_labels(out, ids2, soft=True) == ids2[:3]
    assert main(["pseudo-label", "--dataset", "folder", "--root", str(toy_root), "--classes", CLASSES,
                 "--out-dir", str(out), "--soft", "--threshold", "0.4", *tiny_clip_args]) == 0
    assert "3 written, 5 already present" in capsys.readouterr().out
    assert {i: (L.label_path(out, i).read_bytes(), L.soft_path(out, i).read_bytes()) for i in ids2} == before
    # another configuration in the same folder is refused, unless --overwrite
    code = main(["pseudo-label", "--dataset", "folder", "--root", str(toy_root), "--classes", CLASSES,
                 "--out-dir", str(out), *tiny_clip_args])
    assert code == 2 and "different configuration" in capsys.readouterr().err
    assert main(["pseudo-label", "--dataset", "folder", "--root", str(toy_root), "--classes", CLASSES,
                 "--out-dir", str(out), "--overwrite", *tiny_clip_args]) == 0
    assert not (out / "soft").exists() and json.loads((out / "manifest.json").read_text())["complete"]


def _forbid_work(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("work started before the configuration was checked")

    monkeypatch.setattr("clipapro.pseudo.pipeline.clip_predictor", boom)


@pytest.mark.parametrize("case", ["dataset", "classes", "out_dir", "refiner", "threshold"])
def test_bad_configuration_fails_before_work(case, toy_root, voc_root, tiny_clip_args, tmp_path, capsys,
                                             monkeypatch):
    _forbid_work(monkeypatch)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = {"--dataset": "folder", "--root": str(toy_root), "--classes": CLASSES,
            "--out-dir": str(tmp_path / "o")}
    extra, expect = [], ""
    if case == "dataset":
        args["--dataset"], expect = "voc22", "unknown dataset 'voc22'"
    elif case == "classes":
        args.update({"--dataset": "voc21", "--root": str(voc_root), "--classes": "cat, dog"})
        expect = "does not match dataset"
    elif case == "out_dir":
        args["--out-dir"], expect = str(blocker / "sub"), "not writable"
    elif case == "refiner":
        extra, expect = ["--refine", "magic"], "unknown refiner 'magic'"
    else:
        extra, expect = ["--threshold", "1.5"], "--threshold must lie in (0, 1]"
    argv = ["pseudo-label", *[x for kv in args.items() for x in kv], *tiny_clip_args, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expect in err, err
    assert not (tmp_path / "o" / "labels").exists()


def test_voc_layout_with_matching_classes(voc_root, tiny_clip_args, tmp_path):
    out = tmp_path / "voc_pl"
    assert main(["pseudo-label", "--dataset", "voc21", "--root", str(voc_root), "--split", "train",
                 "--out-dir", str(out), *tiny_clip_args]) == 0
    assert sorted(p.stem for p in (out / "labels").iterdir()) == ["2007_000001", "2007_000002"]


def test_outputs_without_a_checksum_must_decode_to_the_image_size(tmp_path):
    out = tmp_path / "pl"
    L.save_label_png(L.label_path(out, "a"), np.zeros((4, 6), np.uint8))
    L.save_label_png(L.label_path(out, "b"), np.zeros((4, 6), np.uint8))
    L.label_path(out, "c").parent.mkdir(parents=True, exist_ok=True)
    L.label_path(out, "c").write_bytes(b"\x89PNG garbage")
    assert L._finished(out, "a", False, {}, (4, 6)) and not L._finished(out, "b", False, {}, (5, 6))
    assert not L._finished(out, "c", False, {}, None) and not L._finished(out, "zz", False, {}, None)
    assert L.missing_labels(out, ["a", "b", "c"]) == ["c"]
