"""Non-medical pictures made on the spot, for the input check's outlier exposure.

Each maker draws one grey or colour picture from a seeded generator: rendered documents, screenshots of
text and windows, charts, drawings, noise and blank frames. Together with scikit-image's bundled sample
photographs (:func:`sample_photographs`) they are the "not a medical image" class; none of them is a
radiograph, and none comes from a source with use restrictions, so tests may write them anywhere.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

WORDS = (  # noqa: SIM905 (a word list reads better as text)
    "the patient report page results analysis method table figure summary data value total order invoice "
    "meeting project review chapter section model account number date name address phone email update "
    "system version download install settings window file edit view help open save print close cancel"
).split()

# scikit-image samples that are photographs, drawings or text (not medical); the medical ones
# (retina, cell, immunohistochemistry, microaneurysms, shepp_logan_phantom) go to the other-medical class.
SKIMAGE_PHOTOS = (
    "astronaut", "camera", "cat", "chelsea", "clock", "coffee", "coins", "horse", "hubble_deep_field",
    "moon", "rocket", "brick", "grass", "gravel", "page", "text", "logo", "colorwheel",
)  # fmt: skip
SKIMAGE_MEDICAL = ("retina", "cell", "immunohistochemistry", "microaneurysms", "shepp_logan_phantom")


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, size=n))


def document(rng: np.random.Generator) -> Image.Image:
    """A page of text lines, sometimes with a heading and a boxed table."""
    w, h = int(rng.integers(400, 900)), int(rng.integers(500, 1100))
    ink, paper = (int(rng.integers(0, 80)), int(rng.integers(200, 256)))
    img = Image.new("L", (w, h), paper)
    draw = ImageDraw.Draw(img)
    size = int(rng.integers(11, 26))
    y = int(rng.integers(10, 60))
    draw.text((20, y), _sentence(rng, 3).title(), fill=ink, font=_font(size * 2))
    y += size * 3
    while y < h - size:
        draw.text((int(rng.integers(15, 40)), y), _sentence(rng, int(rng.integers(3, 12))), fill=ink, font=_font(size))
        y += int(size * rng.uniform(1.3, 2.0))
        if rng.random() < 0.05:
            draw.rectangle((20, y, w - 20, y + 4 * size), outline=ink, width=2)
            y += 5 * size
    return img


def screenshot(rng: np.random.Generator) -> Image.Image:
    """A desktop window: title bar, side panel, buttons and text, in light or dark theme, in colour."""
    w, h = int(rng.integers(640, 1400)), int(rng.integers(400, 900))
    dark = rng.random() < 0.5
    bg = tuple(int(v) for v in (rng.integers(20, 60, 3) if dark else rng.integers(220, 256, 3)))
    fg = (230, 230, 230) if dark else (20, 20, 20)
    img = Image.new("RGB", (w, h), bg)
    draw = ImageDraw.Draw(img)
    accent = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.rectangle((0, 0, w, 30), fill=accent)
    draw.text((10, 6), _sentence(rng, 3), fill=(255, 255, 255), font=_font(16))
    panel = int(rng.integers(120, 260))
    draw.rectangle((0, 30, panel, h), fill=tuple(max(0, c - 15) for c in bg))
    for i in range(int(rng.integers(4, 12))):
        draw.text((10, 45 + 28 * i), _sentence(rng, 2), fill=fg, font=_font(14))
    y = 45
    while y < h - 30:
        if rng.random() < 0.2:
            draw.rounded_rectangle((panel + 20, y, panel + 140, y + 26), radius=6, fill=accent)
            draw.text((panel + 30, y + 5), _sentence(rng, 1), fill=(255, 255, 255), font=_font(14))
        else:
            draw.text((panel + 20, y), _sentence(rng, int(rng.integers(4, 14))), fill=fg, font=_font(15))
        y += 32
    return img


def chart(rng: np.random.Generator) -> Image.Image:
    """A matplotlib line, bar, scatter or pie chart with labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(rng.uniform(4, 8), rng.uniform(3, 6)), dpi=100)
    kind = rng.integers(4)
    x = np.arange(int(rng.integers(5, 40)))
    if kind == 0:
        for _ in range(int(rng.integers(1, 4))):
            ax.plot(x, np.cumsum(rng.normal(size=x.size)))
    elif kind == 1:
        ax.bar(x, rng.random(x.size))
    elif kind == 2:
        ax.scatter(rng.normal(size=200), rng.normal(size=200), s=8)
    else:
        ax.pie(rng.random(int(rng.integers(3, 7))))
    ax.set_title(_sentence(rng, 3))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def drawing(rng: np.random.Generator) -> Image.Image:
    """Random strokes, circles and polygons on a plain background, as a child or a whiteboard would draw."""
    w, h = int(rng.integers(300, 900)), int(rng.integers(300, 900))
    img = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(150, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 40))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        shape = rng.integers(3)
        if shape == 0:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 12)))
        elif shape == 1:
            draw.ellipse((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), outline=colour, width=3)
        else:
            draw.polygon([(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)], fill=colour)
    return img


def noise(rng: np.random.Generator) -> Image.Image:
    """Uniform, Gaussian or blurred (cloud-like) noise, or a blank or gradient frame."""
    w, h = int(rng.integers(200, 1024)), int(rng.integers(200, 1024))
    kind = rng.integers(5)
    if kind == 0:
        arr = rng.random((h, w))
    elif kind == 1:
        arr = np.clip(rng.normal(0.5, rng.uniform(0.05, 0.3), (h, w)), 0, 1)
    elif kind == 2:
        small = Image.fromarray((rng.random((h // 16 + 1, w // 16 + 1)) * 255).astype(np.uint8))
        blurred = small.resize((w, h), Image.BICUBIC).filter(ImageFilter.GaussianBlur(rng.uniform(2, 12)))
        return blurred
    elif kind == 3:
        arr = np.full((h, w), rng.random())
    else:
        arr = np.linspace(0, 1, w)[None, :].repeat(h, 0)
        arr = arr if rng.random() < 0.5 else arr.T[:h, :w] if h == w else np.rot90(arr, 2)
    return Image.fromarray((arr * 255).astype(np.uint8))


MAKERS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "document": document,
    "screenshot": screenshot,
    "chart": chart,
    "drawing": drawing,
    "noise": noise,
}


def make(kind: str, seed: int) -> Image.Image:
    """The picture of ``kind`` (a key of :data:`MAKERS`) drawn with ``seed``; the same every time."""
    return MAKERS[kind](np.random.default_rng([seed, list(MAKERS).index(kind)]))


def sample_photographs(names: tuple[str, ...] = SKIMAGE_PHOTOS) -> dict[str, np.ndarray]:
    """scikit-image's bundled sample pictures by name (they ship in its wheel; no download)."""
    import skimage.data

    return {name: np.asarray(getattr(skimage.data, name)()) for name in names}
