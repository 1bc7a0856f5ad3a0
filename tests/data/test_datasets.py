import numpy as np
import pytest
from PIL import Image

from clipapro.data import (
    COCOStuffDataset,
    DatasetItemError,
    FolderDataset,
    HFSegmentationDataset,
    VOCDataset,
    build_dataset,
    convert_stuffthingmaps,
    list_datasets,
    raw_to_train_ids,
)
from clipapro.prompts import get_class_set

from .conftest import UNUSED, save_index_png, save_jpg


def _reduce_zero(m):
    return np.where((m == 0) | (m == 255), 255, m - 1)


def test_catalog_lists_benchmarks():
    assert {"voc21", "voc20", "context60", "context59", "cocostuff171", "folder"} <= set(list_datasets())
    with pytest.raises(ValueError, match="unknown dataset 'voc22'"):
        build_dataset("voc22", ".")


@pytest.mark.parametrize("name,k", [("voc21", 21), ("voc20", 20)])
def test_voc_items_and_classes(voc_root, name, k):
    root, masks = voc_root
    ds = build_dataset(name, root.parent.parent, split="val")  # root found below the given folder
    assert len(ds) == 3 and ds.ids == list(masks)
    assert ds.num_classes == k and ds.classes == get_class_set(name).names
    for i, (sid, mask) in enumerate(masks.items()):
        item = ds[i]
        assert item["id"] == sid
        assert item["image"].dtype == np.uint8 and item["image"].shape == (*mask.shape, 3)
        assert item["mask"].dtype == np.int64
        # palette PNGs must give indices, not colours
        np.testing.assert_array_equal(item["mask"], mask if name == "voc21" else _reduce_zero(mask))


def test_voc_aug_split(tmp_path, rng):
    from .conftest import write_voc

    masks = write_voc(tmp_path, rng, splits=("trainaug",), aug=True)
    ds = VOCDataset(tmp_path / "VOCdevkit" / "VOC2012", split="trainaug")
    assert "SegmentationClassAug" in str(ds.samples[0].mask)
    np.testing.assert_array_equal(ds[1]["mask"], list(masks.values())[1])


@pytest.mark.parametrize("name", ["context60", "context59"])
def test_context_layout(context_root, name):
    root, masks = context_root
    ds = build_dataset(name, root, split="val")
    assert ds.classes == get_class_set(name).names and ds.num_classes == (60 if name == "context60" else 59)
    for i, mask in enumerate(masks.values()):
        want = mask if name == "context60" else _reduce_zero(mask)
        np.testing.assert_array_equal(ds[i]["mask"], want)
    if name == "context59":  # background 0 is ignored, label 1 (aeroplane) becomes 0
        assert ds.classes[0] == "aeroplane"


def test_class_orders_match_mmseg():
    ctx = get_class_set("context60").names
    assert ctx[:6] == ("background", "aeroplane", "bag", "bed", "bedclothes", "bench") and ctx[-1] == "wood"
    assert get_class_set("context59").names == ctx[1:]
    coco = get_class_set("cocostuff171").names
    assert coco[0] == "person" and coco[79] == "toothbrush" and coco[80] == "banner" and coco[-1] == "wood"
    assert get_class_set("voc20").names == get_class_set("voc21").names[1:]
    assert "sky" in get_class_set("voc21").prompts[0]


def test_raw_to_train_ids_table():
    # independent construction: COCO category ids 1..182 minus the 11 never-annotated thing ids
    coco_ids = [c for c in range(1, 183) if c not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)]
    raw = np.array([c - 1 for c in coco_ids] + [255] + list(UNUSED))
    train = raw_to_train_ids(raw)
    assert train[:171].tolist() == list(range(171))
    assert (train[171:] == 255).all()
    with pytest.raises(ValueError, match="outside 0..181"):
        raw_to_train_ids(np.array([[182]]))


def test_cocostuff_train_ids_and_raw(coco_root):
    root, raws, trains = coco_root
    ds = build_dataset("cocostuff171", root, split="val")
    raw_ds = COCOStuffDataset(root, split="val2017", raw=True)
    assert ds.ids == sorted(trains) and ds.num_classes == 171
    for i, sid in enumerate(ds.ids):
        np.testing.assert_array_equal(ds[i]["mask"], trains[sid])
        np.testing.assert_array_equal(raw_ds[i]["mask"], trains[sid])


