"""render_overlay and its colormaps equal the OpenCV and matplotlib code they replace, which the Space lacks."""

from __future__ import annotations

import subprocess
import sys

import cv2
import matplotlib
import numpy as np
import pytest

from cxr.io import load_image
from cxr.overlay import _divide_by_255, _to_uint8, at_least, colormap_lut, fit_long_side, render_overlay
from tests.conftest import NIH_512, NON_NIH_JPEG, ROOT


def opencv_overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float, colormap: str) -> np.ndarray:
    """render_overlay as it was (before issue 18), without the caption: OpenCV's uint8 arithmetic."""
    lut = np.rint(matplotlib.colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, None, :3] * 255).astype(np.uint8)
    scale = 512 / max(image.shape)
    if scale > 1:
        size = tuple(max(1, round(n * scale)) for n in image.shape[::-1])
        image, heatmap = (cv2.resize(a, size, interpolation=cv2.INTER_LINEAR) for a in (image, heatmap))
    level = cv2.convertScaleAbs(heatmap.astype(np.float32), alpha=255.0)
    color = cv2.applyColorMap(level, lut)
    weight = cv2.merge([cv2.LUT(level, np.rint(opacity * np.arange(256)).astype(np.uint8))] * 3)
    gray = cv2.merge([cv2.convertScaleAbs(image.astype(np.float32), alpha=255.0)] * 3)
    return cv2.add(cv2.multiply(gray, 255 - weight, scale=1 / 255), cv2.multiply(color, weight, scale=1 / 255))


@pytest.mark.parametrize("name", ["jet", "viridis", "inferno"])
def test_colormaps_equal_matplotlibs(name) -> None:
    expected = np.rint(matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)
    np.testing.assert_array_equal(colormap_lut(name), expected)


def test_jet_is_built_in_and_other_colormaps_need_matplotlib() -> None:
    """Without matplotlib (the Space), "jet" still renders and another name says which extra to install."""
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"  # an import of it now fails as if it were not installed
        "from cxr.overlay import colormap_lut\n"
        "assert colormap_lut('jet').shape == (256, 3)\n"
        "try:\n    colormap_lut('viridis')\nexcept ImportError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "colormap 'viridis' needs matplotlib: pip install \"cxr[train]\"" in result.stdout
    with pytest.raises(ValueError, match="Unknown colormap 'nope'"):
        colormap_lut("nope")


def test_integer_arithmetic_equals_opencvs() -> None:
    a, b = (x.astype(np.uint8).ravel() for x in np.meshgrid(np.arange(256), np.arange(256)))
    expected = cv2.multiply(a, b, scale=1 / 255).ravel()
    np.testing.assert_array_equal(_divide_by_255(a.astype(np.uint16) * b), expected)
    values = np.random.default_rng(0).random(100_000, dtype=np.float32) * 1.2
    values[:512] = (np.arange(512) + 0.5) / 255  # halves: rounded to even as OpenCV does
    np.testing.assert_array_equal(_to_uint8(values), cv2.convertScaleAbs(values, alpha=255.0).ravel())


@pytest.mark.parametrize("opacity", [0.0, 0.35, 0.5, 1.0])
@pytest.mark.parametrize("colormap", ["jet", "viridis"])
def test_render_overlay_equals_the_opencv_rendering(opacity, colormap) -> None:
    image = np.asarray(load_image(NIH_512[0]), np.float32)
    heat = np.random.default_rng(2).random((64, 64), dtype=np.float32)
    heatmap = cv2.resize(heat, image.shape[::-1], interpolation=cv2.INTER_LINEAR)  # a smooth map with every level
    np.testing.assert_array_equal(
        render_overlay(image, heatmap, opacity=opacity, colormap=colormap),
        opencv_overlay(image, heatmap, opacity, colormap),
    )


def test_small_images_enlarged_as_opencv_did() -> None:
    """at_least's bilinear is OpenCV's (with IPP) to ~4e-6, so a few pixels' levels round the other way: 1.1e-4 of
    them measured, whose colour then moves by one heat level's step of jet (up to 4 levels) times the opacity."""
    image = np.asarray(load_image(NON_NIH_JPEG), np.float32)[::7, ::7]  # 127 x 148: drawn enlarged to 512
    heatmap = np.random.default_rng(3).random(image.shape, dtype=np.float32)
    ours = render_overlay(image, heatmap, opacity=0.6)
    expected = opencv_overlay(image, heatmap, 0.6, "jet")
    assert ours.shape == expected.shape == (439, 512, 3)
    difference = np.abs(ours.astype(int) - expected)
    assert difference.max() <= 3 and difference.any(axis=2).mean() < 5e-4
    for values in (image, heatmap):
        expected = cv2.resize(values, (512, 439), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(at_least(values, 512), expected, rtol=0, atol=1e-5)


def test_fit_long_side_equals_opencv() -> None:
    image = np.asarray(load_image(NON_NIH_JPEG), np.float32)  # 885 x 1036
    expected = cv2.resize(image, (512, 437), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(fit_long_side(image, 512), expected, rtol=0, atol=1e-6)
    assert fit_long_side(image, 1036) is image


def test_serving_imports_neither_opencv_nor_matplotlib() -> None:
    """The Space installs neither (issue 18): importing the app and the library pulls in neither."""
    script = "import sys, app, cxr, cxr.cli; print(sorted({'cv2', 'matplotlib'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
