"""The refinement study (scripts/refine_quality.py): its noise models on tiny synthetic maps, and its
main on a two-photo fixture folder in the shared data layout."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

refine_noise = pytest.importorskip("refine_noise")  # needs scipy (the train extra)


def _study():
    spec = importlib.util.spec_from_file_location("refine_quality", SCRIPTS / "refine_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def scene(h=64, w=80):
    """Background, a box (class 1), a 4-px pole (class 2), a void border around the box."""
    g = np.zeros((h, w), np.uint8)
    g[16:48, 12:44] = 1
    g[:, 60:64] = 2
    g[15, 12:44] = 255
    return g


@pytest.mark.parametrize("model", sorted(refine_noise.NOISE_MODELS))
@pytest.mark.parametrize("k", [1, 3, 5])
def test_noise_models_give_seeded_probabilities(model, k):
    gt = np.minimum(scene(), k - 1).astype(np.uint8) if k < 3 else scene()
    gt[15, 12:44] = 255
    p = refine_noise.coarse_probs(gt, k, model, np.random.default_rng(0), background=0)
    assert p.shape == (k, 64, 80) and p.dtype == torch.float32
    assert torch.all(p >= 0) and torch.allclose(p.sum(0), torch.ones(64, 80), atol=1e-5)
    again = refine_noise.coarse_probs(gt, k, model, np.random.default_rng(0), background=0)
    assert torch.equal(p, again)
    if k > 1:
        other = refine_noise.coarse_probs(gt, k, model, np.random.default_rng(1), background=0)
        assert not torch.equal(p, other)


def test_iid_is_the_p16_patch_model():
    gt = scene(64, 64)
    rng = np.random.default_rng(3)
    frac = refine_noise.patch_fractions(refine_noise.fill_void(gt), 3)
    assert frac.shape == (3, 4, 4) and np.allclose(frac.sum(0), 1)
    assert frac[1, 1, 1] == 1.0 and frac[2, 0, 3] == 0.25  # a box cell; the pole is 4 of 16 columns
    logits = 4 * frac + 1.5 * np.random.default_rng(3).standard_normal(frac.shape)
    want = torch.softmax(torch.nn.functional.interpolate(torch.from_numpy(logits.astype(np.float32))[None],
                                                         size=(64, 64), mode="bilinear")[0], 0)
    assert torch.allclose(refine_noise.coarse_probs(gt, 3, "iid", rng), want, atol=1e-6)


def test_network_model_softens_like_unary_from_labels():
    p = refine_noise.coarse_probs(scene(), 4, "network", np.random.default_rng(0))
    top = p.max(0).values
    assert torch.allclose(top, torch.full_like(top, 0.7))
    rest = (p.sum(0) - top) / 3
    assert torch.allclose(p[p < 0.5], torch.tensor(0.1))  # 0.3 / (K - 1)
    assert torch.allclose(rest, torch.full_like(rest, 0.1))


def test_network_model_displaces_boundaries_and_loses_thin_parts():
    h, w = 256, 256
    gt = np.zeros((h, w), np.uint8)
    gt[:, 128:] = 1  # one straight vertical edge
    gt[:, 40:44] = 2  # a 4-px pole
    moved = []
    for seed in range(4):
        lab = refine_noise.network_labels(refine_noise.fill_void(gt), np.random.default_rng(seed))
        assert not (lab == 2).any()  # the pole is gone (opened away), its pixels given the background
        edge = (lab[:, 64:192] == 1).argmax(1) + 64  # first class-1 column per row
        moved.append(np.abs(edge - 128))
    moved = np.concatenate(moved)
    assert 4 <= np.median(moved) <= 16 and moved.max() <= 40


def test_coarse_probs_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown noise model"):
        refine_noise.coarse_probs(scene(), 3, "gaussian", np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_classes"):
        refine_noise.coarse_probs(scene(), 2, "iid", np.random.default_rng(0))
    with pytest.raises(ValueError, match="gt must be"):
        refine_noise.coarse_probs(scene()[None], 3, "iid", np.random.default_rng(0))


def _fixture(root: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("voc_a", "voc_b"):
        gt = scene(48, 64)
        img = np.where(gt[..., None] == 1, 200, 40).astype(np.uint8) + rng.integers(0, 20, (48, 64, 3), dtype=np.uint8)
        (root / "voc_samples" / "images").mkdir(parents=True, exist_ok=True)
        (root / "voc_samples" / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "voc_samples" / "images" / f"{name}.png")
        Image.fromarray(gt).save(root / "voc_samples" / "masks" / f"{name}.png")


def test_main_on_a_fixture_folder(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _fixture(tmp_path / "data")
    study = _study()
    args = ["--data-root", str(tmp_path / "data"), "--methods", "none,crf-tree", "--noise", "iid,network",
            "--no-progress", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "t.md"),
            "--figure-dir", str(tmp_path / "figs")]
    assert study.main(args) == 0
    out = capsys.readouterr()
    assert "noise model iid" in out.out and "summary" in out.out and "skipped" in out.err
    res = json.loads((tmp_path / "r.json").read_text())
    assert len(res["images"]) == 2 * 2 * 2  # photos x noise models x methods
    assert set(res["per_set"]) == {"voc_samples"}
    cell = res["per_set"]["voc_samples"]["iid"]
    assert cell["none"]["gain"] == 0 and 0 <= cell["crf-tree"]["miou"] <= 100
    assert "| crf-tree |" in (tmp_path / "t.md").read_text()
    assert (tmp_path / "figs" / "voc_samples.png").stat().st_size > 0
    # deterministic: the same numbers again (times aside)
    assert study.main(args[:-6] + ["--json", str(tmp_path / "r2.json"), "--no-memory"]) == 0
    res2 = json.loads((tmp_path / "r2.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in res["images"]]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in res2["images"]]
    # --resume keeps the finished sets of the same configuration (nothing is recomputed: times identical)
    capsys.readouterr()
    assert study.main(args[:-6] + ["--json", str(tmp_path / "r.json"), "--resume"]) == 0
    assert "resuming: voc_samples" in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["images"] == res["images"]
    # another configuration (seed) is not resumed
    assert study.main(args[:-6] + ["--json", str(tmp_path / "r.json"), "--resume", "--seed", "1"]) == 0
    assert "resuming" not in capsys.readouterr().err


def test_main_refuses_bad_arguments(tmp_path):
    study = _study()
    for bad in (["--methods", "nope"], ["--noise", "nope"], ["--sets", "nope"], ["--per-set", "0"],
                ["--extra", "x=crf-tree:{\"no_such_option\": 1}"], ["--data-root", str(tmp_path)], ["--resume"]):
        with pytest.raises(SystemExit) as e:
            study.main(bad + ["--no-progress"])
        assert e.value.code == 2


def test_set_helpers_keep_the_most_frequent_classes_and_spread_photos():
    import refine_sets

    masks = [np.array([[0, 0, 0, 3, 3, 1, 255]], np.uint8), np.array([[3, 3, 2, 2]], np.uint8)]
    lut = refine_sets._keep_most_frequent(masks, 4, 2)  # pixels: 0 -> 3, 1 -> 1, 2 -> 2, 3 -> 4
    assert lut[:4].tolist() == [0, 255, 255, 1] and lut[255] == 255  # 0 and 3 kept, renumbered in order
    assert refine_sets._spread(list("abcdefghij"), 3) == ["a", "d", "g"]
    assert refine_sets._spread(list("ab"), 5) == ["a", "b"]


def test_time_ratios_pair_each_input_with_densecrf():
    _study()  # puts scripts/ on the path
    import refine_report as study
    rec = [{"set": "s", "id": i, "noise": "iid", "method": m, "time_s": t}
           for i, (a, b) in enumerate([(1.0, 2.0), (1.0, 4.0), (3.0, 3.0)]) for m, t in (("x", a), ("densecrf", b))]
    r = study.time_ratios(rec)
    assert r["x"] == 0.5 and r["densecrf"] == 1.0
    assert study.time_ratios([r for r in rec if r["method"] == "x"]) == {}


def test_held_out_photos_are_the_ones_the_default_run_leaves_out(tmp_path):
    import refine_sets
    from PIL import Image

    folder = tmp_path / "camvid"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    ids = [f"f{i:02d}" for i in range(10)]
    for i in ids:
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "images" / f"{i}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "masks" / f"{i}.png")
    (folder / "meta.json").write_text(json.dumps({"num_classes": 11, "classes": [str(c) for c in range(11)],
                                                  "splits": {"train": ids}}))
    default = [p[0] for p in refine_sets.load_set(tmp_path, "camvid_train", per_set=3).photos]
    held = [p[0] for p in refine_sets.load_set(tmp_path, "camvid_train", per_set=3, exclude=3).photos]
    assert default == ["f00", "f03", "f06"]
    assert len(held) == 3 and not set(held) & set(default)
    rest = [p[0] for p in refine_sets.load_set(tmp_path, "camvid_train", per_set=None, exclude=3).photos]
    assert sorted(rest + default) == ids
