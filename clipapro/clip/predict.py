"""From images to class probabilities: dense logits, sliding windows, upsampling, denoising, background.

Protocol knobs and where they come from (all optional, defaults = whole-image MaskCLIP):

* ``short_side``: resize so the short side has this length first (336 in SCLIP/ClearCLIP/NACLIP
  configs for VOC/Context; 448 for COCO-Stuff in some), keeping the aspect ratio.
* ``slide_crop`` / ``slide_stride``: mmsegmentation ``slide_inference`` windows (224 / 112 in those
  repositories): cosines of every window are upsampled to the window, summed and divided by the
  per-pixel window count.
* ``logit_scale``: softmax temperature on cosines; default per ``dense_mode`` (see
  :data:`clipapro.clip.dense.DENSE_MODES`).
* ``key_smoothing``: MaskCLIP's key smoothing. A patch whose top probability (softmax of 100 x
  cosine, as in MaskCLIP) is below the threshold (``True``: every patch) takes the average of all
  patches' class cosines weighted by max(0, cos(key_i, key_j)), rows normalised. MaskCLIP averages
  probabilities with raw key similarities; we average cosines so the result stays a cosine map.
* ``prompt_denoise``: MaskCLIP's prompt denoising: a class whose peak probability over the image
  stays below the threshold (0.5 in MaskCLIP) is removed; the image's strongest class is always kept.
* ``area_threshold``: SCLIP's ``area_thd``: a non-background class whose predicted area is at most
  this fraction of the non-background prediction is removed (SCLIP VOC21 config: 0.1).
* Background: either a class of its own whose prompt names are stuff words (``voc21`` / ``context60``
  class files: ``background: sky, wall, tree, ...``), or ``bg_threshold``: pixels whose top
  probability is below it become background (``background_index``, default the class named
  "background"), as the ``prob_thd`` option of SCLIP/NACLIP/ClearCLIP. Both can be combined.
* ``synonyms``: how a class with several prompt names scores. ``"max-cosine"`` (default): the max
  of its names' cosines, then one softmax over classes. ``"max-prob"``: one softmax over all names,
  then the max of its names' probabilities, as SCLIP/ClearCLIP/NACLIP do; thresholds then see
  those (unnormalised) values, exactly as in those repositories. At one resolution both give the
  same argmax; here the max comes before (max-cosine) or after (max-prob) the bilinear upsampling,
  so class borders can differ slightly. The returned probabilities are always renormalised.

Order: cosines -> resize to the output size -> softmax -> prompt denoising -> area threshold ->
background threshold -> renormalise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipapro._validate import check_int, check_positive, check_tensor
from clipapro.clip.dense import DENSE_MODES
from clipapro.clip.text import TextClassifier

__all__ = ["dense_logits", "predict_probs", "slide_windows"]


def _check_inputs(model, images, classifier) -> None:
    check_tensor(images, "images", ndim=4, floating=True, finite=True)
    if images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"images must be RGB in [0, 1], got values in [{lo:.3g}, {hi:.3g}] "
                         f"(divide uint8 images by 255)")
    if not isinstance(classifier, TextClassifier):
        raise TypeError(f"classifier must be a TextClassifier (build_text_classifier), "
                        f"got {type(classifier).__name__}")
    if classifier.weights.shape[1] != model.embed_dim:
        raise ValueError(f"classifier embeddings have dimension {classifier.weights.shape[1]} but the "
                         f"model's is {model.embed_dim}: build the classifier with this model")


def _scale_for(dense_mode: str, logit_scale) -> float:
    if dense_mode not in DENSE_MODES:
        raise ValueError(f"dense_mode must be one of {sorted(DENSE_MODES)}, got {dense_mode!r}")
    if logit_scale is None:
        return DENSE_MODES[dense_mode]["logit_scale"]
    return check_positive(logit_scale, "logit_scale")


def _key_smooth(cos: torch.Tensor, keys: torch.Tensor, threshold) -> torch.Tensor:
    b, k, h, w = cos.shape
    kf = keys.flatten(2)  # (B, C, N), normalised over C
    affinity = torch.relu(kf.transpose(1, 2) @ kf)  # (B, N, N)
    affinity = affinity / affinity.sum(dim=2, keepdim=True).clamp_min(1e-12)
    smooth = (cos.flatten(2) @ affinity.transpose(1, 2)).view(b, k, h, w)
    if threshold is True:
        return smooth
    unsure = (100.0 * cos).softmax(dim=1).amax(dim=1, keepdim=True) < float(threshold)
    return torch.where(unsure, smooth, cos)


def _check_key_smoothing(value):
    if value is True or value is False:
        return value
    check_positive(value, "key_smoothing")
    return value


def _window_cosine(model, images, classifier, *, key_smoothing, per_name: bool,
                   **dense_kw) -> torch.Tensor:
    """Cosines (B, K or S, H, W) of images at their own size: features, text, upsample, un-pad."""
    h_img, w_img = images.shape[-2:]
    score = classifier.name_cosine if per_name else classifier.cosine
    if key_smoothing:
        feats, keys = model.encode_dense(images, return_keys=True, **dense_kw)
        cos = _key_smooth(score(feats), keys, key_smoothing)
    else:
        cos = score(model.encode_dense(images, **dense_kw))
    p = model.patch_size
    hp, wp = cos.shape[-2] * p, cos.shape[-1] * p
    cos = F.interpolate(cos, size=(hp, wp), mode="bilinear", align_corners=False)
    top, left = (hp - h_img) // 2, (wp - w_img) // 2  # padding was split evenly (pad_to_multiple)
    return cos[:, :, top:top + h_img, left:left + w_img]


def slide_windows(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """mmsegmentation sliding windows (y1, y2, x1, x2): last window flush with the border, crops never pad."""
    n_h = max(height - crop + stride - 1, 0) // stride + 1
    n_w = max(width - crop + stride - 1, 0) // stride + 1
    out = []
    for i in range(n_h):
        for j in range(n_w):
            y2, x2 = min(i * stride + crop, height), min(j * stride + crop, width)
            out.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return out


def _slide_cosine(model, images, classifier, crop, stride, crop_batch, **kw) -> torch.Tensor:
    b, _, h, w = images.shape
    total = count = None
    windows = slide_windows(h, w, crop, stride)
    for start in range(0, len(windows), crop_batch):
        chunk = windows[start:start + crop_batch]
        crops = torch.cat([images[:, :, y1:y2, x1:x2] for y1, y2, x1, x2 in chunk])
        cos = _window_cosine(model, crops, classifier, **kw)
        if total is None:
            total = cos.new_zeros((b, cos.shape[1], h, w))
            count = cos.new_zeros((1, 1, h, w))
        for n, (y1, y2, x1, x2) in enumerate(chunk):
            total[:, :, y1:y2, x1:x2] += cos[n * b:(n + 1) * b]
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def dense_logits(model, images, classifier, *, dense_mode: str = "maskclip", logit_scale=None,
                 key_smoothing=False, **dense_kw) -> torch.Tensor:
    """Patch-level logits (B, K, h, w) = logit_scale * cos(dense embedding, class embedding).

    ``images``: (B, 3, H, W) float RGB in [0, 1]; normalised with the model's mean/std inside and
    moved to the model's device (the result lives there too). h = ceil(H / patch_size) (see
    ``DenseCLIP.encode_dense`` for padding). ``dense_kw`` go to ``encode_dense`` (``residual``,
    ``mlp``, ``gaussian_std``). A class scores the max over its prompt names.

    Example:
        >>> import torch
        >>> from clipapro.clip import create_model, build_text_classifier, dense_logits
        >>> m = create_model("ViT-B-16", random_init=True)
        >>> clf = build_text_classifier(m, "cat, dog", templates="single")
        >>> dense_logits(m, torch.rand(1, 3, 224, 320), clf).shape
        torch.Size([1, 2, 14, 20])
    """
    _check_inputs(model, images, classifier)
    scale = _scale_for(dense_mode, logit_scale)
    if _check_key_smoothing(key_smoothing) is not False:
        feats, keys = model.encode_dense(images, dense_mode=dense_mode, return_keys=True, **dense_kw)
        return scale * _key_smooth(classifier.cosine(feats), keys, key_smoothing)
    return scale * classifier.cosine(model.encode_dense(images, dense_mode=dense_mode, **dense_kw))


def _background_index(classifier, background_index) -> int:
    idx = background_index
    if idx is None:
        if "background" not in classifier.names:
            raise ValueError("bg_threshold needs a 'background' class or background_index=")
        idx = classifier.names.index("background")
    check_int(idx, "background_index", min_value=0)
    if idx >= classifier.num_classes:
        raise ValueError(f"background_index {idx} is out of range for {classifier.num_classes} classes")
    return idx


def _postprocess(cos, classifier, scale, *, per_name, prompt_denoise, area_threshold, bg_threshold,
                 background_index):
    """Cosines (B, K or S, H, W) -> class probabilities (B, K, H, W) summing to 1."""
    b = cos.shape[0]
    if per_name:
        probs = classifier.reduce_names((scale * cos).softmax(dim=1))
    else:
        probs = (scale * cos).softmax(dim=1)
    if prompt_denoise is not None:
        thr = check_positive(prompt_denoise, "prompt_denoise", allow_zero=True)
        peak = probs.amax(dim=(2, 3))  # (B, K)
        drop = peak < thr
        drop[torch.arange(b), peak.argmax(dim=1)] = False  # never drop every class
        probs = probs.masked_fill(drop[:, :, None, None], 0.0)
    if area_threshold is not None:
        thr = check_positive(area_threshold, "area_threshold", allow_zero=True)
        bg = background_index
        if bg is None and "background" in classifier.names:
            bg = classifier.names.index("background")
        pred = F.one_hot(probs.argmax(dim=1), classifier.num_classes).sum(dim=(1, 2)).float()  # (B, K)
        if bg is not None:
            pred[:, bg] = 0
        small = pred <= thr * pred.sum(dim=1, keepdim=True)
        if bg is not None:
            small[:, bg] = False
        small &= ~torch.all(small, dim=1, keepdim=True)  # nothing left: keep everything
        probs = probs.masked_fill(small[:, :, None, None], 0.0)
    if bg_threshold is not None:
        thr = check_positive(bg_threshold, "bg_threshold", allow_zero=True)
        idx = _background_index(classifier, background_index)
        low = probs.amax(dim=1, keepdim=True) < thr
        onehot = torch.zeros_like(probs)
        onehot[:, idx] = 1.0
        probs = torch.where(low, onehot, probs)
    return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-30)


def predict_probs(model, images, classifier, *, dense_mode: str = "maskclip", slide_crop=None,
                  slide_stride=None, short_side=None, logit_scale=None, out_size=None,
                  key_smoothing=False, prompt_denoise=None, area_threshold=None, bg_threshold=None,
                  background_index=None, synonyms: str = "max-cosine", crop_batch: int = 8,
                  **dense_kw) -> torch.Tensor:
    """Class probabilities (B, K, H, W) (or ``out_size``), float32, summing to 1 over K.

    See the module docstring for each option. ``slide_stride`` defaults to half of ``slide_crop``.
    Computed on the model's device (``images`` are moved there); the result lives there too.

    Example:
        >>> import torch
        >>> from clipapro.clip import create_model, build_text_classifier, predict_probs
        >>> m = create_model("ViT-B-16", random_init=True)
        >>> clf = build_text_classifier(m, "cat, dog", templates="single")
        >>> predict_probs(m, torch.rand(1, 3, 225, 333), clf, slide_crop=224, slide_stride=112).shape
        torch.Size([1, 2, 225, 333])
    """
    _check_inputs(model, images, classifier)
    scale = _scale_for(dense_mode, logit_scale)
    if synonyms not in ("max-cosine", "max-prob"):
        raise ValueError(f"synonyms must be 'max-cosine' or 'max-prob', got {synonyms!r}")
    b, _, h, w = images.shape
    out_hw = (h, w) if out_size is None else tuple(int(s) for s in out_size)
    if len(out_hw) != 2 or min(out_hw) < 1:
        raise ValueError(f"out_size must be (H, W) with positive sizes, got {out_size!r}")
    work = images.to(model.device).float()
    if short_side is not None:
        check_int(short_side, "short_side", min_value=1)
        s = short_side / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        work = F.interpolate(work, size=size, mode="bilinear", align_corners=False, antialias=s < 1)
    per_name = synonyms == "max-prob"
    _check_key_smoothing(key_smoothing)
    kw = dict(dense_mode=dense_mode, key_smoothing=key_smoothing, per_name=per_name, **dense_kw)
    if slide_crop is not None:
        check_int(slide_crop, "slide_crop", min_value=1)
        stride = slide_crop // 2
        if slide_stride is not None:
            stride = check_int(slide_stride, "slide_stride", min_value=1)
        check_int(crop_batch, "crop_batch", min_value=1)
        cos = _slide_cosine(model, work, classifier, slide_crop, max(stride, 1), crop_batch, **kw)
    else:
        if slide_stride is not None:
            raise ValueError("slide_stride needs slide_crop")
        cos = _window_cosine(model, work, classifier, **kw)
    if cos.shape[-2:] != out_hw:
        cos = F.interpolate(cos, size=out_hw, mode="bilinear", align_corners=False)
    return _postprocess(cos, classifier, scale, per_name=per_name, prompt_denoise=prompt_denoise,
                        area_threshold=area_threshold, bg_threshold=bg_threshold,
                        background_index=background_index)
