"""``train`` on sparse labels (scribble PNGs, point JSON): partial cross-entropy + APro soft-label loss,
checks before any work, exact resume, and the sparse-label augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from clipapro.cli import main
from clipapro.data import build_dataset
from clipapro.pseudo.augment import random_scale_crop_flip
from clipapro.pseudo.train import TrainConfig, online_apro_loss, training_loss
from clipapro.pseudo.trainjob import TrainJob
from scripts.sparse_labels import derive_points, derive_scribbles

from .conftest import CLASSES, write_toy_folder


@pytest.fixture
def sparse_root(tmp_path):
    """Three toy images with scribbles and points derived from their masks by scripts/sparse_labels.py."""
    root = write_toy_folder(tmp_path / "toy", n=3)
    (root / "scribbles").mkdir()
    (root / "points").mkdir()
    combined = {}
    for k, p in enumerate(sorted((root / "masks").iterdir())):
        mask = np.asarray(Image.open(p)).astype(np.int64)
        scr = derive_scribbles(mask, np.random.default_rng(k), min_area=10)
        Image.fromarray(scr.astype(np.uint8), mode="L").save(root / "scribbles" / p.name)
        pts = [{"x": x, "y": y, "class": c} for x, y, c in derive_points(mask, np.random.default_rng(k))]
        (root / "points" / f"{p.stem}.json").write_text(json.dumps({"points": pts}))
        combined[p.stem] = pts
    (root / "points_all.json").write_text(json.dumps(combined))
    return root


def _job(root, out, **kw):
    base = dict(dataset="folder", root=root, classes=CLASSES, student="tiny_fcn", steps=4, batch_size=1,
                crop_size=(24, 32), scale_range=(0.75, 1.25), ckpt_every=2, log_every=1, workers=0,
                device="cpu", progress=False, eval_every=0, out_dir=out)
    base.update(kw)
    return TrainJob.create(**base)


@pytest.mark.parametrize("kind", ["scribbles", "points_dir", "points_file"])
def test_sparse_training_runs_and_records_its_labels(kind, sparse_root, tmp_path):
    torch.set_num_threads(1)
    src = {"scribbles": {"scribbles": sparse_root / "scribbles"},
           "points_dir": {"points": sparse_root / "points", "point_radius": 1},
           "points_file": {"points": sparse_root / "points_all.json", "point_radius": 1}}[kind]
    out = tmp_path / "run"
    job = _job(sparse_root, out, apro_weight=0.5, apro_ramp=2, apro_options={"iterations": 2}, **src)
    result = job.run()
    assert result["step"] == 4 and (out / "model_final.pt").is_file()
    sparse = json.loads((out / "config.json").read_text())["config"]["sparse"]
    assert sparse["kind"] == kind.split("_")[0] and len(sparse["hash"]) == 16
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert logs[0]["loss"] == pytest.approx(logs[0]["ce"])  # the ramp starts at weight 0
    assert any(r["loss"] > r["ce"] + 1e-6 for r in logs[1:])  # then the APro term enters


def test_point_files_and_combined_file_give_the_same_labels(sparse_root):
    from clipapro.pseudo.sparse import SparseLabels

    a = SparseLabels("points", str(sparse_root / "points"), 2)
    b = SparseLabels("points", str(sparse_root / "points_all.json"), 2)
    ds = build_dataset("folder", sparse_root, classes=CLASSES)
    assert a.check(ds, 3) == b.check(ds, 3)
    assert np.array_equal(a.read("img01", (32, 48)), b.read("img01", (32, 48)))


def _config(**kw):
    return TrainConfig(num_classes=3, **kw)


def test_partial_ce_ignores_unlabelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, requires_grad=True)
    images = torch.rand(2, 3, 5, 6)
    labels = torch.full((2, 5, 6), 255)
    loss, ce = training_loss(logits, images, labels, config=_config())
    loss.backward()
    assert float(ce.detach()) == 0.0 and float(loss.detach()) == 0.0
    assert torch.count_nonzero(logits.grad) == 0
    # two labelled pixels: the mean of -log softmax over exactly those, gradient only there
    labels[0, 1, 2], labels[1, 4, 0] = 2, 0
    logits.grad = None
    _, ce = training_loss(logits, images, labels, config=_config())
    ce.backward()
    logp = torch.log_softmax(logits.detach(), 1)
    expect = -(logp[0, 2, 1, 2] + logp[1, 0, 4, 0]) / 2
    assert float(ce.detach()) == pytest.approx(float(expect), rel=1e-6)
    touched = logits.grad.abs().sum(1) > 0
    assert touched.sum() == 2 and touched[0, 1, 2] and touched[1, 4, 0]


def test_apro_term_of_sparse_labels_is_the_adapters_loss():
    from clipapro.adapters.points import AProSoftLabelLoss

    torch.manual_seed(1)
    logits = torch.randn(1, 3, 8, 8)
    images = torch.rand(1, 3, 8, 8)
    labels = torch.full((1, 8, 8), 255)
    labels[0, 2, 2] = 1
    cfg = _config(apro_weight=0.7, apro_options={"iterations": 2}, sparse={"kind": "scribbles", "hash": "x"})
    loss, ce = training_loss(logits, images, labels, config=cfg, aux=online_apro_loss(cfg), apro_weight=0.7)
    ref = AProSoftLabelLoss(iterations=2)(logits, images, labels)
    assert float(loss - ce) == pytest.approx(0.7 * float(ref), rel=1e-6)


def test_new_fields_at_their_defaults_keep_the_old_identity():
    ident = _config().identity()
    assert "sparse" not in ident and "apro_ramp" not in ident
    moved = _config(sparse={"kind": "points", "source": "a", "point_radius": 0, "hash": "h"}).identity()
    assert moved == _config(sparse={"kind": "points", "source": "b", "point_radius": 0, "hash": "h"}).identity()


def _write_bad(root, case):
    lab = root / "scribbles" / "img01.png"
    if case == "missing":
        lab.unlink()
        return "1 of 3 training images have no scribbles file", "img01.png"
    if case == "size":
        Image.fromarray(np.full((10, 10), 1, np.uint8), mode="L").save(lab)
        return "is 10x10 (H x W) but the image is 32x48", "img01.png"
    if case == "class":
        arr = np.full((32, 48), 255, np.uint8)
        arr[3, 3] = 7
        Image.fromarray(arr, mode="L").save(lab)
        return "has class 7 but num_classes is 3", "img01.png"
    if case == "point_class":
        (root / "points" / "img02.json").write_text(json.dumps([{"x": 1, "y": 1, "class": 5}]))
        return "point 0 has class 5 but num_classes is 3", "img02.json"
    (root / "points" / "img02.json").write_text(json.dumps([{"x": 60, "y": 1, "class": 1}]))
    return "lies outside the 32x48 image", "img02.json"


@pytest.mark.parametrize("case", ["missing", "size", "class", "point_class", "point_outside"])
def test_bad_sparse_labels_fail_before_training_naming_the_file(case, sparse_root, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setattr("clipapro.pseudo.trainjob.train_student",
                        lambda *a, **k: pytest.fail("training started before the checks"))
    message, name = _write_bad(sparse_root, case)
    flag = ["--points", str(sparse_root / "points")] if case.startswith("point") else \
        ["--scribbles", str(sparse_root / "scribbles")]
    argv = ["train", "--dataset", "folder", "--root", str(sparse_root), "--classes", CLASSES, "--student",
            "tiny_fcn", "--steps", "2", "--batch-size", "1", "--workers", "0", "--no-progress",
            "--out-dir", str(tmp_path / "run"), *flag]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and name in err
    assert err.count("\n") <= 2  # one message, no traceback


def test_scribbles_with_pseudo_dir_are_refused(sparse_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "folder", "--root", str(sparse_root), "--classes", CLASSES,
              "--scribbles", str(sparse_root / "scribbles"), "--pseudo-dir", str(tmp_path),
              "--out-dir", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ValueError, match="exclusive"):
        _job(sparse_root, tmp_path / "r", scribbles=sparse_root / "scribbles", pseudo_dir=tmp_path)
    with pytest.raises(ValueError, match="point_radius applies to points only"):
        _job(sparse_root, tmp_path / "r", scribbles=sparse_root / "scribbles", point_radius=2)


def _weights(out):
    return torch.load(out / "model_final.pt", weights_only=False)["model"]


def test_sparse_resume_is_bit_identical(sparse_root, tmp_path):
    torch.set_num_threads(1)
    kw = dict(scribbles=sparse_root / "scribbles", steps=6, apro_weight=0.5, apro_ramp=4,
              apro_options={"iterations": 2})
    _job(sparse_root, tmp_path / "a", **kw).run()
    # stopped after step 3 (mid-epoch and mid-ramp), then resumed in a fresh job
    assert _job(sparse_root, tmp_path / "b", stop_at=3, **kw).run()["step"] == 3
    torch.manual_seed(4321)
    assert _job(sparse_root, tmp_path / "b", **kw).run()["step"] == 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the same configuration on changed label content refuses the checkpoint
    _job(sparse_root, tmp_path / "c", stop_at=2, **kw).run()
    arr = np.asarray(Image.open(sparse_root / "scribbles" / "img00.png")).copy()
    arr[0, 0] = 0 if arr[0, 0] == 255 else 255
    Image.fromarray(arr, mode="L").save(sparse_root / "scribbles" / "img00.png")
    with pytest.raises(ValueError, match="different training configuration"):
        _job(sparse_root, tmp_path / "c", **kw).run()


def test_sparse_downscale_keeps_every_isolated_point():
    img = np.zeros((40, 60, 3), np.uint8)
    lab = np.full((40, 60), 255, np.int64)
    ys, xs = np.arange(1, 40, 4), np.arange(2, 60, 6)  # 10 x 10 points, far enough apart for a 0.5 scale
    for i, y in enumerate(ys):
        lab[y, xs] = i % 3
    kw = dict(crop_size=(20, 30), scale_range=(0.5, 0.5), flip=False, seed=0)
    _, sparse = random_scale_crop_flip(img, lab, sparse=True, **kw)
    _, nearest = random_scale_crop_flip(img, lab, **kw)
    assert int((sparse != 255).sum()) == 100
    assert int((nearest != 255).sum()) < 100  # nearest sampling drops most one-pixel points
    for i in range(10):  # every point keeps its class, in its row
        row = sparse[int((ys[i] + 0.5) * 0.5)]
        assert set(row[row != 255].tolist()) == {i % 3}


def test_ddp_gloo_scribble_training_with_eval_resumes_bit_identically(sparse_root, tmp_path):
    import multiprocessing as mp

    from . import _workers
    from .test_train_cli import _ddp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_workers.PRELOAD)
    a, b = tmp_path / "a", tmp_path / "b"

    def argv(out, *extra):
        return ["train", "--dataset", "folder", "--root", str(sparse_root), "--classes", CLASSES,
                "--scribbles", str(sparse_root / "scribbles"), "--apro-weight", "0.5", "--apro-ramp", "2",
                "--apro-opt", "iterations=2", "--student", "tiny_fcn", "--steps", "4", "--batch-size", "1",
                "--crop-size", "24", "32", "--workers", "0", "--ckpt-every", "2", "--log-every", "1",
                "--val-split", "all", "--eval-every", "2", "--device", "cpu", "--no-progress",
                "--out-dir", str(out), *extra]

    assert _ddp(ctx, argv(a), tmp_path) == [0, 0]
    assert _ddp(ctx, argv(b, "--stop-at", "2"), tmp_path) == [0, 0]
    assert _ddp(ctx, argv(b), tmp_path) == [0, 0]
    wa, wb = _weights(a), _weights(b)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    ev_a = json.loads((a / "metrics.json").read_text())["eval"]
    assert ev_a == json.loads((b / "metrics.json").read_text())["eval"] and ev_a["mIoU"] >= 0


def test_periodic_evaluation_does_not_shift_the_training_rng(toy_root, tmp_path):
    """Evaluation between checkpoints must not draw from the RNG that dropout uses (clean labels here:
    the same loop serves every kind of labels)."""
    from clipapro.pseudo import train_student

    torch.set_num_threads(1)
    ds = build_dataset("folder", toy_root, classes=CLASSES)
    cfg = dict(num_classes=3, student="tiny_fcn", steps=6, batch_size=2, lr=0.05, crop_size=(32, 32),
               ckpt_every=2, log_every=1, eval_every=2, progress=False)
    train_student(TrainConfig(**cfg), ds, pseudo_dir=None, out_dir=tmp_path / "a", val_dataset=ds)
    train_student(TrainConfig(**cfg, stop_at=2), ds, pseudo_dir=None, out_dir=tmp_path / "b", val_dataset=ds)
    train_student(TrainConfig(**cfg), ds, pseudo_dir=None, out_dir=tmp_path / "b", val_dataset=ds)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_sixteen_bit_scribble_pngs_read_as_the_eight_bit_ones(sparse_root):
    from clipapro.pseudo.sparse import SparseLabels

    ds = build_dataset("folder", sparse_root, classes=CLASSES)
    eight = SparseLabels("scribbles", str(sparse_root / "scribbles"))
    before = eight.check(ds, 3)
    wide = sparse_root / "scribbles16"
    wide.mkdir()
    for p in (sparse_root / "scribbles").iterdir():
        arr = np.asarray(Image.open(p)).astype(np.uint16)
        Image.fromarray(arr).save(wide / p.name)
        with Image.open(wide / p.name) as im:
            assert im.mode.startswith("I")  # really a 16-bit PNG
    sixteen = SparseLabels("scribbles", str(wide))
    assert sixteen.check(ds, 3) == before
    assert np.array_equal(sixteen.read("img00", (32, 48)), eight.read("img00", (32, 48)))
