"""The module paths of the flat 0.1 layout (``train.prepare``, ``train.train``, ...), importable for one more release.

Importing an old path warns with a :class:`DeprecationWarning` and gives the new module itself, so every name is the
same object under both paths (and a monkeypatch through either reaches both). The old paths are served by a finder on
:data:`sys.meta_path` rather than by shim files at the old places: a file left at an old path makes git see that file
as rewritten instead of moved, so history and parallel edits would not follow the move; and this one table says where
everything went. ``train.data`` and ``train.input_check`` were modules and are packages now: their old names are served
by the packages' :func:`old_module_names` ``__getattr__``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

REMOVAL = "the old path goes in the next release"

# old module -> new module
MOVED: dict[str, str] = {
    "train.download": "train.data.download",
    "train.archives": "train.data.archives",
    "train.prepare": "train.data.prepare",
    "train.cache": "train.data.cache",
    "train.synth": "train.data.synth",
    "train.dataset": "train.data.dataset",
    "train.augment": "train.data.augment",
    "train.train": "train.fitting.loop",
    "train.fit_cli": "train.fitting.cli",
    "train.config": "train.fitting.config",
    "train.losses": "train.fitting.losses",
    "train.checkpoint": "train.fitting.checkpoint",
    "train.distributed": "train.fitting.distributed",
    "train.memory": "train.fitting.memory",
    "train.validation": "train.fitting.validation",
    "train.runs": "train.fitting.runs",
    "train.export": "train.fitting.export",
    "train.inference": "train.fitting.inference",
    "train.plots": "train.fitting.plots",
    "train.starter": "train.fitting.starter",
    "train.evaluation.card": "train.publishing.card",
    "train.evaluation.publish": "train.publishing.publish",
    "train.check_data": "train.input_check.samples",
    "train.negatives": "train.input_check.negatives",
}

# old module that is a package now -> the module its names live in
BECAME_PACKAGES: dict[str, str] = {
    "train.data": "train.data.nih",
    "train.input_check": "train.input_check.fit_checker",
}


class _Alias(importlib.abc.Loader):
    """Loads an old path as the new module: warns, then puts the new module in ``sys.modules`` under the old name."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a plain module, replaced in exec_module

    def exec_module(self, module: ModuleType) -> None:
        # stacklevel=2 names the importing line: warnings skips importlib's own frames.
        warnings.warn(f"{module.__name__} is now {self.new}; {REMOVAL}.", DeprecationWarning, stacklevel=2)
        # The import system returns whatever sys.modules holds for the name once exec_module is done.
        sys.modules[module.__name__] = importlib.import_module(self.new)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (and only those)."""

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        new = MOVED.get(fullname)
        return importlib.util.spec_from_loader(fullname, _Alias(new)) if new else None


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``train/__init__.py`` calls this)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())  # before any finder that could still see an old file


def old_module_names(package: str) -> Callable[[str], Any]:
    """A package ``__getattr__`` that serves the names of the module the package replaced, with a warning."""
    where = BECAME_PACKAGES[package]

    def __getattr__(name: str) -> Any:
        # `from train.data import prepare` asks here first while the submodule is not imported yet: answer no at
        # once, without importing the old module's replacement (which may be what is importing that submodule).
        if name.startswith("__") or importlib.util.find_spec(f"{package}.{name}") is not None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(where)
        if not hasattr(module, name):
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        warnings.warn(f"{package}.{name} is now {where}.{name}; {REMOVAL}.", DeprecationWarning, stacklevel=2)
        return getattr(module, name)

    return __getattr__
