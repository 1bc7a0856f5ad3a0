"""``box2mask --coco`` end to end (resume by rerunning) and ``evaluate-instances`` on fixture files."""

import json

import numpy as np
import pytest

from clipapro.cli import main
from clipapro.data.instances import CocoInstances
from clipapro.metrics.instances import instance_ious, masks_to_results

from ._files import write_coco, write_json


def _one_line_error(err: str, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path / "data")


def _box2mask(coco, out, *extra):
    return main(["box2mask", "--coco", str(coco["json"]), "--images", str(coco["images"]), "--out", str(out),
                 *extra])


def _partial_lines(out):
    return out.with_name(out.name + ".partial.jsonl").read_text().splitlines()


def test_box2mask_coco_writes_rle_results_and_resumes(coco, tmp_path, capsys):
    from pycocotools import mask as mask_util

    out = tmp_path / "masks.json"
    assert _box2mask(coco, out, "--limit", "1") == 0
    first = json.loads(out.read_text())
    assert len(first) == 3 and {r["image_id"] for r in first} == {1}  # the crowd box is skipped
    assert "0 already done" in capsys.readouterr().out
    assert _box2mask(coco, out) == 0  # resumes: image 1 is not redone
    text = capsys.readouterr().out
    assert "4 mask(s) for 3 image(s) (1 already done" in text
    results = json.loads(out.read_text())
    assert results[:3] == first and len(_partial_lines(out)) == 1 + 3  # header + one line per image
    assert _box2mask(coco, out) == 0 and "3 already done" in capsys.readouterr().out
    assert json.loads(out.read_text()) == results and len(_partial_lines(out)) == 4
    ds = CocoInstances(coco["json"], coco["images"])
    for r in results:
        assert r["score"] == 1.0 and isinstance(r["segmentation"]["counts"], str)
    by_image = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    for image_id, rs in by_image.items():
        s = ds[ds.index_of(image_id)]
        assert [r["category_id"] for r in rs] == s.labels.tolist()
        assert [r["bbox"] for r in rs] == [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in s.boxes.tolist()]
        pred = np.stack([mask_util.decode(r["segmentation"]) for r in rs]).astype(bool)
        # the photo's coloured rectangles are the objects: box2mask finds them
        assert instance_ious(s.masks.numpy(), pred).min() > 0.6
    # and the masks score with evaluate-instances
    assert main(["evaluate-instances", str(out), "--gt", str(coco["json"])]) == 0
    assert "| AP | AP50 |" in capsys.readouterr().out


