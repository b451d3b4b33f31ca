"""The flat 0.1 module paths of train/ (train.prepare, train.train, ...) still import, warn, and are the new modules."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from train import _moved

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_modules(monkeypatch):
    """Forget the old paths already imported in this worker, so importing them runs the finder again."""
    for old in _moved.MOVED:
        monkeypatch.delitem(sys.modules, old, raising=False)
        parent, _, leaf = old.rpartition(".")  # `import train.prepare` also binds `prepare` on train: undo that too
        monkeypatch.delattr(importlib.import_module(parent), leaf, raising=False)


@pytest.mark.parametrize(("old", "new"), sorted(_moved.MOVED.items()))
def test_an_old_module_path_warns_and_is_the_new_module(old, new, fresh_modules) -> None:
    assert not (ROOT / (old.replace(".", "/") + ".py")).exists()  # no file is left at the old place
    with pytest.warns(DeprecationWarning, match=rf"^{old} is now {new}; ") as caught:
        __import__(old)  # what `import OLD` runs (importlib.import_module would be the warning's caller)
    module = sys.modules[old]
    assert module is importlib.import_module(new)
    assert module.__name__ == new
    # The warning names the line that imported the old path, not the import machinery.
    assert {Path(w.filename) for w in caught} == {Path(__file__)}
    # `from OLD import NAME` gives the very objects of the new module.
    public = [name for name in vars(module) if not name.startswith("_")]
    assert public
    namespace: dict = {}
    exec(f"from {old} import {', '.join(public)}", namespace)
    assert all(namespace[name] is getattr(module, name) for name in public)


@pytest.mark.parametrize(("package", "where"), sorted(_moved.BECAME_PACKAGES.items()))
def test_a_module_that_became_a_package_still_serves_its_names(package, where) -> None:
    package_module, module = importlib.import_module(package), importlib.import_module(where)
    names = [name for name, value in vars(module).items() if getattr(value, "__module__", None) == where]
    assert names  # the functions and classes the old module defined
    for name in names:
        with pytest.warns(DeprecationWarning, match=rf"^{package}\.{name} is now {where}\.{name}; "):
            namespace: dict = {}
            exec(f"from {package} import {name}", namespace)
        assert namespace[name] is getattr(module, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        package_module.no_such_name  # noqa: B018


def test_the_new_paths_import_without_a_warning() -> None:
    """A fresh interpreter that turns train's deprecation warnings into errors imports every new path."""
    modules = sorted({*_moved.MOVED.values(), *_moved.BECAME_PACKAGES, "train.__main__"})
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "from train.data import prepare, nih\nfrom train.input_check import negatives, samples\n"
    result = subprocess.run(
        [sys.executable, "-W", "error:train.:DeprecationWarning", "-c", code],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
