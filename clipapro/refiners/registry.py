"""The refiner registry: one contract, one decorator, capabilities declared where a method is defined.

A refiner is ``fn(image, probs, **options) -> probs`` with image (B, 3, H, W) float32 RGB in [0, 1]
and probs (B, K, H, W) float32 summing to one along K, both on the CPU; it returns (B, K, H, W).
Its options and their defaults live in its signature only: :func:`refiner_defaults` reads them from
there (for ``--help`` and the README). Register one with::

    @register_refiner("my-method", accepts_tree=False, requires=())
    def my_method(image, probs, *, strength: float = 1.0):
        ...

``accepts_tree``: the method takes ``tree=`` (a :class:`~clipapro.propagation.KruskalTree` of the
image), so callers that refine many predictions of one image (the predictor) build it once.
``requires``: ``(module, pip package)`` pairs the method imports; a missing one fails with a message
naming the package, before any work. ``defaults_from``: for a method that forwards ``**options`` to
another function (``apro``), that function, whose signature then holds the defaults.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass

__all__ = ["RefinerSpec", "get_refiner", "list_refiners", "refiner_defaults", "register_refiner"]


@dataclass(frozen=True)
class RefinerSpec:
    """A registered refiner: its name, function and declared capabilities."""

    name: str
    fn: object
    accepts_tree: bool = False
    requires: tuple[tuple[str, str], ...] = ()
    summary: str = ""
    defaults_from: object = None  # for a refiner that forwards **options: the function defining them
    exclude: tuple[str, ...] = ()  # options of defaults_from the refiner does not offer

    def check_available(self) -> None:
        """Raise ImportError naming the pip package when a required module is missing."""
        for module, package in self.requires:
            if importlib.util.find_spec(module) is None:
                raise ImportError(f"refiner {self.name!r} needs the optional package {package} "
                                  f"(pip install {package}, or pip install 'clipapro[bench]')")

    def options(self) -> dict:
        """Keyword options with their defaults (``inspect.Parameter.empty`` where there is none)."""
        out = {}
        for fn, skip in ((self.fn, 2), (self.defaults_from, 2)):
            if fn is None:
                continue
            for p in list(inspect.signature(fn).parameters.values())[skip:]:
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in self.exclude:
                    out.setdefault(p.name, p.default)
        return out

    def check_options(self, options: dict) -> None:
        """Raise TypeError naming options the method does not take (``tree`` only where accepted)."""
        known = set(self.options())
        if not self.accepts_tree:
            known.discard("tree")
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"refiner {self.name!r} got unexpected keyword option(s) {unknown}; it takes "
                            f"{sorted(known) or 'no options'}")


_REFINERS: dict[str, RefinerSpec] = {}


def register_refiner(name: str, *, accepts_tree: bool = False, requires=(), defaults_from=None, exclude=()):
    """Decorator adding ``fn(image, probs, **options)`` to the registry under ``name``.

    Example:
        >>> @register_refiner("identity-doc-example")
        ... def _identity(image, probs):
        ...     return probs
        >>> "identity-doc-example" in list_refiners()
        True
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"refiner name must be a non-empty string other than 'auto', got {name!r}")
    reqs = tuple((str(m), str(p)) for m, p in requires)

    def decorate(fn):
        params = list(inspect.signature(fn).parameters)
        if len(params) < 2:
            raise TypeError(f"refiner {name!r} must take (image, probs, **options), got {params}")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REFINERS[name] = RefinerSpec(name, fn, bool(accepts_tree), reqs, doc[0] if doc else "", defaults_from,
                                      tuple(exclude))
        return fn

    return decorate


def list_refiners() -> list[str]:
    """Registered refiner names (``"auto"`` is not one: it resolves to the default)."""
    return sorted(_REFINERS)


def get_refiner(name: str) -> RefinerSpec:
    """The :class:`RefinerSpec` of ``name``; ``"auto"`` gives the default method."""
    from clipapro.refiners import DEFAULT_METHOD

    key = DEFAULT_METHOD if name == "auto" else name
    if not isinstance(key, str) or key not in _REFINERS:
        raise ValueError(f"unknown refiner {name!r}: use 'auto' or one of {list_refiners()}")
    return _REFINERS[key]


def refiner_defaults(name: str) -> dict:
    """The options of refiner ``name`` with their defaults, read from its signature.

    Example:
        >>> refiner_defaults("pamr")
        {'steps': 10, 'dilations': (8, 16)}
    """
    return {k: v for k, v in get_refiner(name).options().items()
            if v is not inspect.Parameter.empty and k != "tree"}
