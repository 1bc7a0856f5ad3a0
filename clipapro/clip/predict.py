"""From images to class probabilities: dense logits, sliding windows, upsampling, denoising, background.

Protocol knobs and where they come from (all optional, defaults = whole-image MaskCLIP):

* ``short_side``: resize so the short side has this length first, keeping the aspect ratio (clipapro's
  rule: torch bilinear, antialiased when shrinking, rounded sizes).
* ``rescale=(long, short)``: mmcv's ``imrescale`` instead, as the mmsegmentation pipelines of the
  published repositories do (``Resize(scale=(2048, 336), keep_ratio=True)``): factor
  min(long / max(H, W), short / min(H, W)), sizes ``int(x * factor + 0.5)``, OpenCV bilinear on the
  uint8 image (needs ``opencv-python-headless``). The image is taken at uint8 levels (round(x * 255)).
* ``pixel_mean`` / ``pixel_std``: normalise with these RGB values in 0..255 units, as the configs
  write them (NACLIP/SCLIP/ClearCLIP 122.771, ...; MaskCLIP ImageNet's 123.675, ...), on uint8
  levels; default: the model's own mean/std on [0, 1] RGB.
* ``remainder`` / ``pos_embed_rule``: patch remainder (pad evenly, pad bottom-right, or cut and
  stretch) and positional-table resizing; see ``DenseCLIP.encode_dense`` and
  :data:`clipapro.clip.dense.POS_EMBED_RULES`. ``activation`` / ``ln_eps`` switch the image tower's
  MLP activation and LayerNorm epsilon for the call (``DenseCLIP.vision_numerics``).
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
  this fraction of the non-background prediction is removed (SCLIP VOC21 config: 0.1); as in SCLIP,
  nothing guards against removing them all (the pixels then fall to background).
* ``cosine_refiner``: ``fn(guide (B, 3, H, W), cosines (B, K or S, H, W)) -> cosines`` run on the
  upsampled cosines before the softmax, ``guide`` being the normalised working image resized to the
  output size (NACLIP runs PAMR there, on its normalised input: ``naclip.py``). A preset with a
  refinement supplies it.
* ``protocol``: a published preset (:mod:`clipapro.protocols`, e.g. ``"naclip-voc21"``) fills every
  option left unset (None); the classifier may then be None (built from the preset's classes and
  templates).
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

Order: (resize) -> normalise -> windows -> cosines -> resize to the output size -> cosine refiner ->
softmax -> prompt denoising -> area threshold -> background threshold -> renormalise.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from clipapro._validate import check_choice, check_int, check_positive, check_tensor
from clipapro.clip.dense import DENSE_MODES, POS_EMBED_RULES
from clipapro.clip.model import ACTIVATIONS, REMAINDER_RULES
from clipapro.clip.text import TextClassifier

__all__ = ["PREDICT_DEFAULTS", "dense_logits", "mmcv_rescale", "predict_probs", "rescale_size", "slide_windows"]


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
    if value is None or value is True or value is False:
        return value
    check_positive(value, "key_smoothing")
    return value


def _window_cosine(model, pixels, classifier, *, key_smoothing, per_name: bool, remainder: str,
                   **dense_kw) -> torch.Tensor:
    """Cosines (B, K or S, H, W) of normalised pixels at their own size: features, text, upsample."""
    h_img, w_img = pixels.shape[-2:]
    score = classifier.name_cosine if per_name else classifier.cosine
    kw = dict(normalized=True, remainder=remainder, **dense_kw)
    if key_smoothing:
        feats, keys = model.encode_dense(pixels, return_keys=True, **kw)
        cos = _key_smooth(score(feats), keys, key_smoothing)
    else:
        cos = score(model.encode_dense(pixels, **kw))
    if remainder != "pad-even":  # the grid's map is stretched over the window (cut or corner padding)
        return F.interpolate(cos, size=(h_img, w_img), mode="bilinear", align_corners=False)
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
        probs = probs.masked_fill(small[:, :, None, None], 0.0)
    if bg_threshold is not None:
        thr = check_positive(bg_threshold, "bg_threshold", allow_zero=True)
        idx = _background_index(classifier, background_index)
        low = probs.amax(dim=1, keepdim=True) < thr
        onehot = torch.zeros_like(probs)
        onehot[:, idx] = 1.0
        probs = torch.where(low, onehot, probs)
    return probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-30)


#: What an option left at None means without a protocol (clipapro's own choices).
PREDICT_DEFAULTS = {
    "dense_mode": "maskclip", "synonyms": "max-cosine", "remainder": "pad-even", "pos_embed_rule": "size",
    "key_smoothing": False,
}


def rescale_size(height: int, width: int, scale) -> tuple[int, int]:
    """mmcv ``rescale_size`` with a (long, short) bound: the (H, W) an image is resized to.

    Example:
        >>> rescale_size(375, 500, (2048, 336))
        (336, 448)
    """
    if not (isinstance(scale, (tuple, list)) and len(scale) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in scale)):
        raise ValueError(f"rescale must be two positive ints (long, short), got {scale!r}")
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * float(factor) + 0.5), int(width * float(factor) + 0.5)


def mmcv_rescale(levels: torch.Tensor, scale) -> torch.Tensor:
    """Resize (B, 3, H, W) uint8 levels (float tensor holding 0..255 integers) as mmcv's ``imrescale``
    does: :func:`rescale_size`, then OpenCV ``INTER_LINEAR`` on the uint8 image. Returns float levels."""
    try:
        import cv2
    except ImportError as err:
        raise ImportError("rescale= resizes exactly as mmcv does and needs OpenCV: "
                          "pip install opencv-python-headless (or use short_side=)") from err
    import numpy as np

    b, _, h, w = levels.shape
    nh, nw = rescale_size(h, w, scale)
    arr = levels.detach().cpu().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = np.stack([cv2.resize(np.ascontiguousarray(a), (nw, nh), interpolation=cv2.INTER_LINEAR)
                    for a in arr])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(levels.device, torch.float32)


def _resolve(protocol, given: dict, classifier, model):
    """Fill the options left at None from the protocol, then from PREDICT_DEFAULTS."""
    opts = dict(given)
    if protocol is not None:
        if not callable(getattr(protocol, "predict_options", None)):
            raise TypeError(f"protocol must be a preset object (clipapro.protocols.get_protocol(name)), got "
                            f"{type(protocol).__name__} {protocol!r}")
        proto = protocol
        for key, value in proto.predict_options().items():
            if (key == "rescale" and given.get("short_side") is not None) or (
                    key == "short_side" and given.get("rescale") is not None) or (
                    key == "slide_stride" and given.get("slide_crop") is not None):
                continue  # the caller's resizing / window replaces the preset's
            if opts.get(key) is None:
                opts[key] = value
        if opts.get("cosine_refiner") is None:
            opts["cosine_refiner"] = proto.cosine_refiner()
        if classifier is None:
            from clipapro.clip.text import build_text_classifier

            if proto.classes is None:
                raise ValueError(f"protocol {proto.name!r} has no class set: pass a classifier")
            classifier = build_text_classifier(model, proto.classes, templates=proto.templates)
    elif classifier is None:
        raise TypeError("classifier must be a TextClassifier (build_text_classifier), got None")
    for key, value in PREDICT_DEFAULTS.items():
        if opts.get(key) is None:
            opts[key] = value
    return opts, classifier


def _check_options(o: dict) -> None:
    check_choice(o["synonyms"], "synonyms", ("max-cosine", "max-prob"))
    check_choice(o["remainder"], "remainder", REMAINDER_RULES)
    check_choice(o["pos_embed_rule"], "pos_embed_rule", POS_EMBED_RULES)
    if o.get("activation") is not None:
        check_choice(o["activation"], "activation", ACTIVATIONS)
    if o.get("short_side") is not None and o.get("rescale") is not None:
        raise ValueError("give either short_side= (clipapro's resizing) or rescale= (mmcv's), not both")
    for key in ("pixel_mean", "pixel_std"):
        v = o.get(key)
        if v is not None and (len(v) != 3 or not all(isinstance(x, (int, float)) for x in v)):
            raise ValueError(f"{key} must be three numbers (RGB, 0..255 units), got {v!r}")
    if (o.get("pixel_mean") is None) != (o.get("pixel_std") is None):
        raise ValueError("pixel_mean and pixel_std go together")
    if o.get("pixel_std") is not None and min(o["pixel_std"]) <= 0:
        raise ValueError(f"pixel_std must be positive, got {o['pixel_std']!r}")
    refiner = o.get("cosine_refiner")
    if refiner is not None and refiner is not False and not callable(refiner):
        raise TypeError(f"cosine_refiner must be callable, got {type(refiner).__name__}")
    _check_key_smoothing(o["key_smoothing"])


def _working_pixels(model, images, o):
    """Resize and normalise: (B, 3, H, W) in [0, 1] -> normalised pixels of the working image."""
    work = images.to(model.device).float()
    h, w = work.shape[-2:]
    levels = o.get("pixel_mean") is not None or o.get("rescale") is not None
    if levels:  # the mmsegmentation pipelines see uint8 images
        work = (work * 255.0).round_()
    if o.get("rescale") is not None:
        work = mmcv_rescale(work, tuple(o["rescale"]))
    elif o.get("short_side") is not None:
        check_int(o["short_side"], "short_side", min_value=1)
        s = o["short_side"] / min(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        work = F.interpolate(work, size=size, mode="bilinear", align_corners=False, antialias=s < 1)
    if o.get("pixel_mean") is not None:
        mean = torch.tensor(o["pixel_mean"], dtype=torch.float32, device=work.device).view(1, 3, 1, 1)
        std = torch.tensor(o["pixel_std"], dtype=torch.float32, device=work.device).view(1, 3, 1, 1)
        return (work - mean) / std
    return model.normalize(work / 255.0 if levels else work)


def predict_probs(model, images, classifier=None, *, protocol=None, dense_mode=None, slide_crop=None,
                  slide_stride=None, short_side=None, rescale=None, logit_scale=None, out_size=None,
                  key_smoothing=None, prompt_denoise=None, area_threshold=None, bg_threshold=None,
                  background_index=None, synonyms=None, pixel_mean=None, pixel_std=None, remainder=None,
                  pos_embed_rule=None, activation=None, ln_eps=None, cosine_refiner=None,
                  crop_batch: int = 8, **dense_kw) -> torch.Tensor:
    """Class probabilities (B, K, H, W) (or ``out_size``), float32, summing to 1 over K.

    See the module docstring for each option; an option left at None takes the ``protocol``'s value,
    else :data:`PREDICT_DEFAULTS` / off. ``slide_stride`` defaults to half of ``slide_crop``
    (``slide_crop=0`` means the whole image). ``cosine_refiner=False`` turns a preset's refinement off.
    Computed on the model's device (``images`` are moved there); the result lives there too.

    Example:
        >>> import torch
        >>> from clipapro.clip import create_model, build_text_classifier, predict_probs
        >>> m = create_model("ViT-B-16", random_init=True)
        >>> clf = build_text_classifier(m, "cat, dog", templates="single")
        >>> predict_probs(m, torch.rand(1, 3, 225, 333), clf, slide_crop=224, slide_stride=112).shape
        torch.Size([1, 2, 225, 333])
        >>> from clipapro.protocols import get_protocol
        >>> predict_probs(m, torch.rand(1, 3, 100, 150), clf, protocol=get_protocol("sclip-voc20")).shape
        torch.Size([1, 2, 100, 150])
    """
    given = dict(dense_mode=dense_mode, slide_crop=slide_crop, slide_stride=slide_stride, short_side=short_side,
                 rescale=rescale, logit_scale=logit_scale, key_smoothing=key_smoothing,
                 prompt_denoise=prompt_denoise, area_threshold=area_threshold, bg_threshold=bg_threshold,
                 background_index=background_index, synonyms=synonyms, pixel_mean=pixel_mean,
                 pixel_std=pixel_std, remainder=remainder, pos_embed_rule=pos_embed_rule,
                 activation=activation, ln_eps=ln_eps, cosine_refiner=cosine_refiner,
                 **{k: dense_kw.pop(k, None) for k in ("residual", "mlp", "gaussian_std")})
    if dense_kw:
        raise TypeError(f"predict_probs got unknown option(s) {sorted(dense_kw)}")
    o, classifier = _resolve(protocol, given, classifier, model)
    _check_inputs(model, images, classifier)
    _check_options(o)
    scale = _scale_for(o["dense_mode"], o["logit_scale"])
    b, _, h, w = images.shape
    out_hw = (h, w) if out_size is None else tuple(int(s) for s in out_size)
    if len(out_hw) != 2 or min(out_hw) < 1:
        raise ValueError(f"out_size must be (H, W) with positive sizes, got {out_size!r}")
    per_name = o["synonyms"] == "max-prob"
    kw = dict(dense_mode=o["dense_mode"], key_smoothing=o["key_smoothing"], per_name=per_name,
              remainder=o["remainder"], pos_embed_rule=o["pos_embed_rule"],
              **{k: o[k] for k in ("residual", "mlp", "gaussian_std") if o.get(k) is not None})
    numerics = (model.vision_numerics(activation=o.get("activation"), ln_eps=o.get("ln_eps"))
                if o.get("activation") is not None or o.get("ln_eps") is not None else contextlib.nullcontext())
    with numerics:
        pixels = _working_pixels(model, images, o)
        crop = o.get("slide_crop")
        if crop:
            check_int(crop, "slide_crop", min_value=1)
            stride = crop // 2 if o.get("slide_stride") is None else check_int(o["slide_stride"], "slide_stride",
                                                                                min_value=1)
            if stride > crop:
                raise ValueError(f"slide_stride {stride} exceeds slide_crop {crop}: the windows would leave gaps")
            check_int(crop_batch, "crop_batch", min_value=1)
            cos = _slide_cosine(model, pixels, classifier, crop, max(stride, 1), crop_batch, **kw)
        else:
            if crop is None and slide_stride is not None:
                raise ValueError("slide_stride needs slide_crop")
            cos = _window_cosine(model, pixels, classifier, **kw)
    if cos.shape[-2:] != out_hw:
        cos = F.interpolate(cos, size=out_hw, mode="bilinear", align_corners=False)
    refiner = o.get("cosine_refiner")
    if refiner:
        guide = pixels if pixels.shape[-2:] == out_hw else F.interpolate(
            pixels, size=out_hw, mode="bilinear", align_corners=False)
        cos = refiner(guide, cos)
    return _postprocess(cos, classifier, scale, per_name=per_name, prompt_denoise=o["prompt_denoise"],
                        area_threshold=o["area_threshold"], bg_threshold=o["bg_threshold"],
                        background_index=o["background_index"])
