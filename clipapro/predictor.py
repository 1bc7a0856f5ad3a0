"""Two-step open-vocabulary segmentation, like segment-anything's ``SamPredictor``.

``set_image`` runs the CLIP image encoder once and keeps the dense embeddings of every window it
used (and, for the APro refiners, the image's minimum-spanning-tree); ``predict`` then only embeds the
class names (once per vocabulary, kept), matches them against the kept embeddings and refines. Asking
for other classes, or for the same classes again, never re-runs the image encoder.

Example:
    >>> import numpy as np
    >>> from clipapro.clip import create_model
    >>> from clipapro.predictor import SegmentationPredictor
    >>> model = create_model("ViT-B-16", random_init=True)       # real use: pretrained="openai"
    >>> predictor = SegmentationPredictor(model, classes="voc21", templates="single")
    >>> predictor.set_image(np.zeros((64, 96, 3), np.uint8))
    >>> labels, probs = predictor.predict()                      # voc21
    >>> labels.shape, probs.shape
    ((64, 96), (21, 64, 96))
    >>> labels, probs = predictor.predict(classes="cat, dog, grass, sky")   # same image features
    >>> probs.shape
    (4, 64, 96)
"""

from __future__ import annotations

import inspect

import numpy as np
import torch

__all__ = ["SegmentationPredictor"]

# predict_probs options that post-process class probabilities (not needed to record the image embeddings)
_CLASS_OPTIONS = ("prompt_denoise", "area_threshold", "bg_threshold", "background_index", "synonyms",
                  "cosine_refiner")


class _EncoderCache:
    """Stands in for a :class:`~clipapro.clip.DenseCLIP` inside ``predict_probs``: ``encode_dense``
    answers from embeddings kept for identical inputs (same pixels, same options) and runs the real
    encoder only on a miss; every other attribute is the model's."""

    def __init__(self, model):
        self._model = model
        self._kept: list[tuple[torch.Tensor, tuple, object]] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def clear(self) -> None:
        self._kept.clear()

    def encode_dense(self, images, **options):
        key = tuple(sorted(options.items()))
        for pixels, opts, out in self._kept:
            if opts == key and pixels.shape == images.shape and torch.equal(pixels, images):
                return out
        out = self._model.encode_dense(images, **options)
        self._kept.append((images.detach().clone(), key, out))
        return out


def _predict_option_names() -> set[str]:
    from clipapro.clip import predict_probs
    from clipapro.clip.model import DenseCLIP

    skip = {"self", "model", "images", "classifier", "dense_kw", "normalized", "return_keys",
            "dense_mode", "protocol"}
    names = set(inspect.signature(predict_probs).parameters) | set(inspect.signature(DenseCLIP.encode_dense).parameters)
    return names - skip


def _image_tensor(image) -> torch.Tensor:
    """One photo (see :func:`clipapro.io.image_to_tensor`) -> float32 (1, 3, H, W) in [0, 1] on the CPU."""
    from clipapro.io import image_to_tensor

    t = image_to_tensor(image)
    if t.shape[0] != 1:
        raise ValueError(f"image must be ONE image, got a batch of {t.shape[0]} (shape {tuple(t.shape)})")
    return t


