"""Published training-free CLIP protocols as presets: one JSON file per method x benchmark.

A composition layer above :mod:`clipapro.clip` (whose ``predict_probs`` takes a preset object, never
a name) and :mod:`clipapro.refiners` (NACLIP's PAMR); the commands, the predictor and the pseudo
labels resolve names here.

A preset (``prompts/protocols/<name>.json``, shipped in the wheel like the class sets) says what a
paper's public code computes for one benchmark, so that ``SegmentationPredictor(model,
protocol="naclip-voc21")``, ``predict_probs(..., protocol=get_protocol("naclip-voc21"))`` or
``clipapro segment --protocol naclip-voc21`` computes the same (checked to 1e-5 in fp32 against
the repositories' model code on shared random weights; see the README). Its fields:

* ``name``, ``method``, ``dataset`` (a catalog name or null), ``summary``;
* ``source``: ``repository``, ``commit`` and the ``files`` the values were read from;
* ``model``: ``name``, ``pretrained``, ``precision`` the repository runs (fp16 on a GPU; fp32 is an
  allowed override and what NACLIP/SCLIP's own ``clip.load`` uses on a CPU);
* ``text``: ``classes`` (the method's own class-name file in ``prompts/classes/``) and ``templates``;
* ``predict``: keyword options of :func:`clipapro.clip.predict_probs` (``dense_mode``, ``rescale``,
  ``pixel_mean``/``pixel_std``, ``activation``/``ln_eps``, ``pos_embed_rule``, ``remainder``,
  ``slide_crop``/``slide_stride``, ``logit_scale``, ``synonyms``, ``bg_threshold``,
  ``area_threshold``, ...);
* ``refine``: null or ``{"method": "pamr", "on": "cosine", "steps", "dilations"}``: NACLIP refines the
  upsampled per-name cosines (before the softmax) with PAMR guided by its normalised input;
* ``reported``: ``{"mIoU": number or null, "source": "where the number is printed"}``.

Example:
    >>> from clipapro.protocols import get_protocol, list_protocols
    >>> p = get_protocol("naclip-voc21")
    >>> p.predict_options()["pos_embed_rule"], p.reported["mIoU"]
    ('scale-plus-0.1', 64.07)
    >>> "sclip-context60" in list_protocols()
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DEFAULT_PROTOCOL", "Protocol", "get_protocol", "list_protocols", "load_protocol_file",
           "register_protocol", "validate_protocol"]

#: The preset ``clipapro segment`` follows without ``--protocol`` (its refinement replaced by
#: ``refine="auto"``): NACLIP's, the strongest CLIP-only protocol the presets reproduce.
DEFAULT_PROTOCOL = "naclip"

_PROTOCOLS: dict = {}

_TOP_KEYS = {"name": str, "method": str, "dataset": (str, type(None)), "summary": str, "source": dict,
             "model": dict, "text": dict, "predict": dict, "refine": (dict, type(None)), "reported": dict}
_OPTIONAL_TOP = {"notes": str}
# predict_probs options a preset may set, with the JSON types they take
_PREDICT_KEYS = {
    "dense_mode": str, "residual": bool, "mlp": bool, "gaussian_std": (int, float),
    "rescale": list, "short_side": int, "pixel_mean": list, "pixel_std": list,
    "activation": str, "ln_eps": (int, float), "pos_embed_rule": str, "remainder": str,
    "slide_crop": (int, type(None)), "slide_stride": (int, type(None)), "logit_scale": (int, float),
    "synonyms": str, "bg_threshold": (int, float, type(None)), "area_threshold": (int, float, type(None)),
    "prompt_denoise": (int, float, type(None)), "key_smoothing": (bool, int, float, type(None)),
    "background_index": (int, type(None)),
}
_PRECISIONS = ("fp32", "fp16", "bf16")


def _fail(where: str, msg: str):
    raise ValueError(f"protocol {where}: {msg}")


def _check_type(where, key, value, types):
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        _fail(where, f"{key} must be {types}, got a bool")
    if not isinstance(value, types):
        _fail(where, f"{key} has type {type(value).__name__}, expected {types}")


def validate_protocol(data: dict, *, where: str = "") -> dict:
    """Check a preset's fields, types and values (the schema above); returns ``data``.

    Raises ``ValueError`` naming the preset and the bad field. Class sets and template sets must
    resolve; every ``predict`` option must be one ``predict_probs`` takes, with a valid value.
    """
    from clipapro.clip.dense import DENSE_MODES, POS_EMBED_RULES
    from clipapro.clip.model import ACTIVATIONS, REMAINDER_RULES
    from clipapro.prompts import get_class_set, get_templates

    where = where or repr(data.get("name", "?"))
    if not isinstance(data, dict):
        raise TypeError(f"protocol {where} must be a JSON object, got {type(data).__name__}")
    missing = sorted(set(_TOP_KEYS) - set(data))
    extra = sorted(set(data) - set(_TOP_KEYS) - set(_OPTIONAL_TOP))
    if missing or extra:
        _fail(where, f"missing fields {missing}, unknown fields {extra}")
    for key, types in {**_TOP_KEYS, **_OPTIONAL_TOP}.items():
        if key in data:
            _check_type(where, key, data[key], types)
    src = data["source"]
    if not (isinstance(src.get("repository"), str) and isinstance(src.get("commit"), str)
            and isinstance(src.get("files"), list) and src["files"]):
        _fail(where, "source needs repository, commit and a non-empty files list")
    model = data["model"]
    if not isinstance(model.get("name"), str) or model.get("precision") not in _PRECISIONS:
        _fail(where, f"model needs a name and a precision in {_PRECISIONS}, got {model}")
    text = data["text"]
    if set(text) != {"classes", "templates"}:
        _fail(where, f"text needs exactly classes and templates, got {sorted(text)}")
    if text["classes"] is not None:
        get_class_set(text["classes"])
    get_templates(text["templates"])
    if (data["dataset"] is None) != (text["classes"] is None):
        _fail(where, "a preset for a benchmark names its class file; a dataset-free one names none")
    pred = data["predict"]
    for key, value in pred.items():
        if key not in _PREDICT_KEYS:
            _fail(where, f"predict option {key!r} is not one of {sorted(_PREDICT_KEYS)}")
        _check_type(where, f"predict.{key}", value, _PREDICT_KEYS[key])
    choices = {"dense_mode": tuple(DENSE_MODES), "pos_embed_rule": POS_EMBED_RULES, "remainder": REMAINDER_RULES,
               "activation": ACTIVATIONS, "synonyms": ("max-cosine", "max-prob")}
    for key, allowed in choices.items():
        if key in pred and pred[key] not in allowed:
            _fail(where, f"predict.{key} must be one of {allowed}, got {pred[key]!r}")
    if "dense_mode" not in pred:
        _fail(where, "predict.dense_mode is required")
    for key in ("rescale", "pixel_mean", "pixel_std"):
        if key in pred and (len(pred[key]) != (2 if key == "rescale" else 3)
                            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                                       for v in pred[key])):
            _fail(where, f"predict.{key} has a bad value {pred[key]!r}")
    if ("pixel_mean" in pred) != ("pixel_std" in pred):
        _fail(where, "predict.pixel_mean and pixel_std go together")
    ref = data["refine"]
    if ref is not None:
        if ref.get("method") != "pamr" or ref.get("on") != "cosine":
            _fail(where, f"refine supports method 'pamr' on 'cosine' only, got {ref}")
        if set(ref) != {"method", "on", "steps", "dilations"}:
            _fail(where, f"refine needs method, on, steps, dilations; got {sorted(ref)}")
        if not (isinstance(ref["steps"], int) and ref["steps"] >= 1 and isinstance(ref["dilations"], list)
                and ref["dilations"] and all(isinstance(d, int) and d >= 1 for d in ref["dilations"])):
            _fail(where, f"refine steps/dilations are bad: {ref}")
    rep = data["reported"]
    if set(rep) != {"mIoU", "source"} or not isinstance(rep["source"], str) or not (
            rep["mIoU"] is None or (isinstance(rep["mIoU"], (int, float)) and 0 < rep["mIoU"] < 100)):
        _fail(where, f"reported needs mIoU (a percentage or null) and source, got {rep}")
    return data


@dataclass(frozen=True)
class Protocol:
    """A validated preset; ``data`` is the JSON object it came from."""

    name: str
    data: dict = field(repr=False)

    @property
    def method(self) -> str:
        return self.data["method"]

    @property
    def dataset(self) -> str | None:
        return self.data["dataset"]

    @property
    def classes(self) -> str | None:
        return self.data["text"]["classes"]

    @property
    def templates(self) -> str:
        return self.data["text"]["templates"]

    @property
    def model(self) -> dict:
        return dict(self.data["model"])

    @property
    def refine(self) -> dict | None:
        return None if self.data["refine"] is None else dict(self.data["refine"])

    @property
    def reported(self) -> dict:
        return dict(self.data["reported"])

    def predict_options(self) -> dict:
        """The ``predict_probs`` keyword options of the preset (tuples where the API takes them)."""
        out = {}
        for key, value in self.data["predict"].items():
            out[key] = tuple(value) if isinstance(value, list) else value
        return out

    def cosine_refiner(self):
        """``fn(guide, cosines) -> cosines`` for the preset's refinement, or None."""
        ref = self.refine
        if ref is None:
            return None
        from clipapro.refiners.pamr import pamr_propagate

        steps, dilations = ref["steps"], tuple(ref["dilations"])

        def refine(guide, cosines):
            return pamr_propagate(guide, cosines, steps=steps, dilations=dilations)

        return refine


