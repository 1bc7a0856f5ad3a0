"""create_model: loading paths, weight identities and clear errors (no network)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from clipapro.clip import create_model, default_pretrained_tag


def test_builtin_name_random_init():
    m = create_model("RN50", random_init=True)
    assert (m.arch, m.patch_size, m.embed_dim, m.backend) == ("resnet", 32, 1024, "open_clip")
    assert m.image_mean[0] == pytest.approx(0.48145466)


def test_default_tags():
    assert default_pretrained_tag("ViT-B-16") == "openai"
    assert default_pretrained_tag("RN50x16") == "openai"


def test_unknown_name_and_tag():
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-B-61'"):
        create_model("ViT-B-61")
    with pytest.raises(ValueError, match="unknown pretrained tag 'nope'"):
        create_model("ViT-B-16", pretrained="nope")


def test_missing_and_corrupt_checkpoints(tmp_path, vit_cfg):
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        create_model("tiny", model_cfg=vit_cfg, pretrained=str(tmp_path / "missing.bin"))
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="could not load checkpoint .*corrupt.safetensors"):
        create_model("tiny", model_cfg=vit_cfg, pretrained=str(bad))
    wrong = tmp_path / "wrong.safetensors"
    save_file({"visual.proj": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(ValueError, match="could not load checkpoint"):
        create_model("tiny", model_cfg=vit_cfg, pretrained=str(wrong))
    with pytest.raises(ValueError, match="no weights"):
        create_model("tiny", model_cfg=vit_cfg)
    with pytest.raises(ValueError, match="not both"):
        create_model("tiny", model_cfg=vit_cfg, pretrained=str(bad), random_init=True)


def test_pickled_checkpoint_loads_with_weights_only(oc_vit, vit_cfg, tmp_path):
    path = tmp_path / "model.bin"
    torch.save(oc_vit.clip.state_dict(), path)
    m = create_model("tiny", model_cfg=vit_cfg, pretrained=str(path))
    img = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(m.encode_dense(img), oc_vit.encode_dense(img))


def test_config_json_file(vit_cfg, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"model_cfg": vit_cfg}))
    assert create_model(str(path), random_init=True).patch_size == 8
    with pytest.raises(FileNotFoundError):
        create_model(str(tmp_path / "nope.json"), random_init=True)


def test_transformers_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_model(str(tmp_path), backend="transformers")
    with pytest.raises(ValueError, match="backend"):
        create_model("ViT-B-16", backend="jax")
    with pytest.raises(ValueError, match="precision"):
        create_model("ViT-B-16", precision="fp8", random_init=True)


def test_weights_id_random_models_hash_their_text_tower(oc_vit, hf_vit):
    assert oc_vit.weights_id.startswith("sha256:")
    assert hf_vit.weights_id.startswith("sha256:")


def test_weights_id_of_a_file_depends_on_the_architecture(oc_vit, vit_cfg, tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in oc_vit.clip.state_dict().items()}, str(path))
    plain_cfg = {**vit_cfg, "quick_gelu": False}
    a = create_model("tiny", model_cfg=vit_cfg, pretrained=str(path))
    b = create_model("tiny", model_cfg=plain_cfg, pretrained=str(path))
    assert a.weights_id != b.weights_id and a.weights_id.startswith("file:")
