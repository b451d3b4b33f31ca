"""cxr: chest X-ray classification (NIH ChestX-ray14) with Grad-CAM for every label in one pass.

The names below are imported on first use, so ``import cxr.labels`` or ``python -m cxr --help``
does not pay for importing torch, timm and pydicom.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any

_EXPORTS = {
    "CHESTXRAY8_LABELS": "cxr.labels",
    "CHESTXRAY14_LABELS": "cxr.labels",
    "CXRNet": "cxr.model",
    "ConfigError": "cxr.config",
    "InvalidImageError": "cxr.io",
    "LSEPool": "cxr.model",
    "ModelConfig": "cxr.config",
    "Prediction": "cxr.predictor",
    "Predictor": "cxr.predictor",
    "WeightsError": "cxr.weights",
    "load_image": "cxr.io",
    "load_model": "cxr.weights",
    "preprocess": "cxr.preprocess",
    "save_model": "cxr.weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cxr' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The ``cxr`` module, keeping an exported function where Python would bind a same-named submodule.

    Importing ``cxr.preprocess`` (the module) sets the attribute ``cxr.preprocess``; without this,
    ``from cxr import preprocess`` would then return the module instead of the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType) and value.__name__ == _EXPORTS[name]:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
