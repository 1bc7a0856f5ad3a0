"""`clipapro refine` end to end on a tiny image."""

import numpy as np
import pytest
import torch
from PIL import Image

from clipapro.cli import main
from clipapro.refiners import refine


@pytest.fixture
def files(tmp_path):
    img = np.zeros((12, 16, 3), np.uint8)
    img[:, 8:] = (220, 30, 30)
    probs = torch.softmax(torch.randn(3, 12, 16), 0).numpy()
    Image.fromarray(img).save(tmp_path / "im.png")
    np.save(tmp_path / "p.npy", probs)
    return tmp_path, img, probs


def test_cli_writes_probs_and_labels(files):
    d, img, probs = files
    code = main(["refine", str(d / "im.png"), str(d / "p.npy"), "--out", str(d / "o.npy"),
                 "--labels-out", str(d / "o.png"), "--method", "crf-tree", "--option", "w_tree=4"])
    assert code == 0
    out = np.load(d / "o.npy")
    np.testing.assert_allclose(out, refine(img, probs, method="crf-tree", w_tree=4), atol=1e-6)
    labels = np.array(Image.open(d / "o.png"))
    assert Image.open(d / "o.png").mode == "P"
    np.testing.assert_array_equal(labels, out.argmax(0))
    assert sorted(p.name for p in d.iterdir()) == ["im.png", "o.npy", "o.png", "p.npy"]  # no temp files


def test_cli_logits_and_default_method(files):
    d, img, probs = files
    np.save(d / "l.npy", np.log(probs) + 5)
    assert main(["refine", str(d / "im.png"), str(d / "l.npy"), "--out", str(d / "o.npy"), "--logits"]) == 0
    np.testing.assert_allclose(np.load(d / "o.npy"), refine(img, probs), atol=1e-5)


def test_cli_errors(files, capsys):
    d, _, probs = files
    args = [str(d / "im.png"), str(d / "p.npy"), "--out", str(d / "o.npy")]
    assert main(["refine", *args, "--refine", "nope"]) == 2
    assert main(["refine", *args, "--refine-opt", "no_equals"]) == 2
    assert main(["refine", *args, "--refine-opt", "bogus=1"]) == 2
    # bad input files are bad arguments too (exit 2), found before any work
    np.save(d / "bad.npy", probs * 3)
    assert main(["refine", args[0], str(d / "bad.npy"), "--out", str(d / "o.npy")]) == 2
    assert "sum to one" in capsys.readouterr().err
    np.save(d / "small.npy", probs[:, :5])
    assert main(["refine", args[0], str(d / "small.npy"), "--out", str(d / "o.npy")]) == 2
    assert main(["refine", str(d / "missing.png"), args[1], "--out", str(d / "o.npy")]) == 2
    assert not (d / "o.npy").exists()
