"""``create_model``: the one entry point that builds a :class:`DenseCLIP` from either backend.

open_clip backend
    ``name`` is an open_clip model name (``"ViT-B-16"``, ``"RN50"``, see ``open_clip.list_models()``),
    a model-config JSON file (open_clip format: ``embed_dim``, ``vision_cfg``, ``text_cfg``) or
    ``model_cfg=`` a dict of that form. ``pretrained`` is a tag (``"openai"``, ``"laion2b_s34b_b88k"``)
    or a local checkpoint (``.safetensors``, or a ``.bin``/``.pt`` state dict read with
    ``weights_only=True``). Without ``pretrained`` the model's usual tag is used (``"openai"`` when
    it exists).
transformers backend
    ``name`` is a ``CLIPModel`` hub id or a local folder written by ``save_pretrained``;
    ``pretrained`` may name another folder/id to take the weights from. Its tokenizer is loaded from
    the same place; a folder without tokenizer files falls back to open_clip's CLIP BPE tokenizer
    (the vocabulary OpenAI CLIP and the ``openai/clip-vit-*`` repositories share).
Random weights (tests, benchmarks; no download): ``random_init=True``; for transformers ``name``
    may then be a folder with only ``config.json``, or pass ``model_cfg=`` a ``CLIPConfig`` / dict.

Example:
    >>> from clipapro.clip import create_model
    >>> cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32,
    ...        "layers": 2, "head_width": 16}, "text_cfg": {"width": 32, "heads": 2, "layers": 1}}
    >>> m = create_model("tiny", model_cfg=cfg, random_init=True)
    >>> (m.backend, m.arch, m.patch_size, m.embed_dim)
    ('open_clip', 'vit', 8, 16)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from clipapro._validate import check_choice
from clipapro.clip.model import OPENAI_MEAN, OPENAI_STD, DenseCLIP

__all__ = ["create_model", "default_pretrained_tag"]

_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_LOCAL_HINT = ("to run offline, pass a local checkpoint: --pretrained /path/to/open_clip_model.bin "
               "(or .safetensors; python: create_model(name, pretrained=path))")


def default_pretrained_tag(name: str) -> str:
    """The usual weights tag of an open_clip model: ``"openai"`` when it exists, else the first listed."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(name)
    if not tags:
        raise ValueError(f"open_clip model {name!r} has no pretrained tags; pass a checkpoint path "
                         f"or random_init=True")
    return "openai" if "openai" in tags else tags[0]


def create_model(name: str, *, pretrained=None, backend: str = "open_clip", device="cpu",
                 precision: str = "fp32", random_init: bool = False, model_cfg=None,
                 cache_dir: str | None = None, quick_gelu: bool = False) -> DenseCLIP:
    """Build a :class:`DenseCLIP` (eval mode, on ``device``, in ``precision`` "fp32"/"fp16"/"bf16").

    OpenAI weights were trained with QuickGELU: tags set it themselves; for an OpenAI checkpoint
    *file* pass ``quick_gelu=True`` (or use the ``-quickgelu`` model name, e.g. ``ViT-B-16-quickgelu``).

    Raises ``ValueError`` for an unknown model name or tag, ``FileNotFoundError`` for a missing
    checkpoint, ``RuntimeError`` (saying how to pass a local file) when weights cannot be loaded.
    """
    check_choice(backend, "backend", ("open_clip", "transformers"))
    check_choice(precision, "precision", tuple(_PRECISIONS))
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if random_init and pretrained is not None:
        raise ValueError("give either pretrained weights or random_init=True, not both")
    from clipapro._deps import require

    require("open_clip" if backend == "open_clip" else "transformers", what=f"the {backend} CLIP backend")
    if backend == "open_clip":
        model = _create_open_clip(name, pretrained, random_init, model_cfg, cache_dir, quick_gelu)
    else:
        model = _create_transformers(name, pretrained, random_init, model_cfg, cache_dir)
    return model.to(device=device, dtype=_PRECISIONS[precision]).eval()


# -- open_clip -------------------------------------------------------------------------------------
def _file_id(path: str) -> str:
    st = os.stat(path)
    return f"file:{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"


def _load_checkpoint(model, path: str) -> None:
    import open_clip

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        open_clip.load_checkpoint(model, path, strict=True, weights_only=True)
    except Exception as err:  # corrupt file, pickled code, wrong architecture: a bad input (exit 2)
        from clipapro.io import UnreadableFileError

        raise UnreadableFileError(f"could not load checkpoint {path}: {type(err).__name__}: {err}",
                                  path=path) from err