def test_convert_stuffthingmaps_resumable(coco_root, tmp_path):
    root, raws, trains = coco_root
    out = tmp_path / "converted"
    assert convert_stuffthingmaps(root / "annotations" / "val2017", out, progress=False) == 3
    for sid, train in trains.items():
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{sid}_labelTrainIds.png")), train)
    assert convert_stuffthingmaps(root / "annotations" / "val2017", out, progress=False) == 0  # resumes
    bad = tmp_path / "bad"
    save_index_png(bad / "x.png", np.full((2, 2), 200), palette=False)
    with pytest.raises(ValueError, match="x.png"):
        convert_stuffthingmaps(bad, tmp_path / "o2", progress=False)


def test_folder_dataset(tmp_path, rng):
    for sid in ("b", "a"):
        save_jpg(tmp_path / "images" / f"{sid}.jpg", rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
        save_index_png(tmp_path / "masks" / f"{sid}.png", rng.integers(0, 3, (4, 5)), palette=True)
    ds = build_dataset("folder", tmp_path, classes="cat, dog, grass")
    assert ds.ids == ["a", "b"] and ds.classes == ("cat", "dog", "grass")
    assert ds[0]["mask"].shape == (4, 5)
    (tmp_path / "val.txt").write_text("b\n")
    assert FolderDataset(tmp_path, classes="voc21", split="val").ids == ["b"]
    with pytest.raises(ValueError, match="classes="):
        build_dataset("folder", tmp_path)


def _hf_data(rng, n=3):
    import datasets

    imgs = [Image.fromarray(rng.integers(0, 256, (4 + i, 6, 3), dtype=np.uint8)) for i in range(n)]
    masks = [Image.fromarray(rng.integers(0, 3, (4 + i, 6)).astype(np.uint8), mode="L") for i in range(n)]
    feats = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image(),
                               "name": datasets.Value("string")})
    return datasets.Dataset.from_dict({"image": imgs, "annotation": masks, "name": ["x", "y", "z"][:n]},
                                      features=feats), masks


def test_hf_in_memory_and_saved(tmp_path, rng):
    data, masks = _hf_data(rng)
    ds = HFSegmentationDataset(data, classes="a, b, c", id_column="name")
    assert len(ds) == 3 and ds.ids == ["x", "y", "z"]
    item = ds[2]
    assert item["image"].shape == (6, 6, 3) and item["image"].dtype == np.uint8 and item["id"] == "z"
    np.testing.assert_array_equal(item["mask"], np.asarray(masks[2]))
    data.save_to_disk(str(tmp_path / "hfdata"))
    ds2 = build_dataset(f"hf:{tmp_path / 'hfdata'}", classes="a, b, c", reduce_zero=True)
    np.testing.assert_array_equal(ds2[0]["mask"], _reduce_zero(np.asarray(masks[0]).astype(np.int64)))
    with pytest.raises(ValueError, match="mask_column 'label' is not a column"):
        HFSegmentationDataset(data, classes="a, b", mask_column="label")
    with pytest.raises(DatasetItemError, match="outside 0..1"):
        HFSegmentationDataset(data, classes="a, b")[0]


# ---- errors name the file -------------------------------------------------------------------------

def test_missing_split_file(voc_root):
    root, _ = voc_root
    with pytest.raises(FileNotFoundError, match=r"Segmentation/test\.txt.*have: \['train', 'val'\]"):
        VOCDataset(root, split="test")


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        build_dataset("voc21", tmp_path / "nowhere")


def test_missing_and_corrupt_image(voc_root):
    root, _ = voc_root
    ds = VOCDataset(root, split="val")
    ds.samples[0].image.unlink()
    with pytest.raises(DatasetItemError, match=r"image file not found: .*2007_000000\.jpg") as info:
        ds[0]
    assert info.value.sample_id == "2007_000000"
    ds.samples[1].image.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetItemError, match=r"cannot read image .*2007_000001\.jpg"):
        ds[1]
    data = ds.samples[2].mask.read_bytes()
    ds.samples[2].mask.write_bytes(data[: len(data) // 2])  # truncated PNG
    with pytest.raises(DatasetItemError, match=r"2007_000002\.png"):
        ds[2]


def test_size_mismatch_and_label_range(voc_root):
    root, _ = voc_root
    ds = VOCDataset(root, split="val")
    save_index_png(ds.samples[0].mask, np.zeros((3, 3)), palette=True)
    with pytest.raises(DatasetItemError, match=r"000000\.png is 3x3 \(WxH\) but image .*000000\.jpg is 7x5"):
        ds[0]
    save_index_png(ds.samples[1].mask, np.full((6, 4), 21), palette=True)
    with pytest.raises(DatasetItemError, match=r"2007_000001\.png holds labels \[21\] outside 0..20"):
        ds[1]
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(ds.samples[2].mask)  # RGB label file
    with pytest.raises(DatasetItemError, match=r"2007_000002\.png has mode 'RGB'"):
        ds[2]
