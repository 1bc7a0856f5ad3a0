"""CocoInstances on a COCO JSON written in the real layout: polygon, RLE and uncompressed RLE masks,
crowd handling, the catalog entry, and one clear error per kind of bad input."""

import copy

import numpy as np
import pytest
import torch

from clipapro.data import DatasetItemError, build_instance_dataset, list_instance_datasets
from clipapro.data.instances import CocoInstances, InstanceSample

from ._files import write_coco, write_json


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path)


def test_samples_match_the_file(coco):
    ds = CocoInstances(coco["json"], coco["images"])
    assert len(ds) == 3 and ds.ids == [1, 2, 3]
    assert ds.categories == [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]
    s = ds[0]
    assert isinstance(s, InstanceSample) and s.image_id == 1 and s.file_name == "a.png"
    assert s.image.shape == (3, 10, 12) and s.image.dtype == torch.float32 and 0 <= s.image.min() <= s.image.max() <= 1
    # crowd annotation 4 is not a sample instance; bbox [x, y, w, h] -> x0, y0, x0 + w, y0 + h
    assert s.boxes.tolist() == [[1, 1, 5, 5], [6, 1, 11, 5], [1, 6, 5, 10]]
    assert s.labels.tolist() == [5, 9, 5] and s.labels.dtype == torch.int64
    assert s.masks.shape == (3, 10, 12) and s.masks.dtype == torch.bool
    _, m_rle, m_unc = coco["masks"][1]
    assert torch.equal(s.masks[1], torch.from_numpy(m_rle))  # compressed RLE
    assert torch.equal(s.masks[2], torch.from_numpy(m_unc))  # uncompressed RLE (hand-encoded runs)
    poly = s.masks[0].numpy()  # the polygon (1,1)-(5,5): inside its box, about its area
    assert poly[2:4, 2:4].all() and not poly[:, 6:].any() and not poly[6:].any() and 12 <= poly.sum() <= 25
    from pycocotools.coco import COCO

    ref = COCO(str(coco["json"]))
    assert np.array_equal(poly, ref.annToMask(ref.anns[1]).astype(bool))  # pycocotools' own rasterisation
    empty = ds[2]
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,) and empty.masks.shape == (0, 8, 9)


def test_coco_ground_truth_keeps_crowd_and_fills_defaults(coco, tmp_path):
    ds = CocoInstances(coco["json"], coco["images"])
    assert sorted(ds.coco.anns) == [1, 2, 3, 4, 5] and ds.coco.anns[4]["iscrowd"] == 1
    data = copy.deepcopy(coco["data"])
    for a in data["annotations"]:
        del a["area"], a["iscrowd"], a["id"]
    ds2 = CocoInstances(write_json(tmp_path / "bare.json", data), coco["images"])
    anns = ds2.coco.dataset["annotations"]
    assert [a["area"] for a in anns][1:] == [a["area"] for a in coco["data"]["annotations"]][1:]
    assert all(a["iscrowd"] == 0 for a in anns) and len({a["id"] for a in anns}) == 5


def test_box_only_and_annotations_only(coco, tmp_path):
    data = copy.deepcopy(coco["data"])
    for a in data["annotations"]:
        del a["segmentation"]
    path = write_json(tmp_path / "boxes.json", data)
    with pytest.raises(DatasetItemError, match=r"boxes.json: annotations\[0\].*with_masks=False"):
        CocoInstances(path, coco["images"])
    s = CocoInstances(path, coco["images"], with_masks=False)[0]
    assert s.masks is None and s.boxes.shape == (3, 4)
    ds = CocoInstances(coco["json"], None)
    assert len(ds.coco.imgs) == 3
    with pytest.raises(DatasetItemError, match="no image folder"):
        ds[0]


def test_images_dir_basename_fallback_and_catalog(coco, tmp_path):
    data = copy.deepcopy(coco["data"])
    for im in data["images"]:
        im["file_name"] = "images/" + im["file_name"]  # as ../shared/data/pennfudan writes them
    path = write_json(tmp_path / "instances.json", data)
    assert CocoInstances(path, tmp_path)[0].image.shape == (3, 10, 12)
    assert CocoInstances(path, coco["images"])[0].image.shape == (3, 10, 12)
    assert {"coco", "coco2017", "pennfudan", "voc"} <= set(list_instance_datasets())
    assert len(build_instance_dataset("pennfudan", tmp_path)) == 3
    assert len(build_instance_dataset("coco", path, images=tmp_path)) == 3
    with pytest.raises(ValueError, match="unknown instance dataset"):
        build_instance_dataset("nope", tmp_path)


