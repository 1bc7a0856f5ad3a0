"""Self-training: learning works on clean labels, and a resumed run continues bit-identically."""

from __future__ import annotations

import json

import pytest
import torch

from clipapro.data import build_dataset
from clipapro.pseudo import TrainConfig, create_student, train_student
from clipapro.pseudo.evaluate import evaluate_student
from clipapro.pseudo.trainset import epoch_batches

from .conftest import CLASSES


def _config(**kw):
    base = dict(num_classes=3, student="tiny_fcn", steps=6, batch_size=2, lr=0.05, crop_size=(32, 32),
                scale_range=(0.75, 1.25), ckpt_every=3, log_every=1, workers=0, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def test_clean_labels_drive_loss_down_and_miou_up(toy_root, tmp_path):
    torch.set_num_threads(1)
    ds = build_dataset("folder", toy_root, classes=CLASSES)
    torch.manual_seed(0)
    before = evaluate_student(create_student("tiny_fcn", 3), ds, num_classes=3, device="cpu").as_dict()
    cfg = _config(steps=60, batch_size=4, lr=0.1, ckpt_every=60, log_every=5, eval_every=60)
    result = train_student(cfg, ds, pseudo_dir=None, out_dir=tmp_path / "run", val_dataset=ds)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "run" / "log.jsonl").read_text().splitlines())
              if "loss" in r]
    assert losses[-1] < 0.6 * losses[0]
    assert result["eval"]["mIoU"] > before["mIoU"] + 20  # percent, as everywhere
    assert (tmp_path / "run" / "model_final.pt").is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] == 60


def _final_weights(path):
    return torch.load(path / "model_final.pt", weights_only=False)["model"]


def test_resume_is_bit_identical(toy_root, tmp_path):
    torch.set_num_threads(1)
    ds = build_dataset("folder", toy_root, classes=CLASSES)
    cfg = dict(steps=8, ckpt_every=2, apro_weight=0.5, apro_options={"iterations": 3})
    train_student(_config(**cfg), ds, pseudo_dir=None, out_dir=tmp_path / "a")
    # run B: stopped after step 3 (as a preemption would), then resumed in a fresh call; with
    # 8 images and batch 2 an epoch is 4 steps, so the resume lands mid-epoch
    first = train_student(_config(**cfg, stop_at=3), ds, pseudo_dir=None, out_dir=tmp_path / "b")
    assert first["step"] == 3 and not (tmp_path / "b" / "model_final.pt").exists()
    torch.manual_seed(1234)  # the global RNG state of the new process must not matter
    second = train_student(_config(**cfg), ds, pseudo_dir=None, out_dir=tmp_path / "b")
    assert second["step"] == 8
    a, b = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the uninterrupted run is not trivially equal to a fresh model
    fresh = create_student("tiny_fcn", 3).state_dict()
    assert not torch.equal(fresh["net.head.weight"], a["net.head.weight"])


def test_resume_refuses_other_configuration(toy_root, tmp_path):
    ds = build_dataset("folder", toy_root, classes=CLASSES)
    train_student(_config(steps=4, stop_at=2, ckpt_every=2), ds, pseudo_dir=None, out_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="different training configuration"):
        train_student(_config(steps=4, lr=0.2, ckpt_every=2), ds, pseudo_dir=None, out_dir=tmp_path / "r")


def test_batch_plan_shards_are_disjoint_and_cover_epoch():
    one = epoch_batches(12, epoch=3, seed=7, batch_size=4, rank=0, world_size=1)
    parts = [epoch_batches(12, epoch=3, seed=7, batch_size=2, rank=r, world_size=2) for r in range(2)]
    flat1 = sorted(i for b in one for i, _ in b)
    flat2 = sorted(i for p in parts for b in p for i, _ in b)
    assert flat1 == flat2 == list(range(12))
    assert epoch_batches(12, epoch=4, seed=7, batch_size=4) != one


def test_clip_student_starts_as_maskclip_and_trains(toy_root, tmp_path):
    from torch.nn import functional as F

    from clipapro.clip import build_text_classifier, create_model

    from .conftest import TINY_CLIP

    opts = {"clip_model": "tiny", "model_cfg": TINY_CLIP, "classes": CLASSES, "templates": "single"}
    torch.manual_seed(5)
    student = create_student("clip_vit", 3, **opts).eval()
    torch.manual_seed(5)
    clip = create_model("tiny", model_cfg=TINY_CLIP, random_init=True)
    clf = build_text_classifier(clip, CLASSES, templates="single")
    x = torch.rand(2, 3, 32, 48)
    expected = 40.0 * F.interpolate(clf.cosine(clip.encode_dense(x)), size=(32, 48), mode="bilinear",
                                    align_corners=False)
    with torch.no_grad():
        assert torch.allclose(student(x), expected, atol=1e-4)
        assert student(torch.rand(1, 3, 30, 45)).shape == (1, 3, 30, 45)  # padded to the patch grid
    student.train()
    student(x).sum().backward()
    assert student.net.visual.conv1.weight.grad.abs().sum() > 0  # the tower is trained too
    ds = build_dataset("folder", toy_root, classes=CLASSES)
    cfg = _config(student="clip_vit", student_options=opts, steps=2, ckpt_every=2)
    assert train_student(cfg, ds, pseudo_dir=None, out_dir=tmp_path / "clip")["last_loss"] > 0


def test_soft_labels_follow_the_geometry_of_the_hard_labels():
    from clipapro.pseudo.augment import random_scale_crop_flip

    rng = torch.Generator().manual_seed(0)
    lab = torch.randint(0, 3, (4, 6), generator=rng).repeat_interleave(5, 0).repeat_interleave(5, 1)  # blocks
    soft = torch.nn.functional.one_hot(lab, 3).permute(2, 0, 1).float()
    img = torch.randint(0, 256, (20, 30, 3), dtype=torch.uint8, generator=rng)
    for seed in range(6):  # scales from 0.5 (padding) to 1.5 (crop), with and without flips
        x, y, s = random_scale_crop_flip(img, lab, soft=soft, crop_size=(24, 24), scale_range=(0.5, 1.5), seed=seed)
        x2, y2 = random_scale_crop_flip(img, lab, crop_size=(24, 24), scale_range=(0.5, 1.5), seed=seed)
        assert torch.equal(x, x2) and torch.equal(y, y2)
        inside = y != 255
        assert torch.equal(s.sum(0) > 0, inside)
        # bilinear soft vs nearest hard: they agree away from label edges
        assert (s.argmax(0)[inside] == y[inside]).float().mean() > 0.8
