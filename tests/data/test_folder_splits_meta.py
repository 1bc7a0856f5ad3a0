"""The folder dataset takes its split ids from meta.json (the common layout of ../shared/data) when
there is no <split>.txt."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clipapro.data import build_dataset


def _set(root, ids=("a", "b", "c")):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in ids:
        Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(np.zeros((4, 5), np.uint8), mode="L").save(root / "masks" / f"{i}.png")
    (root / "meta.json").write_text(json.dumps({"splits": {"train": ["c", "a"], "val": ["b"]}}))
    return root


def test_meta_json_splits_and_txt_precedence(tmp_path):
    root = _set(tmp_path / "s")
    assert build_dataset("folder", root, split="train", classes="x, y").ids == ["c", "a"]
    assert build_dataset("folder", root, split="val", classes="x, y").ids == ["b"]
    assert build_dataset("folder", root, classes="x, y").ids == ["a", "b", "c"]
    (root / "train.txt").write_text("b\n")
    assert build_dataset("folder", root, split="train", classes="x, y").ids == ["b"]
    with pytest.raises(FileNotFoundError, match=r"lists splits \['train', 'val'\]"):
        build_dataset("folder", root, split="test", classes="x, y")
