"""Class sets and prompt-template sets: plain data files in ``prompts/`` behind two registries.

Class sets live once, here; the CLIP side (text classifiers) and the datasets (label names and
indices) both read them, so names and indices never disagree.

File formats (``#`` starts a comment, blank lines are skipped):

* ``prompts/classes/<name>.txt``: one class per line, in label-index order. A line is either the
  benchmark name alone (``cat``) or the benchmark name, a colon and the comma-separated names used
  in prompts (``pottedplant: potted plant, houseplant``); a class scores the max over its prompt names.
* ``prompts/templates/<name>.txt``: one template per line, ``{}`` marks the class name.
* JSON alternatives: a class set ``{"names": [...], "prompts": {"name": ["syn", ...]}}`` or a plain
  list; a template set is a list of strings.

Example:
    >>> from clipapro.prompts import get_class_set, get_templates
    >>> cs = get_class_set("cat, dog")
    >>> cs.names
    ('cat', 'dog')
    >>> get_templates("a photo of a {}.")
    ('a photo of a {}.',)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ClassSet", "get_class_set", "get_templates", "list_class_sets", "list_template_sets",
    "prompts_dir", "register_class_set", "register_template_set",
]


def prompts_dir() -> Path:
    """The folder holding the bundled ``classes/`` and ``templates/`` files: ``prompts/`` beside the
    package in a source checkout (editable installs and worktrees see their own files), else the
    copy shipped in a wheel as ``clipapro._prompts``."""
    source = Path(__file__).resolve().parent.parent / "prompts"
    if (source / "classes").is_dir() and (source / "templates").is_dir():
        return source
    import importlib.resources as resources

    return Path(str(resources.files("clipapro._prompts")))


@dataclass(frozen=True)
class ClassSet:
    """An ordered vocabulary: ``names[i]`` is label ``i``; ``prompts[i]`` its prompt names (>= 1)."""

    name: str
    names: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


_CLASS_SETS: dict[str, ClassSet] = {}
_TEMPLATE_SETS: dict[str, tuple[str, ...]] = {}


def _clean_lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _make_class_set(name: str, entries) -> ClassSet:
    names, prompts = [], []
    for entry in entries:
        if isinstance(entry, str):
            if ":" in entry:
                head, syns = entry.split(":", 1)
                syn = tuple(s.strip() for s in syns.split(",") if s.strip())
            else:
                head, syn = entry, ()
            head = head.strip()
        else:
            head, syn = entry[0].strip(), tuple(s.strip() for s in entry[1] if s.strip())
        if not head:
            raise ValueError(f"class set {name!r}: empty class name")
        names.append(head)
        prompts.append(syn or (head,))
    if not names:
        raise ValueError(f"class set {name!r} is empty: give at least one class name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"class set {name!r} has duplicate classes: {dup}")
    return ClassSet(name, tuple(names), tuple(prompts))


def _load_class_file(path: Path) -> ClassSet:
    if not path.is_file():
        raise FileNotFoundError(f"class set file not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            syn = data.get("prompts", {})
            entries = [(n, syn.get(n, [n])) for n in data["names"]]
        else:
            entries = list(data)
        return _make_class_set(path.stem, entries)
    return _make_class_set(path.stem, _clean_lines(text))


def register_class_set(name: str, classes) -> ClassSet:
    """Register a class set under ``name`` from a list of names (or ``(name, [prompt names])``)."""
    cs = _make_class_set(name, list(classes))
    _CLASS_SETS[name] = cs
    return cs


def register_template_set(name: str, templates) -> tuple[str, ...]:
    """Register a list of templates (each containing ``{}``) under ``name``."""
    t = _check_templates(name, list(templates))
    _TEMPLATE_SETS[name] = t
    return t


def _bundled(kind: str) -> dict[str, Path]:
    folder = prompts_dir() / kind
    files = sorted(folder.glob("*.txt")) + sorted(folder.glob("*.json")) if folder.is_dir() else []
    return {p.stem: p for p in files}


def list_class_sets() -> list[str]:
    """Names of all registered and bundled class sets."""
    return sorted(set(_bundled("classes")) | set(_CLASS_SETS))


def list_template_sets() -> list[str]:
    """Names of all registered and bundled template sets."""
    return sorted(set(_bundled("templates")) | set(_TEMPLATE_SETS))


def _is_file(spec: str) -> bool:
    """Whether ``spec`` names an existing file; a long comma list is not a path (no ENAMETOOLONG)."""
    try:
        return Path(spec).is_file()
    except (OSError, ValueError):
        return False


def get_class_set(spec) -> ClassSet:
    """Resolve a class set from a registered name, a ``.txt``/``.json`` path, a comma list or a list.

    Raises ``ValueError`` for an unknown name, empty or duplicate classes; ``FileNotFoundError`` for
    a missing file.
    """
    if isinstance(spec, ClassSet):
        return spec
    if isinstance(spec, (list, tuple)):
        return _make_class_set("custom", list(spec))
    if not isinstance(spec, str):
        raise TypeError(f"classes must be a name, a path, a comma list or a list, got {type(spec).__name__}")
    spec = spec.strip()
    if spec in _CLASS_SETS:
        return _CLASS_SETS[spec]
    bundled = _bundled("classes")
    if spec in bundled:
        cs = _load_class_file(bundled[spec])
        _CLASS_SETS[spec] = cs
        return cs
    if spec.endswith((".txt", ".json")) or _is_file(spec):
        return _load_class_file(Path(spec))
    if "," in spec:
        return _make_class_set("custom", [s for s in spec.split(",") if s.strip()] or [""])
    raise ValueError(
        f"unknown class set {spec!r}: use one of {list_class_sets()}, a .txt/.json file or a comma list"
    )


def _check_templates(name: str, templates: list[str]) -> tuple[str, ...]:
    if not templates:
        raise ValueError(f"template set {name!r} is empty")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"template set {name!r}: templates must contain '{{}}', got {bad[:3]}")
    return tuple(templates)


def get_templates(spec) -> tuple[str, ...]:
    """Resolve templates from a registered name, a file, a single template string with ``{}``, or a list."""
    if isinstance(spec, (list, tuple)):
        return _check_templates("custom", list(spec))
    if not isinstance(spec, str):
        raise TypeError(f"templates must be a name, a path or a list, got {type(spec).__name__}")
    if spec in _TEMPLATE_SETS:
        return _TEMPLATE_SETS[spec]
    bundled = _bundled("templates")
    path = bundled.get(spec)
    if path is None and (spec.endswith((".txt", ".json")) or _is_file(spec)):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"template file not found: {path}")
    if path is not None:
        text = path.read_text(encoding="utf-8")
        items = json.loads(text) if path.suffix == ".json" else _clean_lines(text)
        t = _check_templates(path.stem, items)
        _TEMPLATE_SETS.setdefault(spec, t)
        return t
    if "{}" in spec:
        return (spec,)
    raise ValueError(
        f"unknown template set {spec!r}: use one of {list_template_sets()}, a file, or a template with '{{}}'"
    )
