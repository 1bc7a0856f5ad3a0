"""pseudo-label --protocol: the preset's class file, templates and predict options reach the job."""

import json

from clipapro.cli import main


def test_pseudo_label_with_a_protocol(voc_root, tiny_clip_args, tmp_path):
    out = tmp_path / "pl"
    args = [a for a in tiny_clip_args if a not in ("--refine", "apro", "--refine-opt", "iterations=3")]
    assert main(["pseudo-label", "--dataset", "voc21", "--root", str(voc_root), "--split", "train",
                 "--protocol", "naclip-voc21", "--out-dir", str(out), *args]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    cfg = manifest.get("config", manifest)
    assert cfg["predict_options"] == {"protocol": "naclip-voc21"}
    assert cfg["refine"] == "none"  # the preset refines itself (PAMR on the cosines)
    assert cfg["classes"][4] == ["ship"]  # NACLIP's own class names (voc21 label 4: boat)
    assert sorted(p.stem for p in (out / "labels").iterdir()) == ["2007_000001", "2007_000002"]
