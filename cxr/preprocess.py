"""The model's input contract: square letterbox at the config's size, 3 channels, mean/std.

Every caller (predictor, CLI, app, training cache, evaluation) goes through these functions, with
size, mean and std read from the model's :class:`~cxr.config.ModelConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cxr.config import ModelConfig


@dataclass(frozen=True)
class Letterbox:
    """Where an H x W image sits inside the black square it is padded to before resizing."""

    height: int
    width: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def top(self) -> int:
        return (self.side - self.height) // 2

    @property
    def left(self) -> int:
        return (self.side - self.width) // 2

    def crop(self, square: np.ndarray) -> np.ndarray:
        """Cut the image's own region out of a (..., side, side) array."""
        return square[..., self.top : self.top + self.height, self.left : self.left + self.width]


def fit_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """Pad a (H, W) image with black to a centred square, then resize it to (size, size).

    Padding instead of cropping keeps every lung field, and instead of stretching keeps the
    heart-to-thorax proportions that cardiomegaly is read from. Resizing is bilinear with
    antialiasing (PIL-like), so downsizing 1024 -> 512 does not alias.
    """
    box = Letterbox(*image.shape)
    square = image
    if box.height != box.width:
        square = np.zeros((box.side, box.side), dtype=np.float32)
        square[box.top : box.top + box.height, box.left : box.left + box.width] = image
    if box.side == size:
        return np.ascontiguousarray(square, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(square, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized[0, 0].clamp_(0.0, 1.0).numpy()


def normalize(batch: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """(N, S, S) grayscale in [0, 1] -> (N, 3, S, S) replicated and normalised with the config's mean/std."""
    mean = torch.tensor(config.mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch.unsqueeze(1) - mean) / std


def preprocess(images: np.ndarray | Sequence[np.ndarray], config: ModelConfig) -> torch.Tensor:
    """Decoded (H, W) image(s) from :func:`cxr.io.load_image` -> (N, 3, S, S) network input."""
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    squares = np.stack([fit_to_square(image, config.image_size) for image in images])
    return normalize(torch.from_numpy(squares), config)
