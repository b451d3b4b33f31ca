"""cxr: chest X-ray classification (NIH ChestX-ray14) with Grad-CAM for every label in one pass."""

from cxr.config import ConfigError, ModelConfig
from cxr.io import InvalidImageError, load_image
from cxr.labels import CHESTXRAY8_LABELS, CHESTXRAY14_LABELS
from cxr.model import CXRNet, LSEPool
from cxr.predictor import Prediction, Predictor
from cxr.preprocess import preprocess
from cxr.weights import WeightsError, load_model, save_model

__all__ = [
    "CHESTXRAY8_LABELS",
    "CHESTXRAY14_LABELS",
    "CXRNet",
    "ConfigError",
    "InvalidImageError",
    "LSEPool",
    "ModelConfig",
    "Prediction",
    "Predictor",
    "WeightsError",
    "load_image",
    "load_model",
    "preprocess",
    "save_model",
]
