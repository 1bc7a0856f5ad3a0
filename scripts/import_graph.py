"""The import graph of clipapro by layer, checked against the dependency rules of ../shared/DESIGN.md §4.

    python scripts/import_graph.py          # prints the layer graph and every module's imports; exit 1 on a violation

Every ``import`` / ``from ... import`` of a ``clipapro`` module counts, at module level or inside a
function (a lazy import is still a dependency). Layers, lowest first:

    base         _ext _validate _deps io distributed prompts      (knows nothing above it)
    propagation  the compiled core's Python layer                  -> base
    clip         CLIP models, dense paths, text classifiers        -> base            (no propagation)
    data         dataset readers                                   -> base            (no propagation, no CLIP)
    metrics      confusion matrix, evaluation loop                 -> base            (no propagation, no CLIP)
    refiners     refine() and its registry                         -> base, propagation
    adapters     boxes, points, scribbles                          -> base, propagation, refiners
    protocols    published presets (CLIP options + refinement)     -> base, propagation, clip, refiners
    pseudo       pseudo labels, students, self-training            -> all of the above
    instances    box-supervised Mask R-CNN, its training loop       -> all of the above
    front        cli, commands, predictor, viz, __main__           -> anything
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "clipapro"
if not (PACKAGE / "__init__.py").is_file():  # the copy shipped in a wheel
    import clipapro

    PACKAGE = Path(clipapro.__file__).resolve().parent

ORDER = ["base", "propagation", "clip", "data", "metrics", "refiners", "adapters", "protocols", "pseudo", "instances",
         "front"]
BASE = {"_C", "_ext", "_validate", "_deps", "io", "distributed", "prompts"}
FRONT = {"cli", "commands", "predictor", "viz", "__main__"}
ALLOWED = {
    "base": {"base"},
    "propagation": {"base", "propagation"},
    "clip": {"base", "clip"},
    "data": {"base", "data"},
    "metrics": {"base", "metrics"},
    "refiners": {"base", "propagation", "refiners"},
    "adapters": {"base", "propagation", "refiners", "adapters"},
    "protocols": {"base", "propagation", "clip", "refiners", "protocols"},
    "pseudo": set(ORDER) - {"front", "instances"},
    "instances": set(ORDER) - {"front"},
    "front": set(ORDER),
    # the package itself re-exports the propagation ops and (lazily) refine
    "package": {"base", "propagation", "refiners"},
}


def layer_of(module: str) -> str:
    """``clipapro.clip.text`` -> ``clip``; ``clipapro`` -> ``package``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    head = parts[1]
    if head in BASE:
        return "base"
    if head in FRONT:
        return "front"
    return head


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_submodule(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file() or any(PACKAGE.glob(f"{name}.*.so"))


def imports_of(path: Path) -> set[str]:
    """The clipapro modules ``path`` imports (absolute and relative imports, anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "clipapro")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "clipapro":
                continue
            if target == "clipapro":  # from clipapro import io, refine, ...
                found.update(f"clipapro.{a.name}" if _is_submodule(a.name) else "clipapro" for a in node.names)
            else:
                found.add(target)
    found.discard(mod)
    return found


def graph() -> dict[str, set[str]]:
    """module -> the clipapro modules it imports, for every module of the package."""
    return {_module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def violations(g: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in sorted(g.items()):
        src = layer_of(mod)
        for dep in sorted(deps):
            dst = layer_of(dep)
            if dst == "package" and src not in ("front", "pseudo", "package"):
                dst = "propagation"  # `import clipapro` pulls in the propagation ops
            if dst not in ALLOWED.get(src, set()) and dst != "package":
                out.append(f"{mod} ({src}) imports {dep} ({dst})")
    return out


def layer_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for mod, deps in g.items():
        src = layer_of(mod)
        for dep in deps:
            dst = layer_of(dep)
            if dst != src:
                edges.setdefault(src, set()).add(dst)
    return edges


def render(g: dict[str, set[str]]) -> str:
    edges = layer_graph(g)
    lines = ["layer graph (A -> B: some module of A imports one of B):"]
    for layer in ["package"] + ORDER:
        if layer in edges:
            targets = sorted(edges[layer], key=lambda x: (ORDER + ["package"]).index(x))
            lines.append(f"  {layer:<12} -> {', '.join(targets)}")
    lines.append("")
    lines.append("modules:")
    for mod, deps in sorted(g.items()):
        lines.append(f"  {mod}  <- " + (", ".join(sorted(d.replace('clipapro.', '') for d in deps)) or "-"))
    return "\n".join(lines)


def main() -> int:
    g = graph()
    try:
        print(render(g))
    except BrokenPipeError:  # piped into head
        return 0
    bad = violations(g)
    print("\n" + ("dependency rules: ok" if not bad else "VIOLATIONS:\n  " + "\n  ".join(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
