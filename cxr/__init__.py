"""cxr: chest X-ray classification (NIH ChestX-ray14) with Grad-CAM for every label in one pass.

The names below are imported on first use, so ``import cxr.labels`` or ``python -m cxr --help``
does not pay for importing torch, timm and pydicom.
"""

from __future__ import annotations

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
