"""Text classifiers: one embedding per prompt name, averaged over templates, cached on disk.

For every prompt name of every class (a class may have synonyms, e.g. ``background: sky, wall, ...``)
the templates are filled in, each sentence is embedded and L2-normalised, the embeddings are
averaged and re-normalised (CLIP's zero-shot recipe, used by MaskCLIP, SCLIP, ClearCLIP, NACLIP).

:class:`TextClassifier` keeps all S prompt-name embeddings ``weights`` (S, D) and ``class_index``
(S,) mapping each to its class; a class scores the max over its names (:meth:`TextClassifier.cosine`),
so K = number of classes in every output. When no class has synonyms, S == K and ``weights[k]`` is
class k.

Cache: ``<cache_dir>/<slug>-<hash>.safetensors`` keyed by (backend, model name, weights identity,
class names and prompt names, templates, recipe version). A hit loads the stored float32 tensors
(bit-identical to what was saved) and never runs the text encoder.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from clipapro.io import atomic_path
from clipapro.prompts import ClassSet, get_class_set, get_templates

__all__ = ["TextClassifier", "build_text_classifier", "classifier_cache_key"]

_RECIPE = "mean-of-normalised-templates/v1"


@dataclass
class TextClassifier:
    """Prompt-name embeddings ``weights`` (S, D) float32 normalised, ``class_index`` (S,) int64."""

    classes: ClassSet
    templates: tuple[str, ...]
    weights: torch.Tensor
    class_index: torch.Tensor
    key: str = ""

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        return self.classes.names

    def to(self, device) -> TextClassifier:
        return TextClassifier(self.classes, self.templates, self.weights.to(device),
                              self.class_index.to(device), self.key)

    def name_cosine(self, features: torch.Tensor) -> torch.Tensor:
        """Cosines of normalised features (B, D, h, w) with every prompt name: (B, S, h, w)."""
        return torch.einsum("bdhw,sd->bshw", features, self.weights.to(features.device, features.dtype))

    def reduce_names(self, values: torch.Tensor) -> torch.Tensor:
        """Per-name maps (B, S, h, w) -> per-class maps (B, K, h, w): the max over each class's names."""
        if values.shape[1] == self.num_classes:
            return values
        b, _, h, w = values.shape
        index = self.class_index.to(values.device).view(1, -1, 1, 1).expand_as(values)
        out = values.new_full((b, self.num_classes, h, w), float("-inf"))
        return out.scatter_reduce_(1, index, values, "amax", include_self=True)

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """Cosines of normalised features (B, D, h, w) with each class: (B, K, h, w), max over synonyms."""
        return self.reduce_names(self.name_cosine(features))


def classifier_cache_key(model, classes: ClassSet, templates: tuple[str, ...]) -> str:
    """sha256 over everything that determines the classifier (backend, model, weights, classes, templates)."""
    payload = {
        "recipe": _RECIPE, "backend": model.backend, "model": model.name, "weights": model.weights_id,
        "names": list(classes.names), "prompts": [list(p) for p in classes.prompts],
        "templates": list(templates),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


#: Sentences per text-encoder call; more than two batches show a progress bar.
_TEXT_BATCH = 256


def _encode_classes(model, classes: ClassSet, templates: tuple[str, ...], progress: bool = True):
    from tqdm import tqdm

    names = [(k, n) for k, prompts in enumerate(classes.prompts) for n in prompts]
    sentences = [t.replace("{}", n) for _, n in names for t in templates]
    chunks = [sentences[i:i + _TEXT_BATCH] for i in range(0, len(sentences), _TEXT_BATCH)]
    # thousands of prompts (class synonyms x 80 templates) take minutes on a CPU: say so, show progress
    bar = tqdm(chunks, desc=f"text encoder: {len(sentences)} prompts", unit="batch",
               disable=not progress or len(chunks) <= 2)
    emb = torch.cat([model.encode_text(chunk).float() for chunk in bar])  # (S * T, D), normalised
    emb = F.normalize(emb.view(len(names), len(templates), -1).mean(dim=1), dim=-1)
    index = torch.tensor([k for k, _ in names], dtype=torch.int64)
    return emb.cpu().contiguous(), index


def _cache_file(cache_dir, model, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model.backend}-{model.name}")[-60:]
    return Path(cache_dir) / f"{slug}-{key[:24]}.safetensors"


def _load_cached(path: Path, key: str):
    from clipapro._deps import require

    safe_open = require("safetensors", what="the text-classifier cache").safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != key:
                return None
            return f.get_tensor("weights"), f.get_tensor("class_index")
    except Exception as err:  # corrupt or truncated cache file: rebuild it
        warnings.warn(f"ignoring unreadable text-classifier cache {path}: {err}", stacklevel=3)
        return None


def build_text_classifier(model, classes, *, templates="imagenet80", cache_dir=None,
                          progress: bool = True) -> TextClassifier:
    """Embed a class set with a template set; returns a :class:`TextClassifier` on CPU.

    ``classes``: a registered class-set name (``"voc21"``), a ``.txt``/``.json`` file, a comma list
    (``"cat, dog"``), a list or a :class:`~clipapro.prompts.ClassSet`. ``templates``: a template-set
    name (``"imagenet80"``, ``"imagenet7"``, ``"maskclip85"``, ``"single"``), a file, one template
    with ``{}`` or a list. Raises ``ValueError`` for empty/duplicate classes or unknown sets.
    ``progress``: a tqdm bar while many prompts are encoded (a cache hit encodes nothing).

    Example:
        >>> from clipapro.clip import create_model, build_text_classifier
        >>> m = create_model("ViT-B-16", random_init=True)
        >>> clf = build_text_classifier(m, "cat, dog", templates="single")
        >>> clf.weights.shape, clf.num_classes
        (torch.Size([2, 512]), 2)
    """
    cs = get_class_set(classes)
    tpl = get_templates(templates)
    key = classifier_cache_key(model, cs, tpl)
    path = _cache_file(cache_dir, model, key) if cache_dir is not None else None
    if path is not None and path.is_file():
        hit = _load_cached(path, key)
        if hit is not None:
            return TextClassifier(cs, tpl, hit[0], hit[1], key)
    weights, index = _encode_classes(model, cs, tpl, progress)
    if path is not None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"weights": weights, "class_index": index}, str(tmp),
                      metadata={"key": key, "classes": cs.name, "model": model.name,
                                "weights_id": model.weights_id, "n_templates": str(len(tpl))})
    return TextClassifier(cs, tpl, weights, index, key)