def _bundled() -> dict[str, Path]:
    from clipapro.prompts import prompts_dir

    folder = prompts_dir() / "protocols"
    return {p.stem: p for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def load_protocol_file(path) -> Protocol:
    """Read and validate a preset JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"protocol file {path} is not valid JSON: {err}") from None
    validate_protocol(data, where=str(path))
    if data["name"] != path.stem and path.parent.name == "protocols":
        raise ValueError(f"protocol file {path} holds preset {data['name']!r}: the file name must match")
    return Protocol(data["name"], data)


def register_protocol(data: dict) -> Protocol:
    """Register (or replace) a preset given as a dict of the JSON form."""
    validate_protocol(data)
    proto = Protocol(data["name"], data)
    _PROTOCOLS[proto.name] = proto
    return proto


def list_protocols() -> list[str]:
    """Names of the bundled and registered presets."""
    return sorted(set(_bundled()) | set(_PROTOCOLS))


def get_protocol(spec) -> Protocol:
    """A preset by name (``"naclip-voc21"``), a ``.json`` path, or a :class:`Protocol` (returned as is)."""
    if isinstance(spec, Protocol):
        return spec
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"protocol must be a preset name or a .json path, got {spec!r}")
    if spec in _PROTOCOLS:
        return _PROTOCOLS[spec]
    bundled = _bundled()
    if spec in bundled:
        proto = load_protocol_file(bundled[spec])
        _PROTOCOLS[spec] = proto
        return proto
    if spec.endswith(".json"):
        return load_protocol_file(spec)
    import difflib

    close = difflib.get_close_matches(spec, list_protocols(), n=4)
    raise ValueError(f"unknown protocol {spec!r}: close names {close or list_protocols()[:6]} "
                     f"(`clipapro prompts --protocols` lists them)")
