"""predict_probs / dense_logits: windows, upsampling, resizing, denoising, background, bad inputs."""

import pytest
import torch
import torch.nn.functional as F

from clipapro.clip import build_text_classifier, dense_logits, predict_probs, slide_windows


@pytest.fixture(scope="module")
def clf(oc_vit):
    return build_text_classifier(oc_vit, "voc21", templates="single")


def test_dense_logits_are_scaled_cosines(oc_vit, clf, images):
    feats = oc_vit.encode_dense(images, dense_mode="clearclip")
    expected = 50.0 * clf.cosine(feats)  # ClearCLIP's default logit scale
    torch.testing.assert_close(dense_logits(oc_vit, images, clf, dense_mode="clearclip"), expected)
    torch.testing.assert_close(dense_logits(oc_vit, images, clf, dense_mode="clearclip", logit_scale=1.0),
                               clf.cosine(feats))


def test_whole_image_probs_are_upsampled_softmax(oc_vit, clf):
    img = torch.rand(1, 3, 32, 40)  # a multiple of the patch size: no padding
    logits = dense_logits(oc_vit, img, clf)
    expected = F.interpolate(logits, size=(32, 40), mode="bilinear", align_corners=False).softmax(1)
    torch.testing.assert_close(predict_probs(oc_vit, img, clf), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(48, 40), (33, 47)])
def test_window_covering_the_image_equals_one_pass(oc_vit, clf, size):
    img = torch.rand(2, 3, *size)
    whole = predict_probs(oc_vit, img, clf, dense_mode="naclip")
    slid = predict_probs(oc_vit, img, clf, dense_mode="naclip", slide_crop=64, slide_stride=16)
    torch.testing.assert_close(slid, whole, atol=1e-6, rtol=1e-6)


def test_sliding_window_averages_overlapping_crops(oc_vit, clf):
    img = torch.rand(1, 3, 40, 56)
    probs = predict_probs(oc_vit, img, clf, slide_crop=32, slide_stride=16, logit_scale=1.0)
    total, count = torch.zeros(1, 21, 40, 56), torch.zeros(1, 1, 40, 56)
    for y1, y2, x1, x2 in slide_windows(40, 56, 32, 16):
        cos = clf.cosine(oc_vit.encode_dense(img[:, :, y1:y2, x1:x2]))
        total[:, :, y1:y2, x1:x2] += F.interpolate(cos, size=(32, 32), mode="bilinear", align_corners=False)
        count[:, :, y1:y2, x1:x2] += 1
    torch.testing.assert_close(probs, (total / count).softmax(1), atol=1e-5, rtol=1e-5)


def test_slide_windows_match_mmseg_rule():
    wins = slide_windows(336, 500, 224, 112)
    assert len(wins) == 2 * 4
    assert wins[0] == (0, 224, 0, 224) and wins[-1] == (112, 336, 276, 500)
    assert slide_windows(100, 80, 224, 112) == [(0, 100, 0, 80)]
    covered = torch.zeros(336, 500)
    for y1, y2, x1, x2 in wins:
        covered[y1:y2, x1:x2] = 1
    assert covered.all()


@pytest.mark.parametrize("kwargs", [
    {}, {"slide_crop": 128, "slide_stride": 96}, {"short_side": 48}, {"out_size": (50, 70)},
    {"key_smoothing": True}, {"short_side": 100, "slide_crop": 64},
])
def test_odd_sizes_and_options_give_input_resolution(oc_vit, clf, kwargs):
    img = torch.rand(1, 3, 225, 333)
    probs = predict_probs(oc_vit, img, clf, **kwargs)
    assert probs.shape == (1, 21, *kwargs.get("out_size", (225, 333)))
    torch.testing.assert_close(probs.sum(1), torch.ones(1, *probs.shape[2:]))


def test_resnet_predict(oc_rn):
    clf = build_text_classifier(oc_rn, "cat, dog, grass", templates="single")
    probs = predict_probs(oc_rn, torch.rand(1, 3, 70, 90), clf, slide_crop=64, slide_stride=48)
    assert probs.shape == (1, 3, 70, 90)


def test_prompt_denoise_drops_weak_classes(oc_vit, clf):
    img = torch.rand(1, 3, 32, 32)
    plain = predict_probs(oc_vit, img, clf)
    peak = plain.amax(dim=(2, 3))[0]
    thr = float(peak.median())
    probs = predict_probs(oc_vit, img, clf, prompt_denoise=thr)
    dropped = peak < thr
    assert dropped.any() and torch.all(probs[0, dropped] == 0)
    assert torch.all(probs[0, ~dropped].sum(0) > 0.999)
    everything = predict_probs(oc_vit, img, clf, prompt_denoise=1.0)  # keeps the strongest class
    assert torch.all(everything[0, peak.argmax()] == 1)


def test_bg_threshold_assigns_background(oc_vit, clf):
    img = torch.rand(1, 3, 32, 32)
    plain = predict_probs(oc_vit, img, clf)
    thr = float(plain.amax(1).median())
    probs = predict_probs(oc_vit, img, clf, bg_threshold=thr)
    low = plain.amax(1)[0] < thr
    assert low.any() and torch.all(probs[0, 0][low] == 1)
    torch.testing.assert_close(probs[0][:, ~low], plain[0][:, ~low])
    cats = build_text_classifier(oc_vit, "cat, dog", templates="single")
    with pytest.raises(ValueError, match="background"):
        predict_probs(oc_vit, img, cats, bg_threshold=0.5)
    assert predict_probs(oc_vit, img, cats, bg_threshold=0.99, background_index=1).shape == (1, 2, 32, 32)


