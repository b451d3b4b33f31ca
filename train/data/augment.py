"""Mild training augmentation on letterboxed [0, 1] batches, before :func:`cxr.preprocess.normalize`.

Random parameters are a pure function of (seed, epoch, image row), never of a global RNG: a batch
is augmented the same way whatever the number of GPUs, DataLoader workers or accumulation steps,
and a resumed run repeats exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random jitter (each drawn uniformly in ±range per image).

    Horizontal flips are off by default: the heart lies on the patient's left, and a flipped image
    shows an anatomy (dextrocardia) that the labels do not describe.
    """

    rotate_deg: float = 7.0  # in-plane rotation, degrees
    scale: float = 0.1  # zoom factor in [1 - scale, 1 + scale]
    translate: float = 0.05  # shift, as a fraction of the image side
    brightness: float = 0.1  # added to intensities in [0, 1]
    contrast: float = 0.1  # contrast factor in [1 - contrast, 1 + contrast] around the image mean
    gamma: float = 0.1  # exponent exp(±gamma): exposure changes that keep black black and white white
    hflip: bool = False  # mirror left-right with probability 1/2

    def sample(self, rows: Sequence[int], epoch: int, seed: int) -> torch.Tensor:
        """(N, 8) parameters for the images at ``rows``: angle, zoom, dx, dy, brightness, contrast, gamma, flip."""
        params = np.empty((len(rows), 8), dtype=np.float32)
        for n, row in enumerate(rows):
            u = np.random.default_rng([seed, epoch, int(row)]).uniform(-1.0, 1.0, size=8)
            params[n] = (
                math.radians(self.rotate_deg) * u[0],
                1.0 + self.scale * u[1],
                self.translate * u[2],
                self.translate * u[3],
                self.brightness * u[4],
                1.0 + self.contrast * u[5],
                math.exp(self.gamma * u[6]),
                -1.0 if self.hflip and u[7] < 0 else 1.0,
            )
        return torch.from_numpy(params)

    @staticmethod
    def apply(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Apply :meth:`sample` parameters to (N, S, S) images in [0, 1]; returns (N, S, S) in [0, 1].

        Geometry is one bilinear resampling; uncovered corners become black, like the letterbox.
        """
        params = params.to(images.device, images.dtype)
        angle, zoom, dx, dy, brightness, contrast, gamma, flip = params.unbind(1)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid maps output coordinates to input ones: x_in = A @ x_out + t (coordinates in [-1, 1]).
        theta = torch.stack([torch.stack([cos * flip, -sin, 2 * dx], 1), torch.stack([sin * flip, cos, 2 * dy], 1)], 1)
        grid = F.affine_grid(theta, [images.shape[0], 1, *images.shape[1:]], align_corners=False)
        warped = F.grid_sample(images.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        x = warped.squeeze(1).clamp(0.0, 1.0) ** gamma.view(-1, 1, 1)
        mean = x.mean(dim=(1, 2), keepdim=True)
        x = (x - mean) * contrast.view(-1, 1, 1) + mean + brightness.view(-1, 1, 1)
        return x.clamp(0.0, 1.0)
