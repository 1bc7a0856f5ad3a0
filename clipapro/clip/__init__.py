"""CLIP dense prediction (MaskCLIP, ClearCLIP, SCLIP, NACLIP) with open_clip and transformers backends.

Example:
    >>> import torch
    >>> from clipapro.clip import create_model, build_text_classifier, predict_probs
    >>> model = create_model("ViT-B-16", random_init=True)        # real use: pretrained="openai"
    >>> clf = build_text_classifier(model, "voc21", templates="single")
    >>> probs = predict_probs(model, torch.rand(1, 3, 240, 320), clf, dense_mode="naclip")
    >>> probs.shape
    torch.Size([1, 21, 240, 320])

Parts: :mod:`~clipapro.clip.factory` (``create_model``), :mod:`~clipapro.clip.model`
(``DenseCLIP``), :mod:`~clipapro.clip.dense` (the dense paths), :mod:`~clipapro.clip.text`
(text classifiers and their cache), :mod:`~clipapro.clip.predict` (windows, upsampling,
denoising, background), :mod:`~clipapro.clip.convert` (open_clip <-> transformers weights).
"""

from clipapro.clip.dense import DENSE_MODES
from clipapro.clip.factory import create_model, default_pretrained_tag
from clipapro.clip.model import DenseCLIP
from clipapro.clip.predict import dense_logits, predict_probs, slide_windows
from clipapro.clip.text import TextClassifier, build_text_classifier

__all__ = [
    "DENSE_MODES", "DenseCLIP", "TextClassifier", "build_text_classifier", "create_model",
    "default_pretrained_tag", "dense_logits", "predict_probs", "slide_windows",
]
