"""Render a heatmap over a radiograph as an RGB image, with the label's probability written below it."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxr.resize import bilinear, shrink_by_area

# Overlays of smaller images are drawn at least this large (long side), so the caption below fits and reads.
MIN_SIDE = 512
# matplotlib's "jet" (matplotlib/_cm.py, _jet_data): (position, value) corners of each channel's piecewise-linear
# curve, so the default colormap needs no matplotlib (~60 MB with fonttools) on the Space.
JET = {
    "red": ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),
    "green": ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)),
    "blue": ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),
}


@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of a matplotlib colormap; "jet" is built in, others need matplotlib."""
    if name == "jet":
        rgb = np.stack([_piecewise_linear(JET[channel]) for channel in ("red", "green", "blue")], axis=1)
    else:
        try:
            import matplotlib
        except ImportError:
            message = f'colormap {name!r} needs matplotlib: pip install "cxr[train]" (only "jet" is built in)'
            raise ImportError(message) from None
        try:
            rgb = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
        except KeyError:
            raise ValueError(f"Unknown colormap {name!r}.") from None
    return np.rint(rgb * 255).astype(np.uint8)


def _piecewise_linear(corners: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The 256 levels of a curve through ``corners``, computed as matplotlib's ``_create_lookup_table`` does (its
    rounding: np.interp's differs in the last bit, which moves 13 of jet's 768 entries by one level)."""
    x, y = (np.array(column) for column in zip(*corners, strict=True))
    x = x * 255
    xind = 255 * np.linspace(0.0, 1.0, 256)
    ind = np.searchsorted(x, xind)[1:-1]
    inner = (xind[1:-1] - x[ind - 1]) / (x[ind] - x[ind - 1]) * (y[ind] - y[ind - 1]) + y[ind - 1]
    return np.concatenate([y[:1], inner, y[-1:]])


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
    instead of a blue wash, and the anatomy under a hot spot stays visible. A pixel's colour depends only on its
    grey level and its heat level, so one 256 x 256 table of colours, in integer arithmetic, draws the overlay
    (a 1024 x 1024 one in ~5 ms, ~18 ms in float numpy).
    """
    if image.shape != heatmap.shape:
        raise ValueError(f"image {image.shape} and heatmap {heatmap.shape} differ in size.")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}.")
    image, heatmap = (at_least(a, MIN_SIDE) for a in (image, heatmap))
    index = _to_uint8(image).astype(np.uint16) << 8 | _to_uint8(heatmap)
    rgb = np.take(_blend_table(colormap, opacity), index, axis=0)  # 3x faster than indexing with []
    return add_caption(rgb, caption) if caption else rgb


@lru_cache(maxsize=16)
def _blend_table(colormap: str, opacity: float) -> np.ndarray:
    """(256 * 256, 3) uint8: the overlay's colour at ``grey << 8 | heat``.

    ``grey * (1 - w) + colour * w`` with ``w = opacity * heat``, each term rounded to a whole level as before
    (OpenCV's uint8 arithmetic); the sum never exceeds 255, since each term is at most its weight times 255.
    """
    weight = np.rint(opacity * np.arange(256)).astype(np.uint16)  # opacity * heat, in 1/255, for each heat level
    grey = np.arange(256, dtype=np.uint16)[:, None]
    colour = _divide_by_255(colormap_lut(colormap).astype(np.uint16) * weight[:, None])  # (heat, 3)
    table = _divide_by_255(grey * (255 - weight))[:, :, None] + colour[None]  # (grey, heat, 3)
    return table.astype(np.uint8).reshape(-1, 3)


def _divide_by_255(values: np.ndarray) -> np.ndarray:
    """Integers 0..255 * 255 divided by 255, rounded to the nearest (there are no halves)."""
    return (values + 127) // 255


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> rounded (halves to even), saturated uint8."""
    scaled = np.asarray(values, dtype=np.float32) * np.float32(255)
    return np.clip(np.rint(scaled, out=scaled), 0, 255, out=scaled).astype(np.uint8)


def at_least(values: np.ndarray, side: int) -> np.ndarray:
    """A (H, W) array enlarged (bilinear) so that its long side is at least ``side``; larger ones as they are."""
    scale = side / max(values.shape)
    if scale <= 1:
        return values
    height, width = (max(1, round(n * scale)) for n in values.shape)
    return bilinear(values, height, width)


def fit_long_side(values: np.ndarray, side: int) -> np.ndarray:
    """A (H, W) float array resized so that its long side is ``side`` (area averaging when shrinking, bilinear when
    enlarging); the same array when it already is."""
    scale = side / max(values.shape)
    if scale == 1:
        return values
    height, width = (max(1, round(n * scale)) for n in values.shape)
    return (shrink_by_area if scale < 1 else bilinear)(values, height, width)


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