class SegmentationPredictor:
    """Segment one image at a time into any vocabulary, reusing the image's CLIP embeddings.

    Args:
        model: a :class:`~clipapro.clip.DenseCLIP` (:func:`clipapro.clip.create_model`).
        classes: default vocabulary: a class-set name (``"voc21"``), a file, ``"cat, dog"`` or a list.
        templates: prompt templates (``"imagenet80"``, ``"single"``, a file, or a list).
        refine: refine the CLIP probabilities with the image (:func:`clipapro.refiners.refine`).
        refine_method: ``"auto"`` or a :func:`clipapro.refiners.list_refiners` name; ``refine_options``
            its keyword options; methods that accept a prebuilt tree get the image's tree, built once.
            Default: ``"auto"``, or with a ``protocol`` that refines (NACLIP's PAMR on cosines) that
            preset's own refinement; naming a method replaces the preset's.
        dense_mode: the last-block dense path (``maskclip``, ``clearclip``, ``sclip``, ``naclip``, ...;
            default: the protocol's, else ``maskclip``).
        protocol: a published preset (:mod:`clipapro.protocols`, e.g. ``"naclip-voc21"``): its classes,
            templates and ``predict_probs`` options are the defaults; arguments given here override them.
        cache_dir: folder caching text embeddings on disk (None: kept in memory only).
        predict_options: any other option of :func:`clipapro.clip.predict_probs` (``slide_crop``,
            ``short_side``, ``logit_scale``, ``key_smoothing``, ``prompt_denoise``, ``bg_threshold``,
            ...) or of ``encode_dense`` (``residual``, ``mlp``, ``gaussian_std``).
    """

    def __init__(self, model, *, classes=None, templates=None, refine: bool = True,
                 refine_method: str | None = None, refine_options: dict | None = None, dense_mode: str | None = None,
                 cache_dir=None, protocol=None, **predict_options):
        from clipapro.clip import DENSE_MODES
        from clipapro.refiners import get_refiner

        unknown = sorted(set(predict_options) - _predict_option_names())
        if unknown:
            raise TypeError(f"unknown predict option(s) {unknown}; see clipapro.clip.predict_probs")
        proto = None
        if protocol is not None:
            from clipapro.protocols import get_protocol

            proto = get_protocol(protocol)
            classes = proto.classes if classes is None else classes
            templates = proto.templates if templates is None else templates
            dense_mode = proto.predict_options()["dense_mode"] if dense_mode is None else dense_mode
            if refine_method is not None or not refine:
                predict_options.setdefault("cosine_refiner", False)  # the preset's own refinement is replaced
            elif proto.refine is not None:
                refine = False  # the preset refines inside predict_probs (NACLIP: PAMR on the cosines)
        classes = "voc21" if classes is None else classes
        templates = "imagenet80" if templates is None else templates
        dense_mode = "maskclip" if dense_mode is None else dense_mode
        refine_method = "auto" if refine_method is None else refine_method
        self.protocol = proto
        if dense_mode not in DENSE_MODES:
            raise ValueError(f"dense_mode must be one of {sorted(DENSE_MODES)}, got {dense_mode!r}")
        self._refiner = get_refiner(refine_method)  # unknown names fail here
        self._refiner.check_options(dict(refine_options or {}))
        self.model = model
        self.classes = classes
        self.templates = templates
        self.refine = bool(refine)
        self.refine_method = self._refiner.name
        self.refine_options = dict(refine_options or {})
        self.dense_mode = dense_mode
        self.cache_dir = cache_dir
        self.predict_options = predict_options
        self._encoder = _EncoderCache(model)
        self._classifiers: dict = {}
        self._probe = None  # one-class classifier used by set_image
        self._image: torch.Tensor | None = None
        self._tree = None

    # -- vocabulary ----------------------------------------------------------------------------------
    def classifier(self, classes=None):
        """The :class:`~clipapro.clip.TextClassifier` of ``classes`` (default vocabulary if None), built
        once per vocabulary and kept."""
        from clipapro.clip import build_text_classifier

        classes = self.classes if classes is None else classes
        key = classes if isinstance(classes, str) else repr(classes)
        if key not in self._classifiers:
            self._classifiers[key] = build_text_classifier(self.model, classes, templates=self.templates,
                                                           cache_dir=self.cache_dir)
        return self._classifiers[key]

    def class_names(self, classes=None) -> tuple[str, ...]:
        """Names of the classes ``predict(classes)`` returns, in index order."""
        return self.classifier(classes).names

    # -- image ---------------------------------------------------------------------------------------
    @property
    def is_image_set(self) -> bool:
        return self._image is not None

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the current image."""
        if self._image is None:
            raise RuntimeError("no image set: call set_image(image) first")
        return tuple(self._image.shape[-2:])

    def set_image(self, image) -> None:
        """Compute and keep the image's dense CLIP embeddings (and guide tree where the refiner takes one).

        ``image``: a PIL image, uint8 (H, W, 3) numpy array or tensor, or float (3, H, W) / (1, 3, H, W)
        in [0, 1]. Replaces any previous image.
        """
        from clipapro.clip import build_text_classifier, predict_probs

        img = _image_tensor(image)
        self.reset_image()
        # one pass with a one-word vocabulary records the embeddings of every window predict() will
        # ask for (the windows depend on the image and options, never on the classes); options that
        # only post-process class probabilities are left out of it
        if self._probe is None:
            self._probe = build_text_classifier(self.model, ["background"], templates="{}")
        options = {k: v for k, v in self.predict_options.items() if k not in _CLASS_OPTIONS}
        predict_probs(self._encoder, img, self._probe, dense_mode=self.dense_mode, protocol=self.protocol,
                      cosine_refiner=False, **options)
        self._image = img
        if self.refine and self._refiner.accepts_tree:
            from clipapro.propagation import kruskal_tree

            self._tree = kruskal_tree(img)

    def reset_image(self) -> None:
        """Forget the current image and its embeddings."""
        self._encoder.clear()
        self._image, self._tree = None, None

    # -- prediction ----------------------------------------------------------------------------------
    def predict(self, classes=None, *, refine: bool | None = None):
        """Segment the current image into ``classes`` (default: the constructor's vocabulary).

        Returns ``(labels, probs)``: numpy int64 (H, W) class indices and float32 (K, H, W)
        probabilities summing to one over K, K = len(class_names(classes)). ``refine`` overrides the
        constructor's choice for this call. The image encoder does not run again.
        """
        from clipapro.clip import predict_probs

        if self._image is None:
            raise RuntimeError("no image set: call set_image(image) before predict()")
        clf = self.classifier(classes)
        probs = predict_probs(self._encoder, self._image, clf, dense_mode=self.dense_mode, protocol=self.protocol,
                              **self.predict_options).float().cpu()
        if self.refine if refine is None else refine:
            from clipapro.refiners import refine as refine_fn

            options = dict(self.refine_options)
            if self._tree is not None and self._refiner.accepts_tree:
                options.setdefault("tree", self._tree)
            probs = refine_fn(self._image, probs, method=self.refine_method, **options)
        probs = probs[0]
        return probs.argmax(0).numpy().astype(np.int64), probs.numpy()
