"""The dependency rules of ../shared/DESIGN.md §4, checked on the parsed imports of every module
(``scripts/import_graph.py`` prints the graph: ``python scripts/import_graph.py``)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "import_graph.py"


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_no_module_imports_a_layer_above_it(capsys):
    tool = _tool()
    g = tool.graph()
    print(tool.render(g))  # the picture, with -s
    assert tool.violations(g) == []
    # the layers that must stay independent of each other
    edges = tool.layer_graph(g)
    assert "propagation" not in edges.get("clip", set()) and "clip" not in edges.get("propagation", set())
    assert not edges.get("data", set()) - {"base"} and not edges.get("metrics", set()) - {"base"}
    assert "pseudo" not in edges.get("refiners", set()) | edges.get("adapters", set())
    # the box-supervised detector sits above everything but the front; the loss it uses stays in adapters
    below_instances = {"base", "propagation", "clip", "data", "metrics", "refiners", "adapters", "protocols", "pseudo"}
    assert all("instances" not in edges.get(layer, set()) for layer in below_instances)


def test_the_checker_finds_violations_and_lazy_imports(tmp_path):
    tool = _tool()
    bad = {"clipapro.clip.text": {"clipapro.propagation.functional"}, "clipapro.data.voc": {"clipapro.clip"},
           "clipapro.io": {"clipapro.commands._common"}, "clipapro.refiners.x": {"clipapro.pseudo.labels"}}
    found = tool.violations(bad)
    assert len(found) == 4 and all(" imports " in v for v in found)
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from clipapro.clip import create_model\n    import clipapro.data.voc\n"
                   "from . import sibling\n")
    tool.PACKAGE, old = tmp_path, tool.PACKAGE
    try:
        (tmp_path / "sibling.py").write_text("")
        assert {"clipapro.clip", "clipapro.data.voc"} <= tool.imports_of(src)
    finally:
        tool.PACKAGE = old
