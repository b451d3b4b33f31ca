"""Render a heatmap over a radiograph as an RGB image, with the label's probability written on it."""

from __future__ import annotations

from functools import lru_cache

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont


@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) float32 RGB lookup table in [0, 1] of a matplotlib colormap."""
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"Unknown colormap {name!r}.") from None
    return cmap(np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    opacity: float = 0.5,
    colormap: str = "jet",
    caption: str | None = None,
) -> np.ndarray:
    """Blend a [0, 1] heatmap over a [0, 1] grayscale image of the same (H, W) -> uint8 (H, W, 3).

    Each pixel's colour weight is ``opacity * heat``, so cold regions show the plain radiograph
    instead of a blue wash, and the anatomy under a hot spot stays visible.
    """
    if image.shape != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} differ in size.")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}.")
    heat = np.clip(heatmap, 0.0, 1.0)
    color = colormap_lut(colormap)[np.rint(heat * 255).astype(np.uint8)]
    alpha = (opacity * heat)[..., None]
    gray = np.clip(image, 0.0, 1.0)[..., None]
    rgb = np.rint((gray * (1.0 - alpha) + color * alpha) * 255).astype(np.uint8)
    return draw_caption(rgb, caption) if caption else rgb


def draw_caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` on a dark band in the top-left corner, sized to the image."""
    canvas = Image.fromarray(rgb)
    height = canvas.height
    font = ImageFont.load_default(size=max(12, height // 28))
    draw = ImageDraw.Draw(canvas, "RGBA")
    margin = max(4, height // 100)
    left, top, right, bottom = draw.textbbox((2 * margin, 2 * margin), text, font=font)
    draw.rectangle((left - margin, top - margin, right + margin, bottom + margin), fill=(0, 0, 0, 170))
    draw.text((2 * margin, 2 * margin), text, font=font, fill=(255, 255, 255, 255))
    return np.asarray(canvas)
