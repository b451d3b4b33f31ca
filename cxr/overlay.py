"""Render a heatmap over a radiograph as an RGB image, with the label's probability written below it."""

from __future__ import annotations

from functools import lru_cache

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Overlays of smaller images are drawn at least this large (long side), so the caption below fits and reads.
MIN_SIDE = 512


@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 1, 3) uint8 RGB lookup table of a matplotlib colormap, in OpenCV's LUT layout."""
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"Unknown colormap {name!r}.") from None
    return np.rint(cmap(np.linspace(0.0, 1.0, 256))[:, None, :3] * 255).astype(np.uint8)


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    *,
    opacity: float = 0.5,
    colormap: str = "jet",
    caption: str | None = None,
) -> np.ndarray:
    """Blend a [0, 1] heatmap over a [0, 1] grayscale image of the same (H, W) -> uint8 (H, W, 3).

    An image whose long side is under :data:`MIN_SIDE` is drawn enlarged to it (bilinear). Each pixel's
    colour weight is ``opacity * heat``, so cold regions show the plain radiograph
    instead of a blue wash, and the anatomy under a hot spot stays visible. Computed in uint8 with
    OpenCV's lookup tables and saturating arithmetic: a 1024 x 1024 overlay takes ~3 ms instead of
    ~18 ms in float numpy.
    """
    if image.shape != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} differ in size.")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}.")
    image, heatmap = (at_least(a, MIN_SIDE) for a in (image, heatmap))
    level = _to_uint8(heatmap)
    color = cv2.applyColorMap(level, colormap_lut(colormap))
    weight = cv2.LUT(level, np.rint(opacity * np.arange(256)).astype(np.uint8))  # opacity * heat, in 1/255
    weight = cv2.merge([weight] * 3)
    gray = cv2.merge([_to_uint8(image)] * 3)
    rgb = cv2.add(cv2.multiply(gray, 255 - weight, scale=1 / 255), cv2.multiply(color, weight, scale=1 / 255))
    return add_caption(rgb, caption) if caption else rgb


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> rounded, saturated uint8 (values are never negative here, so abs() is a no-op)."""
    return cv2.convertScaleAbs(np.asarray(values, dtype=np.float32), alpha=255.0)


def at_least(values: np.ndarray, side: int) -> np.ndarray:
    """A (H, W) array enlarged (bilinear) so that its long side is at least ``side``; larger ones as they are."""
    scale = side / max(values.shape)
    if scale <= 1:
        return values
    height, width = (max(1, round(n * scale)) for n in values.shape)
    return cv2.resize(np.asarray(values, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def fit_long_side(values: np.ndarray, side: int) -> np.ndarray:
    """A (H, W) float array resized so that its long side is ``side`` (area averaging when shrinking, bilinear when
    enlarging); the same array when it already is."""
    scale = side / max(values.shape)
    if scale == 1:
        return values
    height, width = (max(1, round(n * scale)) for n in values.shape)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.asarray(values, dtype=np.float32), (width, height), interpolation=interpolation)


def add_caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` on a dark band below it (a new array), wrapped to the width and sized to it.

    Below the picture, the caption covers no anatomy and no button a viewer puts over the image's corners.
    """
    width = rgb.shape[1]
    font = ImageFont.load_default(size=max(12, width // 30))
    margin = max(4, width // 60)
    lines = _wrap(text, font, width - 2 * margin)
    line_height = round(1.25 * font.size)
    band = Image.new("RGB", (width, len(lines) * line_height + 2 * margin), (0, 0, 0))
    draw = ImageDraw.Draw(band)
    for n, line in enumerate(lines):
        draw.text((margin, margin + n * line_height), line, font=font, fill=(255, 255, 255))
    return np.concatenate([rgb, np.asarray(band)], axis=0)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels (a word longer than a line gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]