def test_box_within_tolerance_is_clipped(coco, tmp_path):
    data = copy.deepcopy(coco["data"])
    data["annotations"][1]["bbox"] = [6, -0.5, 6.4, 5.5]
    s = CocoInstances(write_json(tmp_path / "t.json", data), coco["images"])[0]
    assert s.boxes[1].tolist() == pytest.approx([6, 0, 12, 5])


def test_skip_bad_boxes_keeps_the_rest(coco, tmp_path):
    data = copy.deepcopy(coco["data"])
    data["annotations"][1]["bbox"] = [6, 1, 0, 4]
    ds = CocoInstances(write_json(tmp_path / "z.json", data), coco["images"], skip_bad_boxes=True)
    assert ds[0].labels.tolist() == [5, 5] and ds[0].masks.shape == (2, 10, 12)
    assert len(ds.skipped) == 1 and "annotations[1] (id 2, image 1)" in ds.skipped[0]
    assert len(ds.coco.anns) == 5


def _bad(data, **change):
    data = copy.deepcopy(data)
    i = change.pop("index", 1)
    data["annotations"][i].update(change)
    return data


@pytest.mark.parametrize("change, message", [
    ({"bbox": [6, 1, 9, 4]}, r"annotations\[1\] \(id 2, image 1\): box .* outside the 12x10"),
    ({"bbox": [6, 1, 0, 4]}, r"annotations\[1\] \(id 2, image 1\): box .* zero area"),
    ({"bbox": [-3, 1, 4, 4]}, r"annotations\[1\].*outside"),
    ({"category_id": 7}, r"annotations\[1\] \(id 2, image 1\): unknown category_id 7"),
    ({"image_id": 42}, r"annotations\[1\].*unknown image_id 42"),
    ({"bbox": [1, 2, 3]}, r"annotations\[1\].*bbox must be \[x, y, w, h\]"),
    ({"segmentation": {"size": [4, 4], "counts": [16]}}, r"annotations\[1\].*RLE size \[4, 4\]"),
    ({"segmentation": [[1, 2]]}, r"annotations\[1\].*segmentation must be"),
    ({"id": 1}, r"annotations\[1\].*duplicate annotation id"),
])
def test_bad_annotations_name_the_file_and_entry(coco, tmp_path, change, message):
    path = write_json(tmp_path / "bad.json", _bad(coco["data"], **change))
    with pytest.raises(DatasetItemError, match=message) as info:
        CocoInstances(path, coco["images"])
    assert str(path) in str(info.value)


def test_bad_files(coco, tmp_path):
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"images": [')
    with pytest.raises(DatasetItemError, match=r"corrupt.json is not valid JSON"):
        CocoInstances(corrupt, coco["images"])
    with pytest.raises(DatasetItemError, match=r"missing or non-list 'categories'"):
        CocoInstances(write_json(tmp_path / "x.json", {"images": [], "annotations": []}), coco["images"])
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        CocoInstances(tmp_path / "nope.json", coco["images"])
    data = copy.deepcopy(coco["data"])
    data["images"][1]["file_name"] = "gone.png"
    with pytest.raises(FileNotFoundError, match=r"images\[1\] \(id 2\): image file 'gone.png' not found"):
        CocoInstances(write_json(tmp_path / "m.json", data), coco["images"])
    data = copy.deepcopy(coco["data"])
    data["images"][2]["width"] = 13
    ds = CocoInstances(write_json(tmp_path / "w.json", data), coco["images"])
    with pytest.raises(DatasetItemError, match=r"image id 3: image .*c.png is 9x8 \(WxH\) but .* say 13x8"):
        ds[2]
    data = copy.deepcopy(coco["data"])
    data["annotations"][1]["segmentation"]["counts"] = "@@@@"
    ds = CocoInstances(write_json(tmp_path / "r.json", data), coco["images"])
    with pytest.raises(DatasetItemError, match=r"annotation id 2 \(image 1\): cannot decode"):
        ds[0]