def _create_open_clip(name, pretrained, random_init, model_cfg, cache_dir, quick_gelu) -> DenseCLIP:
    import open_clip
    from open_clip.model import CLIP, CustomTextCLIP

    if model_cfg is None and name.endswith(".json"):
        if not os.path.isfile(name):
            raise FileNotFoundError(f"model config not found: {name}")
        model_cfg = json.loads(Path(name).read_text(encoding="utf-8"))
        model_cfg = model_cfg.get("model_cfg", model_cfg)
    if model_cfg is not None:  # an architecture given as data: build it directly, no registry mutation
        cfg = dict(model_cfg)
        if pretrained is None and not random_init:
            raise ValueError(f"model config {name!r} has no weights: "
                             f"pass pretrained=PATH or random_init=True")
        if pretrained is not None and not os.path.exists(pretrained):
            raise FileNotFoundError(f"checkpoint not found: {pretrained} (tags need an open_clip model name)")
        if quick_gelu:
            cfg["quick_gelu"] = True
        cls = CustomTextCLIP if cfg.pop("custom_text", False) else CLIP
        clip = cls(**cfg)
        if pretrained is not None:
            _load_checkpoint(clip, pretrained)
        # the architecture is part of the identity: one file may be read under two configs
        arch = hashlib.sha256(json.dumps(model_cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
        weights_id = f"{_file_id(pretrained)}|cfg:{arch}|qg:{int(bool(quick_gelu))}" if pretrained else None
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=clip.context_length)
        return DenseCLIP(clip, backend="open_clip", name=name, pretrained=pretrained, tokenizer=tokenizer,
                         weights_id=weights_id)

    known = open_clip.list_models()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=5)
        raise ValueError(f"unknown open_clip model {name!r}; close names: {close or known[:8]}")
    kwargs = dict(pretrained_text=False, weights_only=True, cache_dir=cache_dir)
    if quick_gelu:
        kwargs["force_quick_gelu"] = True
    tag, weights_id = None, None
    if random_init:
        clip = open_clip.create_model(name, pretrained=None, **kwargs)
    elif pretrained is not None and (os.path.sep in str(pretrained) or os.path.exists(str(pretrained))
                                     or str(pretrained).endswith(_CHECKPOINT_SUFFIXES)):
        clip = open_clip.create_model(name, pretrained=None, **kwargs)
        _load_checkpoint(clip, str(pretrained))
        weights_id = f"{_file_id(str(pretrained))}|{name}|qg:{int(bool(quick_gelu))}"
    else:
        tag = pretrained or default_pretrained_tag(name)
        tags = open_clip.list_pretrained_tags_by_model(name)
        if tag not in tags:
            raise ValueError(f"unknown pretrained tag {tag!r} for {name}: "
                             f"use one of {tags} or a checkpoint path")
        tag_cfg = open_clip.get_pretrained_cfg(name, tag)
        try:  # OpenAI weights were trained with QuickGELU; the config must match or outputs drift
            kwargs["force_quick_gelu"] = bool(quick_gelu or tag_cfg.get("quick_gelu"))
            clip = open_clip.create_model(name, pretrained=tag, **kwargs)
        except Exception as err:
            raise RuntimeError(f"could not load open_clip weights {name}/{tag} ({type(err).__name__}: "
                               f"{str(err)[:200]}); {_LOCAL_HINT}") from err
        weights_id = f"open_clip:{name}:{tag}"
        pretrained = tag
    pp = getattr(clip.visual, "preprocess_cfg", None) or {}
    return DenseCLIP(clip, backend="open_clip", name=name, pretrained=pretrained,
                     tokenizer=open_clip.get_tokenizer(name), image_mean=pp.get("mean", OPENAI_MEAN),
                     image_std=pp.get("std", OPENAI_STD), weights_id=weights_id)


# -- transformers ----------------------------------------------------------------------------------
class _OpenClipTokenizer:
    """open_clip's CLIP BPE tokenizer, for transformers folders that ship no tokenizer files."""

    is_open_clip = True

    def __init__(self, context_length: int):
        import open_clip

        self._tok = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)

    def __call__(self, texts):
        return self._tok(texts)


def _hf_tokenizer(source: str, context_length: int, *, try_hub: bool):
    local = Path(source)
    has_files = local.is_dir() and any((local / f).is_file() for f in ("tokenizer.json", "vocab.json"))
    if has_files or (try_hub and not local.exists()):
        try:
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(source)
        except Exception:  # offline hub id or broken files: the CLIP BPE is the same vocabulary
            pass
    return _OpenClipTokenizer(context_length)


def _create_transformers(name, pretrained, random_init, model_cfg, cache_dir) -> DenseCLIP:
    from transformers import CLIPConfig, CLIPModel

    source = str(pretrained) if pretrained is not None else name
    if random_init:
        if isinstance(model_cfg, CLIPConfig):
            config = model_cfg
        elif isinstance(model_cfg, dict):
            config = CLIPConfig(**model_cfg)
        else:
            config = CLIPConfig.from_pretrained(name, cache_dir=cache_dir)
        clip = CLIPModel(config)
        weights_id = None
    else:
        if Path(source).exists() and not (Path(source) / "config.json").is_file():
            raise FileNotFoundError(f"{source} is not a transformers model folder (no config.json)")
        try:
            clip = CLIPModel.from_pretrained(source, cache_dir=cache_dir)
        except Exception as err:
            raise RuntimeError(f"could not load transformers CLIPModel {source!r} ({type(err).__name__}: "
                               f"{str(err)[:200]}); to run offline pass a local folder saved with "
                               f"CLIPModel.save_pretrained (config.json + model.safetensors)") from err
        weights_id = f"hf:{Path(source).resolve() if Path(source).exists() else source}"
        if Path(source).is_dir():
            files = sorted(Path(source).glob("*.safetensors")) + sorted(Path(source).glob("*.bin"))
            weights_id += "|" + "|".join(_file_id(str(f)) for f in files)
    mean, std = OPENAI_MEAN, OPENAI_STD
    proc = Path(source) / "preprocessor_config.json"
    if proc.is_file():
        meta = json.loads(proc.read_text(encoding="utf-8"))
        mean, std = meta.get("image_mean", mean), meta.get("image_std", std)
    tokenizer = _hf_tokenizer(source, clip.config.text_config.max_position_embeddings,
                              try_hub=not (random_init and model_cfg is not None))
    return DenseCLIP(clip, backend="transformers", name=name, pretrained=pretrained, tokenizer=tokenizer,
                     image_mean=mean, image_std=std, weights_id=weights_id)
