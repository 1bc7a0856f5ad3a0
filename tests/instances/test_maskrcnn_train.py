"""``train-instances``: a training step on a tiny model and fixture, bit-identical resume, checkpoints
loaded with weights_only, predictions that ``evaluate-instances`` reads, and one clear error per bad input."""

import json
import warnings

import pytest
import torch

from clipapro.cli import main
from clipapro.data.instances import CocoInstances
from clipapro.instances.train import InstanceTrainConfig, train_instances
from clipapro.pseudo import checkpoint as ckpt

from ._fixtures import write_coco_fixture


@pytest.fixture
def coco(tmp_path):
    return write_coco_fixture(tmp_path / "data")


def _config(**kw):
    base = dict(num_classes=2, category_ids=[3, 4], model="maskrcnn_tiny", min_size=64, max_size=80, steps=4,
                batch_size=2, lr=0.01, warmup_steps=2, ckpt_every=1, log_every=1, progress=False)
    return InstanceTrainConfig(**{**base, **kw})


def _train_set(coco):
    return CocoInstances(coco[0], coco[1], with_masks=False)


def _final_state(out):
    return torch.load(out / "model_final.pt", weights_only=True)["model"]


def test_a_training_step_runs_and_writes_its_files(coco, tmp_path):
    out = tmp_path / "run"
    val = CocoInstances(coco[0], coco[1])
    result = train_instances(_config(steps=2), _train_set(coco), out_dir=out, val_dataset=val)
    assert result["step"] == 2 and result["last_loss"] > 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2]
    assert all(r["loss_mask"] > 0 and r["mask_projection"] >= 0 for r in losses)
    final = [r for r in records if r.get("final")]
    assert len(final) == 1 and 0 <= final[0]["eval_mask_AP50"] <= 100
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["model"] == "maskrcnn_tiny" and len(config["config_hash"]) == 64
    preds = json.loads((out / "predictions.json").read_text())
    assert all({"image_id", "category_id", "segmentation", "score"} <= set(p) for p in preds)
    assert {p["category_id"] for p in preds} <= {3, 4}  # dataset ids, not model labels
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["eval"]) == {"mask", "box_filled"}


def test_resume_is_bit_identical(coco, tmp_path):
    data = _train_set(coco)
    full = tmp_path / "full"
    train_instances(_config(steps=5), data, out_dir=full)
    half = tmp_path / "half"
    first = train_instances(_config(steps=5, stop_at=3), data, out_dir=half)  # stops mid-epoch 1
    assert first["step"] == 3 and not (half / "model_final.pt").exists()
    # the newest checkpoint is torn (a crash while writing): the run resumes from the one before
    (half / "checkpoints" / "step_0000004.pt").write_bytes(b"PK\x03\x04 torn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = train_instances(_config(steps=5), data, out_dir=half)
    assert second["step"] == 5
    assert any("step_0000004.pt" in str(w.message) for w in caught)
    a, b = _final_state(full), _final_state(half)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = [json.loads(x)["loss"] for x in (full / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x)["loss"] for x in (half / "log.jsonl").read_text().splitlines()]
    assert log_a[3:] == log_b[-2:]  # steps 4 and 5 had the same losses


def test_checkpoints_load_with_weights_only_and_refuse_another_config(coco, tmp_path):
    out = tmp_path / "run"
    train_instances(_config(steps=2), _train_set(coco), out_dir=out)
    path = ckpt.latest_checkpoint(out)
    state = torch.load(path, weights_only=True)
    assert state["step"] == 2 and "roi_heads.mask_predictor.mask_fcn_logits.weight" in state["model"]
    with pytest.raises(ValueError, match="different training configuration"):
        train_instances(_config(steps=2, lr=0.5), _train_set(coco), out_dir=out)


def _cli(coco, out, *extra):
    return main(["train-instances", "--annotations", str(coco[0]), "--images", str(coco[1]), "--model",
                 "maskrcnn_tiny", "--min-size", "64", "--max-size", "80", "--steps", "2", "--warmup-steps", "1",
                 "--workers", "0", "--no-progress", "--out-dir", str(out), *extra])


def test_cli_trains_and_its_predictions_score_with_evaluate_instances(coco, tmp_path, capsys):
    out = tmp_path / "run"
    assert _cli(coco, out, "--val-annotations", str(coco[0])) == 0
    assert "val mask AP" in capsys.readouterr().out
    assert main(["evaluate-instances", str(out / "predictions.json"), "--gt", str(coco[0]),
                 "--out", str(tmp_path / "m.json")]) == 0
    scored = json.loads((tmp_path / "m.json").read_text())
    mine = json.loads((out / "metrics.json").read_text())["eval"]["mask"]
    assert scored["AP"] == pytest.approx(mine["AP"], nan_ok=True)


@pytest.mark.parametrize("extra, message", [
    (("--model", "maskrcnn_resnet9000"), "model must be one of"),
    (("--backbone-weights", "/nonexistent/resnet50.pth"), "backbone-weights file not found"),
    (("--mask-loss-opt", "zeta=1"), "unknown option"),
    (("--steps", "0"), "--steps must be an int >= 1"),
])
def test_cli_bad_inputs_give_one_clear_error(coco, tmp_path, capsys, extra, message):
    assert _cli(coco, tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_box_outside_the_image_names_the_file_and_entry(coco, tmp_path, capsys):
    data = json.loads(coco[0].read_text())
    data["annotations"][1]["bbox"] = [70, 10, 40, 20]  # reaches x = 110 in an 80-wide image
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    assert _cli((bad, coco[1]), tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "bad.json" in err and "annotations[1]" in err and "outside" in err


def test_cli_missing_annotations_file(coco, tmp_path, capsys):
    assert _cli((tmp_path / "nope.json", coco[1]), tmp_path / "run") == 2
    assert "nope.json" in capsys.readouterr().err


def test_cli_trains_on_a_voc_root(tmp_path, capsys):
    from ._files import write_voc

    voc = write_voc(tmp_path / "voc")
    out = tmp_path / "run"
    code = main(["train-instances", "--voc-root", str(voc["base"]), "--split", "train", "--val-split", "val",
                 "--model", "maskrcnn_tiny", "--min-size", "64", "--max-size", "80", "--steps", "2",
                 "--warmup-steps", "1", "--workers", "0", "--no-progress", "--out-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["num_classes"] == 20 and config["category_ids"] == list(range(1, 21))
    preds = json.loads((out / "predictions.json").read_text())
    assert all(1 <= p["category_id"] <= 20 for p in preds)
    assert json.loads((out / "metrics.json").read_text())["eval"]["mask"]["num_images"] == 1


def test_a_finished_run_loads_for_prediction(coco, tmp_path):
    from clipapro.instances import predict_instances
    from clipapro.instances.train import load_trained_model

    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="has not finished"):
        load_trained_model(out)
    train_instances(_config(steps=1), _train_set(coco), out_dir=out)
    model, cats = load_trained_model(out)
    assert cats == [3, 4] and not model.training
    saved = _final_state(out)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    pred = predict_instances(model, _train_set(coco)[0].image)
    assert pred.masks.shape[1:] == (64, 80)
