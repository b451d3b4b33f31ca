"""The import graph of cxr/ and train/: no import circle (imports inside functions count), and train/'s
subpackages in layers. grimp (import-linter's engine) reads every import statement of every module statically."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

from train import _moved

ROOT = Path(__file__).resolve().parents[1]
# Higher layers may import lower ones, never the reverse; siblings in a Layer do not import each other.
TRAIN_LAYERS = (
    grimp.Layer("train.publishing", "train.input_check"),
    "train.fitting",  # validation during a fit uses evaluation's metrics
    "train.evaluation",
    "train.data",
)


def import_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """Every circle of the graph as ``(a, b, ..., a)``, one per set of modules, shortest first."""
    cycles: dict[frozenset[str], tuple[str, ...]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                cycle = (importer, *back)
                cycles.setdefault(frozenset(cycle), cycle)
    return sorted(cycles.values(), key=len)


def _graph(*packages: str) -> grimp.ImportGraph:
    return grimp.build_graph(*packages, cache_dir=None)


def test_no_import_circle_in_cxr_or_train() -> None:
    cycles = import_cycles(_graph("cxr", "train"))
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_circle_check_sees_imports_inside_functions_and_type_checking_blocks(tmp_path, monkeypatch) -> None:
    """The check can fail: a package whose only circles are through a function body and a TYPE_CHECKING block."""
    package = tmp_path / "circles"
    package.mkdir()
    files = {
        "__init__.py": "",
        "a.py": "import circles.b\n",
        "b.py": "def later():\n    from circles import a\n    return a\n",
        "c.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from circles.d import D\n",
        "d.py": "from circles import c\n\nclass D: ...\n",
        "e.py": "import circles.a\n",  # imports into a circle without being in one
    }
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles(_graph("circles")) == [
        ("circles.a", "circles.b", "circles.a"),
        ("circles.c", "circles.d", "circles.c"),
    ]


def test_train_subpackages_only_import_downwards() -> None:
    illegal = _graph("train").find_illegal_dependencies_for_layers(layers=TRAIN_LAYERS)
    routes = [
        f"{dependency.importer} -> {dependency.imported}: "
        + "; ".join(f"{sorted(route.heads)} ... {sorted(route.tails)}" for route in dependency.routes)
        for dependency in illegal
    ]
    assert not routes, "imports against train's layers:\n" + "\n".join(routes)


def _python_files() -> list[Path]:
    tops = ("cxr", "train", "tests", "bench", ".github")
    found = [ROOT / "app.py", *(path for top in tops for path in (ROOT / top).rglob("*.py"))]
    return sorted(path for path in found if "__pycache__" not in path.parts)


def old_path_imports(path: Path) -> list[str]:
    """The 0.1 module paths (and names of the two modules that became packages) that ``path`` imports."""
    old_leaves = {module.rpartition(".") for module in _moved.MOVED}
    uses = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            uses += [alias.name for alias in node.names if alias.name in _moved.MOVED]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [alias.name for alias in node.names]
            if node.module in _moved.MOVED:
                uses.append(node.module)
            uses += [f"{node.module}.{name}" for name in names if (node.module, ".", name) in old_leaves]
            if node.module in _moved.BECAME_PACKAGES:
                package = ROOT / node.module.replace(".", "/")
                submodules = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if p.is_dir()}
                uses += [f"{node.module}.{name}" for name in names if name not in submodules]
    return uses


def test_no_code_imports_a_0_1_module_path(tmp_path) -> None:
    """The old paths are for users; the project's own code and tests use the new ones (tests/test_moved_modules.py
    imports the old ones on purpose, through strings)."""
    found = {path.relative_to(ROOT).as_posix(): old_path_imports(path) for path in _python_files()}
    assert not {path: uses for path, uses in found.items() if uses}
    # ... and the check finds each kind of old import.
    sample = tmp_path / "old.py"
    sample.write_text(
        "import train.prepare\nfrom train.train import fit\nfrom train import checkpoint as ckpt\n"
        "from train.data import Record, prepare\nfrom train.input_check import main, negatives\n"
        "def later():\n    from train.evaluation import publish\n"
    )
    assert old_path_imports(sample) == [
        "train.prepare", "train.train", "train.checkpoint", "train.data.Record", "train.input_check.main",
        "train.evaluation.publish",
    ]  # fmt: skip
