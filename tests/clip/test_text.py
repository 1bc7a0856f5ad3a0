"""Text classifiers: template averaging, synonyms, the disk cache, bad inputs."""

import pytest
import torch
import torch.nn.functional as F

from clipapro.clip import build_text_classifier
from clipapro.prompts import get_class_set


def test_weights_are_normalised_template_means(oc_vit):
    templates = ["a photo of a {}.", "art of the {}."]
    clf = build_text_classifier(oc_vit, "cat, dog", templates=templates)
    emb = oc_vit.encode_text([t.format(n) for n in ("cat", "dog") for t in templates]).view(2, 2, -1)
    torch.testing.assert_close(clf.weights, F.normalize(emb.mean(1), dim=-1))
    assert clf.weights.dtype == torch.float32 and clf.class_index.tolist() == [0, 1]


def test_synonyms_score_the_max(oc_vit):
    cs = get_class_set([("thing", ["cat", "dog"]), ("grass", ["grass"])])
    clf = build_text_classifier(oc_vit, cs, templates="single")
    assert clf.weights.shape == (3, 16) and clf.num_classes == 2
    feats = F.normalize(torch.randn(2, 16, 3, 4), dim=1)
    sims = torch.einsum("bdhw,sd->bshw", feats, clf.weights)
    expected = torch.stack([sims[:, :2].amax(1), sims[:, 2]], dim=1)
    torch.testing.assert_close(clf.cosine(feats), expected)


def test_cache_miss_then_bit_identical_hit_without_text_encoder(oc_vit, tmp_path, monkeypatch):
    first = build_text_classifier(oc_vit, "voc21", templates="imagenet7", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1

    def boom(*args, **kwargs):
        raise AssertionError("text encoder ran on a cache hit")

    monkeypatch.setattr(oc_vit, "encode_text", boom)
    second = build_text_classifier(oc_vit, "voc21", templates="imagenet7", cache_dir=tmp_path)
    assert torch.equal(first.weights, second.weights) and torch.equal(first.class_index, second.class_index)
    assert second.key == first.key
    with pytest.raises(AssertionError, match="cache hit"):  # other templates: a miss
        build_text_classifier(oc_vit, "voc21", templates="single", cache_dir=tmp_path)


def test_cache_key_separates_classes_templates_and_weights(oc_vit, hf_vit, tmp_path):
    a = build_text_classifier(oc_vit, "cat, dog", templates="single", cache_dir=tmp_path)
    b = build_text_classifier(oc_vit, "cat, dog, cow", templates="single", cache_dir=tmp_path)
    c = build_text_classifier(oc_vit, [("cat", ["kitty"]), "dog"], templates="single", cache_dir=tmp_path)
    d = build_text_classifier(hf_vit, "cat, dog", templates="single", cache_dir=tmp_path)
    assert len({a.key, b.key, c.key, d.key}) == 4
    assert len(list(tmp_path.glob("*.safetensors"))) == 4


def test_corrupt_cache_is_rebuilt(oc_vit, tmp_path):
    first = build_text_classifier(oc_vit, "cat, dog", templates="single", cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable"):
        again = build_text_classifier(oc_vit, "cat, dog", templates="single", cache_dir=tmp_path)
    assert torch.equal(first.weights, again.weights)


@pytest.mark.parametrize("classes, match", [
    ([], "empty"), ("cat, dog, cat", "duplicate"), ("no-such-set", "unknown class set"),
])
def test_bad_class_sets(oc_vit, classes, match):
    with pytest.raises(ValueError, match=match):
        build_text_classifier(oc_vit, classes, templates="single")


def test_bad_templates(oc_vit):
    with pytest.raises(ValueError, match="unknown template set"):
        build_text_classifier(oc_vit, "cat, dog", templates="no-such-templates")
    with pytest.raises(ValueError, match="empty"):
        build_text_classifier(oc_vit, "cat, dog", templates=[])


def test_encode_text_rejects_bad_input(oc_vit):
    with pytest.raises(TypeError):
        oc_vit.encode_text("a single string")
    with pytest.raises(ValueError):
        oc_vit.encode_text([])


def test_many_prompts_show_progress_and_long_class_lists_work(oc_vit, capsys):
    from clipapro.clip import build_text_classifier
    from clipapro.clip import text as text_mod

    model = oc_vit
    names = ",".join(f"class{i}" for i in range(300))  # a comma list far longer than a file name may be
    old = text_mod._TEXT_BATCH
    text_mod._TEXT_BATCH = 64  # 300 prompts -> 5 batches: a progress bar
    try:
        clf = build_text_classifier(model, names, templates="single")
    finally:
        text_mod._TEXT_BATCH = old
    assert clf.num_classes == 300 and clf.weights.shape[0] == 300
    assert "text encoder: 300 prompts" in capsys.readouterr().err
