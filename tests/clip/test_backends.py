"""The same weights in open_clip and in transformers give the same outputs (through clipapro.clip.convert)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from clipapro.clip import DENSE_MODES, build_text_classifier, create_model, dense_logits, predict_probs
from clipapro.clip.convert import (
    hf_config_to_open_clip,
    hf_to_open_clip_state_dict,
    open_clip_config_to_hf,
    open_clip_to_hf_state_dict,
)


def test_state_dict_round_trip_is_exact(oc_vit):
    sd = {k: v for k, v in oc_vit.clip.state_dict().items() if k != "attn_mask"}
    back = hf_to_open_clip_state_dict(open_clip_to_hf_state_dict(sd))
    assert set(back) == set(sd)
    for k in sd:
        assert torch.equal(back[k], sd[k]), k


def test_config_round_trip(vit_cfg):
    hf = open_clip_config_to_hf(vit_cfg)
    assert hf.vision_config.hidden_act == "quick_gelu"
    back = hf_config_to_open_clip(hf)
    assert back["vision_cfg"]["width"] == 32 and back["vision_cfg"]["head_width"] == 16
    assert back["text_cfg"]["heads"] == 2 and back["quick_gelu"] is True


def test_unsupported_configs_raise(vit_cfg):
    rn = {"embed_dim": 16, "vision_cfg": {"layers": [1, 1, 1, 1], "width": 8}, "text_cfg": {}}
    with pytest.raises(ValueError, match="ResNet"):
        open_clip_config_to_hf(rn)
    ls = {**vit_cfg, "vision_cfg": {**vit_cfg["vision_cfg"], "ls_init_value": 0.1}}
    with pytest.raises(ValueError, match="ls_init_value"):
        open_clip_config_to_hf(ls)
    with pytest.raises(ValueError, match="cannot convert"):
        open_clip_to_hf_state_dict({"visual.unknown": torch.zeros(1)})


@pytest.mark.parametrize("mode", sorted(DENSE_MODES))
def test_same_weights_same_dense_logits(oc_vit, hf_vit, images, mode):
    clf = build_text_classifier(oc_vit, "cat, dog, grass", templates="single")
    a = dense_logits(oc_vit, images, clf, dense_mode=mode)
    b = dense_logits(hf_vit, images, clf, dense_mode=mode)
    assert a.shape == (2, 3, 5, 7)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_same_weights_same_text_embeddings(oc_vit, hf_vit):
    texts = ["a photo of a cat.", "a bad photo of the potted plant.", "sky"]
    torch.testing.assert_close(oc_vit.encode_text(texts), hf_vit.encode_text(texts), atol=1e-4, rtol=0)


def test_backends_agree_when_loaded_from_disk(oc_vit, hf_vit, vit_cfg, tmp_path):
    """The real loading paths: an open_clip safetensors checkpoint and a save_pretrained folder."""
    ckpt = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in oc_vit.clip.state_dict().items() if k != "attn_mask"}, str(ckpt))
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps(vit_cfg))
    oc = create_model(str(cfg_path), pretrained=str(ckpt))
    folder = tmp_path / "hf"
    hf_vit.clip.save_pretrained(folder)
    hf = create_model(str(folder), backend="transformers")
    assert oc.weights_id.startswith("file:") and hf.weights_id.startswith("hf:")
    classes = [("background", ["sky", "wall"]), "cat", "potted plant"]
    clf_oc = build_text_classifier(oc, classes, templates="imagenet7")
    clf_hf = build_text_classifier(hf, classes, templates="imagenet7")
    torch.testing.assert_close(clf_oc.weights, clf_hf.weights, atol=1e-4, rtol=0)
    img = torch.rand(1, 3, 45, 61)
    pa = predict_probs(oc, img, clf_oc, dense_mode="naclip", slide_crop=32, slide_stride=16)
    pb = predict_probs(hf, img, clf_hf, dense_mode="naclip", slide_crop=32, slide_stride=16)
    torch.testing.assert_close(pa, pb, atol=1e-4, rtol=0)


def _clip_bpe_tokenizer(folder):
    """A transformers CLIPTokenizer with OpenAI CLIP's BPE, built from the vocabulary open_clip ships."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")


def test_transformers_folder_with_its_own_tokenizer(oc_vit, hf_vit, tmp_path):
    """A save_pretrained folder holding tokenizer files: the HF tokenizer path (eos padding, attention mask)."""
    folder = tmp_path / "hf"
    hf_vit.clip.save_pretrained(folder)
    (tmp_path / "tok").mkdir()
    _clip_bpe_tokenizer(tmp_path / "tok").save_pretrained(folder)
    hf = create_model(str(folder), backend="transformers")
    assert not getattr(hf.tokenizer, "is_open_clip", False)
    texts = ["a photo of a potted plant.", "itap of a TV monitor!", "sky"]
    torch.testing.assert_close(hf.encode_text(texts), oc_vit.encode_text(texts), atol=1e-4, rtol=0)
