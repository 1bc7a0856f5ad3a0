"""VocInstances on a VOC2012 devkit folder written in the real layout: XML boxes (1-based inclusive ->
pixel edges), SegmentationObject instance k = XML object k, SegmentationClass checked, and clear errors."""

import numpy as np
import pytest
import torch

from clipapro.data import DatasetItemError, build_instance_dataset
from clipapro.data.voc_instances import VOC_CATEGORIES, VocInstances
from clipapro.metrics.instances import mask_ap, masks_to_results

from ._files import _save_index_png, voc_xml, write_voc


@pytest.fixture
def voc(tmp_path):
    return write_voc(tmp_path)


def test_sample_matches_the_devkit_files(voc, tmp_path):
    ds = VocInstances(tmp_path, "val")  # a folder above VOCdevkit/VOC2012 is found
    assert len(ds) == 1 and ds.categories == VOC_CATEGORIES and len(ds.categories) == 20
    assert ds.category_names[12] == "dog" and ds.category_names[15] == "person"
    s = ds[0]
    assert s.image_id == 2007000032 and s.file_name == "JPEGImages/2007_000032.jpg"
    assert s.image.shape == (3, 9, 11)
    assert s.boxes.tolist() == [[1, 1, 5, 6], [6, 2, 10, 8]]  # xmin 2 (1-based) -> edge 1; xmax 5 -> edge 5
    assert s.labels.tolist() == [12, 15]
    assert torch.equal(s.masks, torch.from_numpy(voc["masks"]))  # 255 void is in no instance
    # each box is the tight box of its mask, as the devkit's boxes are
    for box, m in zip(s.boxes.long().tolist(), voc["masks"], strict=True):
        ys, xs = np.nonzero(m)
        assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert VocInstances(voc["base"], "val").ids == [2007000032]
    assert len(build_instance_dataset("voc", voc["base"])) == 1


def test_ground_truth_scores_itself_100(voc):
    ds = VocInstances(voc["base"])
    s = ds[0]
    preds = masks_to_results(s.image_id, s.masks, s.labels, [0.9, 0.8])
    r = mask_ap(ds.coco, preds)
    assert r["AP"] == pytest.approx(100) and r["per_class"]["dog"] == pytest.approx(100)
    assert np.isnan(r["per_class"]["cat"])  # no ground truth of that class


def test_main_split_without_masks(voc):
    ds = VocInstances(voc["base"], "train", with_masks=False)
    assert len(ds) == 2 and ds[1].masks is None and ds[1].labels.tolist() == [8]  # cat
    with pytest.raises(FileNotFoundError, match="ImageSets/Segmentation/train.txt"):
        VocInstances(voc["base"], "train")


def test_an_object_without_pixels_is_ignored_by_the_evaluation(voc):
    base = voc["base"]
    (base / "Annotations" / "2007_000032.xml").write_text(
        voc_xml("2007_000032", 11, 9, [("dog", 2, 2, 5, 6), ("person", 7, 3, 10, 8), ("dog", 1, 8, 3, 9)]))
    ds = VocInstances(base)
    s = ds[0]
    assert s.masks.shape == (3, 9, 11) and not s.masks[2].any()
    assert [a["iscrowd"] for a in ds.coco.dataset["annotations"]] == [0, 0, 1]
    assert mask_ap(ds.coco, masks_to_results(s.image_id, s.masks[:2], s.labels[:2], [1, 1]))["AP"] == pytest.approx(100)


def test_bad_files_name_the_file(voc):
    base = voc["base"]
    xml = base / "Annotations" / "2007_000032.xml"
    good = xml.read_text()
    xml.write_text(good[:50])
    with pytest.raises(DatasetItemError, match=r"2007_000032.xml is not valid XML"):
        VocInstances(base)
    xml.write_text(voc_xml("2007_000032", 11, 9, [("dragon", 2, 2, 5, 6)]))
    with pytest.raises(DatasetItemError, match=r"2007_000032.xml: object 1: unknown class 'dragon'"):
        VocInstances(base)
    xml.write_text(voc_xml("2007_000032", 11, 9, [("dog", 2, 2, 15, 6)]))
    with pytest.raises(DatasetItemError, match=r"2007_000032.xml: object 1: box .* outside the 11x9"):
        VocInstances(base)
    xml.write_text(voc_xml("2007_000032", 11, 9, [("dog", 5, 2, 4, 6)]))
    with pytest.raises(DatasetItemError, match=r"2007_000032.xml: object 1: box .* zero area"):
        VocInstances(base)
    xml.write_text(voc_xml("2007_000032", 11, 9, [("person", 2, 2, 5, 6), ("dog", 7, 3, 10, 8)]))
    with pytest.raises(DatasetItemError, match=r"SegmentationObject/2007_000032.png: instance 1 is class 12"):
        VocInstances(base)[0]
    xml.write_text(voc_xml("2007_000032", 11, 9, [("dog", 2, 2, 5, 6)]))
    with pytest.raises(DatasetItemError, match=r"holds instance 2 but .*2007_000032.xml lists only 1 objects"):
        VocInstances(base)[0]
    xml.write_text(good)
    _save_index_png(base / "SegmentationObject" / "2007_000032.png", np.zeros((5, 5)))
    with pytest.raises(DatasetItemError, match=r"SegmentationObject/2007_000032.png is 5x5"):
        VocInstances(base)[0]
    (base / "JPEGImages" / "2007_000032.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample '2007_000032': image file not found"):
        VocInstances(base)
