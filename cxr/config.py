"""The model's configuration: everything needed to use a set of weights, saved as ``config.json``.

Preprocessing (size, mean, std), the label order and the decision thresholds live here and nowhere
else, so training, evaluation, the CLI and the app cannot disagree about them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr.labels import CHESTXRAY14_LABELS

# ImageNet statistics: the trunk starts from ImageNet weights, so its input keeps their scale.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

FORMAT_VERSION = 1  # bump when config.json changes in a way older code cannot read


class ConfigError(ValueError):
    """A configuration that cannot describe a usable model."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture, input contract and operating points of a CXRNet.

    Attributes:
        labels: output labels, in the order of the classifier rows.
        trunk: timm model name of the feature extractor.
        image_size: side of the square network input, in pixels (a multiple of 32).
        mean, std: per-channel normalisation applied after replicating grayscale to 3 channels.
        transition_channels: width of the 1x1 "transition" convolution (the Grad-CAM layer).
        lse_r, lse_eps: sharpness and stabiliser of log-sum-exp pooling.
        thresholds: per-label probability cut-offs (0.5 until training chooses them on validation).
        temperatures: per-label logit temperatures (1.0 until calibration fits them).
        biases: per-label logit biases (0.0 until calibration fits them); a label's probability is
            ``sigmoid((logit + bias) / temperature)`` (:func:`cxr.predictor.calibrated_probabilities`).
            Configs written before biases existed load with 0.
        trained: False for random or development weights; the app shows a banner then.
        input_check: settings of the weights' input check (:mod:`cxr.input_check`; its tensors are in
            ``input_check.safetensors`` beside the weights, with their SHA-256 here). Empty: no check; configs
            written before the check existed load with it empty.
        metadata: JSON-serialisable provenance (training data, split, metrics, weights checksum).
    """

    labels: tuple[str, ...] = CHESTXRAY14_LABELS
    trunk: str = "resnet50"
    image_size: int = 512
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    transition_channels: int = 1024
    lse_r: float = 10.0
    lse_eps: float = 1e-6
    thresholds: tuple[float, ...] = ()
    temperatures: tuple[float, ...] = ()
    biases: tuple[float, ...] = ()
    trained: bool = False
    input_check: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = tuple(self.labels)
        set_ = object.__setattr__  # frozen dataclass: normalise fields once, here
        set_(self, "labels", labels)
        set_(self, "mean", tuple(float(v) for v in self.mean))
        set_(self, "std", tuple(float(v) for v in self.std))
        set_(self, "thresholds", tuple(float(v) for v in self.thresholds) or (0.5,) * len(labels))
        set_(self, "temperatures", tuple(float(v) for v in self.temperatures) or (1.0,) * len(labels))
        set_(self, "biases", tuple(float(v) for v in self.biases) or (0.0,) * len(labels))
        set_(self, "metadata", dict(self.metadata))
        set_(self, "input_check", dict(self.input_check))
        self._validate()

    def _validate(self) -> None:
        k = len(self.labels)
        if k == 0 or not all(isinstance(label, str) and label for label in self.labels):
            raise ConfigError("labels must be a non-empty list of label names.")
        if len(set(self.labels)) != k:
            raise ConfigError(f"labels contain duplicates: {list(self.labels)}.")
        if not isinstance(self.image_size, int) or self.image_size < 64 or self.image_size % 32:
            raise ConfigError(f"image_size must be an integer multiple of 32, at least 64; got {self.image_size!r}.")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need 3 values each, and std must be positive.")
        if len(self.thresholds) != k or not all(0.0 < t < 1.0 for t in self.thresholds):
            raise ConfigError(f"thresholds need one value in (0, 1) per label ({k}); got {len(self.thresholds)}.")
        if len(self.temperatures) != k or not all(math.isfinite(t) and t > 0 for t in self.temperatures):
            raise ConfigError(f"temperatures need one positive value per label ({k}); got {len(self.temperatures)}.")
        if len(self.biases) != k or not all(math.isfinite(b) for b in self.biases):
            raise ConfigError(f"biases need one finite value per label ({k}); got {len(self.biases)}.")
        if not self.lse_r > 0 or not self.lse_eps >= 0:
            raise ConfigError("lse_r must be positive and lse_eps non-negative.")
        if not isinstance(self.transition_channels, int) or self.transition_channels < 1:
            raise ConfigError("transition_channels must be a positive integer.")

    @property
    def num_labels(self) -> int:
        """Number of output labels K."""
        return len(self.labels)

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary, with the format version."""
        data = dataclasses.asdict(self)
        data["format_version"] = FORMAT_VERSION
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from ``to_dict`` output, refusing keys this version does not know."""
        data = dict(data)
        version = data.pop("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ConfigError(
                f"config.json has format_version {version!r}; this cxr reads up to {FORMAT_VERSION}. Upgrade cxr."
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config.json has keys this cxr does not know: {', '.join(unknown)}.")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"config.json has a value of the wrong type: {err}") from err

    def save(self, path: str | Path) -> None:
        """Write the config as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        """Read a config written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{Path(path).name} is not readable JSON: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{Path(path).name} must hold a JSON object.")
        return cls.from_dict(data)
