"""scripts/sparse_labels.py: strokes and points lie inside their segment, outputs are deterministic and
in the formats ``clipapro train`` reads."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from clipapro.adapters.labels import read_points_json, read_scribble_png
from scripts.sparse_labels import derive_points, derive_scribbles, main, segments


def _mask(seed=0, size=(40, 56)):
    """Background 0, a big rectangle of class 1, a thin bar of class 2, two blobs of class 1, void."""
    rng = np.random.default_rng(seed)
    m = np.zeros(size, np.int64)
    m[5:30, 8:30] = 1
    m[2:38, 40:43] = 2  # three pixels wide
    m[33:38, 5:12] = 1
    m[36:38, 30:32] = 2  # a 2x2 speck, below min_area
    y, x = rng.integers(0, 5, 2)
    m[y:y + 2, 50 + x:52 + x] = 255
    return m


def test_strokes_lie_inside_their_segment_and_skip_small_ones():
    mask = _mask()
    scr = derive_scribbles(mask, np.random.default_rng(0), min_area=20, width=3)
    labelled = scr != 255
    assert labelled.any()
    assert np.array_equal(scr[labelled], mask[labelled])  # same class as the ground truth under it
    seg_id = np.zeros(mask.shape, np.int64)
    for n, (c, sl, region) in enumerate(segments(mask, min_area=20), start=1):
        seg_id[sl][region] = n
        assert (labelled[sl] & region).any(), (c, sl)  # every segment gets a stroke
    from scipy import ndimage

    for c in (0, 1, 2):  # each stroke (4-connected) lies inside one segment
        strokes, n = ndimage.label(scr == c)
        for k in range(1, n + 1):
            under = np.unique(seg_id[strokes == k])
            assert under.size == 1 and under[0] > 0, (c, k, under)
    # a 2x2 speck is below min_area: no label there; void never gets one
    assert not labelled[mask == 255].any() and not labelled[36:38, 30:32].any()
    assert labelled.mean() < 0.5


def test_points_are_the_deepest_pixel_inside_each_segment():
    mask = _mask()
    pts = derive_points(mask, np.random.default_rng(0), per_segment=1)
    assert len(pts) == len(list(segments(mask)))
    for x, y, c in pts:
        assert mask[y, x] == c
    # the rectangle rows 5..29, cols 8..29: its deepest pixel is in the middle
    (x, y, _), = [p for p in pts if p[2] == 1 and 8 <= p[0] < 30 and 5 <= p[1] < 30]
    assert 15 <= y <= 19 and 16 <= x <= 21
    more = derive_points(mask, np.random.default_rng(0), per_segment=3)
    assert len(more) > len(pts) and all(mask[y, x] == c for x, y, c in more)


def test_script_is_deterministic_and_writes_what_train_reads(tmp_path):
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ids = ["a", "b", "c"]
    for k, i in enumerate(ids):
        Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(_mask(k).astype(np.uint8), mode="L").save(root / "masks" / f"{i}.png")
    (root / "meta.json").write_text(json.dumps({"num_classes": 3, "splits": {"train": ["a", "c"]}}))
    s1 = main([str(root), "--split", "train", "--out", str(tmp_path / "o1"), "--seed", "3"])
    main([str(root), "--out", str(tmp_path / "o2"), "--seed", "3"])  # all ids, other order of work
    assert s1["images"] == 2 and 0 < s1["scribble_fraction_of_labelled"] < 0.5
    for i in ("a", "c"):
        a = read_scribble_png(tmp_path / "o1" / "scribbles" / f"{i}.png", size=(40, 56), num_classes=3)
        b = read_scribble_png(tmp_path / "o2" / "scribbles" / f"{i}.png", size=(40, 56), num_classes=3)
        assert np.array_equal(a, b)
        pa = read_points_json(tmp_path / "o1" / "points" / f"{i}.json", size=(40, 56), num_classes=3)
        assert pa == read_points_json(tmp_path / "o2" / "points" / f"{i}.json")
    assert not (tmp_path / "o1" / "scribbles" / "b.png").exists()
    main([str(root), "--out", str(tmp_path / "o3"), "--seed", "4", "--points-per-segment", "3"])
    changed = [not np.array_equal(np.asarray(Image.open(tmp_path / "o2" / "scribbles" / f"{i}.png")),
                                  np.asarray(Image.open(tmp_path / "o3" / "scribbles" / f"{i}.png"))) for i in ids]
    assert any(changed)  # the seed matters