@pytest.mark.parametrize("images, error, match", [
    (torch.rand(3, 32, 32), ValueError, "4 dimensions"),
    (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), TypeError, "floating"),
    (torch.rand(1, 1, 32, 32), ValueError, "RGB"),
    (torch.rand(1, 3, 32, 32) * 255, ValueError, r"\[0, 1\]"),
    (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN"),
    (torch.rand(0, 3, 32, 32), ValueError, "empty"),
    ([[0.5]], TypeError, "torch.Tensor"),
])
def test_bad_images(oc_vit, clf, images, error, match):
    with pytest.raises(error, match=match):
        predict_probs(oc_vit, images, clf)


def test_bad_options(oc_vit, oc_rn, clf):
    img = torch.rand(1, 3, 32, 32)
    for kwargs, match in [({"dense_mode": "nope"}, "dense_mode"), ({"slide_crop": -1}, "slide_crop"),
                          ({"slide_stride": 8}, "needs slide_crop"), ({"logit_scale": -1.0}, "logit_scale"),
                          ({"out_size": (0, 4)}, "out_size"), ({"short_side": 0}, "short_side")]:
        with pytest.raises(ValueError, match=match):
            predict_probs(oc_vit, img, clf, **kwargs)
    with pytest.raises(TypeError, match="TextClassifier"):
        predict_probs(oc_vit, img, clf.weights)
    with pytest.raises(ValueError, match="dimension"):  # a classifier of another model
        other = build_text_classifier(oc_vit, "cat, dog", templates="single")
        other.weights = torch.randn(2, 8)
        predict_probs(oc_vit, img, other)


def test_max_prob_synonyms_follow_the_reference_repos(oc_vit, clf):
    """synonyms='max-prob': softmax over all prompt names, max per class (SCLIP/NACLIP), then renormalised."""
    img = torch.rand(1, 3, 32, 40)
    probs = predict_probs(oc_vit, img, clf, synonyms="max-prob", logit_scale=40.0)
    name_cos = clf.name_cosine(oc_vit.encode_dense(img))
    name_cos = F.interpolate(name_cos, size=(32, 40), mode="bilinear", align_corners=False)
    p = (40.0 * name_cos).softmax(1)
    per_class = torch.stack([p[:, clf.class_index == k].amax(1) for k in range(21)], dim=1)
    torch.testing.assert_close(probs, per_class / per_class.sum(1, keepdim=True), atol=1e-5, rtol=1e-5)
    # at one resolution both synonym rules pick the same class
    patch_cos = clf.name_cosine(oc_vit.encode_dense(img))
    assert torch.equal(clf.reduce_names((40.0 * patch_cos).softmax(1)).argmax(1),
                       clf.reduce_names(patch_cos).argmax(1))
    # the background threshold sees the unnormalised max-prob values, as prob_thd does there
    thr = float(per_class.amax(1).median())
    low = per_class.amax(1)[0] < thr
    bg = predict_probs(oc_vit, img, clf, synonyms="max-prob", logit_scale=40.0, bg_threshold=thr)
    assert low.any() and torch.all(bg[0, 0][low] == 1)


def test_area_threshold_removes_small_classes(oc_vit):
    clf = build_text_classifier(oc_vit, "background, cat, dog, cow, grass", templates="single")
    img = torch.rand(1, 3, 48, 48)
    plain = predict_probs(oc_vit, img, clf, logit_scale=400.0)
    area = torch.bincount(plain.argmax(1).flatten(), minlength=5).float()
    area[0] = 0
    frac = area / area.sum()
    thr = float(frac[frac > 0].min())  # removes at least the smallest predicted class
    probs = predict_probs(oc_vit, img, clf, logit_scale=400.0, area_threshold=thr)
    small = (frac <= thr)
    small[0] = False
    assert small.any() and torch.all(probs[0, small] == 0)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 48, 48))


def test_key_smoothing_threshold(oc_vit, clf):
    img = torch.rand(1, 3, 32, 40)
    feats, keys = oc_vit.encode_dense(img, return_keys=True)
    cos = clf.cosine(feats)
    kf = keys.flatten(2)
    aff = torch.relu(kf.transpose(1, 2) @ kf)
    smooth = (cos.flatten(2) @ (aff / aff.sum(2, keepdim=True)).transpose(1, 2)).view_as(cos)
    torch.testing.assert_close(dense_logits(oc_vit, img, clf, logit_scale=1.0, key_smoothing=True), smooth)
    torch.testing.assert_close(dense_logits(oc_vit, img, clf, logit_scale=1.0, key_smoothing=1e-9), cos)
    top = (100 * cos).softmax(1).amax(1, keepdim=True)
    thr = float(top.median())
    expected = torch.where(top < thr, smooth, cos)
    torch.testing.assert_close(dense_logits(oc_vit, img, clf, logit_scale=1.0, key_smoothing=thr), expected)
    with pytest.raises(ValueError, match="key_smoothing"):
        predict_probs(oc_vit, img, clf, key_smoothing=-1.0)
