"""SegmentationPredictor: same answers as predict_probs + refine, and the image encoder runs once per image."""

import copy
import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from clipapro.clip import build_text_classifier, create_model, predict_probs
from clipapro.predictor import SegmentationPredictor
from clipapro.refiners import refine

apro_module = importlib.import_module("clipapro.propagation.apro")  # the package re-exports apro()

TINY_VIT = {"embed_dim": 16, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return create_model("tiny-vit", model_cfg=copy.deepcopy(TINY_VIT), random_init=True)


@pytest.fixture
def counted(model, monkeypatch):
    """The model with its image encoder wrapped by a call counter."""
    calls = []
    real = model.encode_dense

    def encode_dense(images, **kw):
        calls.append(tuple(images.shape))
        return real(images, **kw)

    monkeypatch.setattr(model, "encode_dense", encode_dense)
    return model, calls


@pytest.fixture
def photo(rng):
    img = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    img[:, 20:] = (220, 40, 30)  # a flat region, so refinement has structure to follow
    return img


def _as_tensor(img):
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("options", [{}, {"slide_crop": 16, "slide_stride": 8}, {"key_smoothing": True},
                                     {"short_side": 24, "dense_mode": "naclip"}])
def test_matches_predict_probs_and_encodes_once(counted, photo, options):
    model, calls = counted
    opts = dict(options)
    mode = opts.pop("dense_mode", "maskclip")
    pred = SegmentationPredictor(model, classes="cat, dog, sky", templates="single", refine=False,
                                 dense_mode=mode, **opts)
    pred.set_image(photo)
    n_windows = len(calls)
    assert n_windows >= 1
    for classes in (None, "voc21", "cat, dog, sky", ["grass", "road"]):
        labels, probs = pred.predict(classes)
        clf = build_text_classifier(model, classes or "cat, dog, sky", templates="single")
        expect = predict_probs(model, _as_tensor(photo), clf, dense_mode=mode, **opts)[0]
        assert probs.dtype == np.float32 and probs.shape == (clf.num_classes, 30, 45)
        assert labels.dtype == np.int64 and labels.shape == (30, 45)
        torch.testing.assert_close(torch.from_numpy(probs), expect, rtol=0, atol=1e-6)
        assert np.array_equal(labels, probs.argmax(0))
    # the reference calls above ran the encoder themselves; the predictor's calls stopped at set_image
    assert len(calls) == n_windows * 5
    assert pred.class_names(["grass", "road"]) == ("grass", "road")


def test_vocabulary_change_reuses_features(counted, photo):
    model, calls = counted
    pred = SegmentationPredictor(model, classes="voc21", templates="single", refine=True)
    pred.set_image(photo)
    assert len(calls) == 1
    for classes in ("cat, dog", None, "context59", "cat, dog"):
        pred.predict(classes)
    assert len(calls) == 1
    pred.set_image(photo[::-1].copy())  # a new image: the encoder runs again, once
    pred.predict("cat, dog")
    assert len(calls) == 2


@pytest.mark.parametrize("method", ["apro", "apro-gp", "crf-tree", "geo-crf", "auto", "pamr"])
def test_refined_output_equals_refine(model, photo, method, monkeypatch):
    pred = SegmentationPredictor(model, classes="cat, dog, sky", templates="single", refine_method=method)
    pred.set_image(photo)
    built = []
    real_tree = apro_module.kruskal_tree
    monkeypatch.setattr(apro_module, "kruskal_tree", lambda *a, **k: built.append(1) or real_tree(*a, **k))
    labels, probs = pred.predict()
    assert not built  # apro used the tree kept by set_image
    clf = build_text_classifier(model, "cat, dog, sky", templates="single")
    coarse = predict_probs(model, _as_tensor(photo), clf)
    expect = refine(_as_tensor(photo), coarse, method=method)[0]
    torch.testing.assert_close(torch.from_numpy(probs), expect, rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(probs.sum(0)), torch.ones(30, 45), rtol=0, atol=1e-4)
    unrefined = pred.predict(refine=False)[1]
    torch.testing.assert_close(torch.from_numpy(unrefined), coarse[0], rtol=0, atol=1e-6)


def test_image_formats_agree(model, photo):
    pred = SegmentationPredictor(model, classes="cat, dog", templates="single", refine=False)
    results = []
    for image in (photo, Image.fromarray(photo), torch.from_numpy(photo), _as_tensor(photo), _as_tensor(photo)[0]):
        pred.set_image(image)
        assert pred.image_size == (30, 45)
        results.append(pred.predict()[1])
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-6)


def test_errors(model, photo):
    pred = SegmentationPredictor(model, classes="cat, dog", templates="single")
    with pytest.raises(RuntimeError, match="set_image"):
        pred.predict()
    with pytest.raises(RuntimeError, match="set_image"):
        _ = pred.image_size
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        pred.set_image(photo[..., :2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pred.set_image(_as_tensor(photo) * 255)
    with pytest.raises(TypeError, match="uint8"):
        pred.set_image(photo.astype(np.int32))
    with pytest.raises(TypeError, match="unknown predict option"):
        SegmentationPredictor(model, slide_crops=224)
    with pytest.raises(ValueError, match="unknown refiner 'magic'"):
        SegmentationPredictor(model, refine_method="magic")
    with pytest.raises(ValueError, match="dense_mode"):
        SegmentationPredictor(model, dense_mode="magic")
    pred.set_image(photo)
    assert pred.is_image_set
    pred.reset_image()
    assert not pred.is_image_set


def test_text_encoder_runs_once_per_vocabulary_and_post_options_match(model, photo, monkeypatch):
    texts = []
    real = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda t, **kw: texts.append(len(t)) or real(t, **kw))
    opts = {"prompt_denoise": 0.2, "bg_threshold": 0.3, "background_index": 0, "slide_crop": 16}
    pred = SegmentationPredictor(model, classes="voc21", templates="single", refine=False, **opts)
    pred.set_image(photo)
    assert texts == [1]  # set_image embeds one probe word, not the vocabulary
    probs = pred.predict()[1]
    pred.predict()
    assert len(texts) == 2  # the vocabulary once, then kept
    clf = build_text_classifier(model, "voc21", templates="single")
    expect = predict_probs(model, _as_tensor(photo), clf, **opts)[0]
    torch.testing.assert_close(torch.from_numpy(probs), expect, rtol=0, atol=1e-6)
