"""Every name in ``cxr.__all__`` is what it says, whatever was imported before (issue 10 item 9)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

CHECK = """
import importlib, types, cxr
import cxr.predictor, cxr.preprocess  # binds the submodule cxr.preprocess on the package
from cxr import preprocess
assert preprocess is importlib.import_module("cxr.preprocess").preprocess, preprocess
for name in cxr.__all__:
    value = getattr(cxr, name)
    assert not isinstance(value, types.ModuleType), name
    assert getattr(value, "__name__", name) == name, (name, value)
from cxr.preprocess import Letterbox  # the submodule itself still imports
print("ok")
"""


def test_exports_are_never_shadowed_by_submodules() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