def test_box2mask_coco_torn_line_other_settings_and_scores(coco, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert _box2mask(coco, out, "--limit", "2", "--score", "mean-prob") == 0
    part = out.with_name(out.name + ".partial.jsonl")
    with open(part, "ab") as fh:
        fh.write(b'{"image_id": 3, "resu')  # a run killed mid-write
    capsys.readouterr()
    assert _box2mask(coco, out, "--score", "mean-prob") == 0
    assert "(2 already done" in capsys.readouterr().out
    scores = [r["score"] for r in json.loads(out.read_text())]
    assert len(scores) == 4 and all(0.5 < s <= 1 for s in scores)
    assert _box2mask(coco, out, "--score", "one") == 2
    _one_line_error(capsys.readouterr().err, "m.json.partial.jsonl was written with other settings", "delete it")


@pytest.mark.parametrize("extra, needle", [
    (["--boxes", "1,1,4,4"], "--boxes is for one photo"),
    (["--figure", "f.png"], "--figure is for one photo"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--threshold", "1.5"], "--threshold"),
])
def test_box2mask_coco_bad_options_exit_2(coco, tmp_path, capsys, extra, needle):
    assert _box2mask(coco, tmp_path / "m.json", *extra) == 2
    _one_line_error(capsys.readouterr().err, needle)


def test_box2mask_coco_bad_inputs_exit_2(coco, tmp_path, capsys):
    data = json.loads(coco["json"].read_text())
    data["annotations"][2]["bbox"] = [1, 6, 4, 40]
    bad = write_json(tmp_path / "bad.json", data)
    out = str(tmp_path / "o.json")
    assert main(["box2mask", "--coco", str(bad), "--images", str(coco["images"]), "--out", out]) == 2
    _one_line_error(capsys.readouterr().err, "bad.json", "annotations[2] (id 3, image 1)", "outside")
    assert main(["box2mask", "--coco", str(bad), "--images", str(coco["images"]), "--out", out, "--limit", "1",
                 "--skip-bad-boxes"]) == 0
    assert "skipped: " in capsys.readouterr().err and len(json.loads((tmp_path / "o.json").read_text())) == 2
    assert main(["box2mask", "--coco", str(coco["json"]), "--out", str(tmp_path / "o.json")]) == 2
    _one_line_error(capsys.readouterr().err, "--images")
    assert main(["box2mask", "--coco", str(tmp_path / "none.json"), "--images", ".", "--out", "o.json"]) == 2
    _one_line_error(capsys.readouterr().err, "annotation file not found")
    assert main(["box2mask", "--out", str(tmp_path / "o.png")]) == 2
    _one_line_error(capsys.readouterr().err, "--coco")


def _gt_predictions(coco, path):
    ds = CocoInstances(coco["json"], coco["images"])
    preds = []
    for i in range(len(ds)):
        s = ds[i]
        preds += masks_to_results(s.image_id, s.masks, s.labels, np.linspace(0.9, 0.6, len(s)))
    write_json(path, preds)
    return path


def test_evaluate_instances_tables_json_markdown_figure(coco, tmp_path, capsys):
    preds = _gt_predictions(coco, tmp_path / "preds.json")
    out, md, fig = tmp_path / "ap.json", tmp_path / "ap.md", tmp_path / "fig.png"
    assert main(["evaluate-instances", str(preds), "--gt", str(coco["json"]), "--images", str(coco["images"]),
                 "--out", str(out), "--markdown", str(md), "--figure", str(fig)]) == 0
    text = capsys.readouterr().out
    assert "| 100.000 | 100.000 | 100.000 | 100.000 | nan | nan |" in text and "| dog | 100.000 |" in text
    result = json.loads(out.read_text())
    assert result["AP"] == pytest.approx(100) and result["APm"] is None and result["num_predictions"] == 4
    assert result["per_class"] == {"cat": pytest.approx(100), "dog": pytest.approx(100)}
    assert md.read_text() in text
    from PIL import Image

    assert Image.open(fig).size[0] > 0 and "figure:" in text
    assert main(["evaluate-instances", str(preds), "--gt", str(coco["json"]), "--iou-type", "bbox"]) == 0
    assert "COCO box AP" in capsys.readouterr().out


def test_evaluate_instances_voc_dataset(tmp_path, capsys):
    from clipapro.data.voc_instances import VocInstances

    from ._files import write_voc

    voc = write_voc(tmp_path)
    s = VocInstances(voc["base"])[0]
    preds = write_json(tmp_path / "p.json", masks_to_results(s.image_id, s.masks[:1], s.labels[:1], [1.0]))
    assert main(["evaluate-instances", str(preds), "--dataset", "voc", "--root", str(voc["base"])]) == 0
    text = capsys.readouterr().out
    assert "| dog | 100.000 |" in text and "| person | 0.000 |" in text and "| cat | nan |" in text


def test_evaluate_instances_bad_inputs_exit_2(coco, tmp_path, capsys):
    preds = _gt_predictions(coco, tmp_path / "preds.json")
    data = json.loads(preds.read_text())
    data[1]["image_id"] = 99
    bad = write_json(tmp_path / "bad.json", data)
    assert main(["evaluate-instances", str(bad), "--gt", str(coco["json"])]) == 2
    _one_line_error(capsys.readouterr().err, "bad.json", "predictions[1]: image_id 99")
    corrupt = tmp_path / "c.json"
    corrupt.write_text("[{")
    assert main(["evaluate-instances", str(corrupt), "--gt", str(coco["json"])]) == 2
    _one_line_error(capsys.readouterr().err, "c.json is not valid JSON")
    gt = json.loads(coco["json"].read_text())
    gt["annotations"][0]["category_id"] = 77
    bad_gt = write_json(tmp_path / "gt.json", gt)
    assert main(["evaluate-instances", str(preds), "--gt", str(bad_gt)]) == 2
    _one_line_error(capsys.readouterr().err, "gt.json", "annotations[0] (id 1, image 1): unknown category_id 77")
    assert main(["evaluate-instances", str(preds)]) == 2
    _one_line_error(capsys.readouterr().err, "--gt JSON or as --dataset")
    assert main(["evaluate-instances", str(preds), "--dataset", "voc"]) == 2
    _one_line_error(capsys.readouterr().err, "needs --root")
    assert main(["evaluate-instances", str(preds), "--gt", str(coco["json"]), "--figure", "f.png"]) == 2
    _one_line_error(capsys.readouterr().err, "--figure needs --images")
    assert main(["evaluate-instances", str(tmp_path / "missing.json"), "--gt", str(coco["json"])]) == 2
    _one_line_error(capsys.readouterr().err, "predictions file not found")
