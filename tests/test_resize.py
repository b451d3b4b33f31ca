"""cxr.resize equals OpenCV's cv2.resize (INTER_LINEAR, INTER_AREA), which the serving install no longer has."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxr.io import load_image
from cxr.resize import bilinear, shrink_by_area
from tests.conftest import NIH_512, NON_NIH_JPEG


def _opencv(values: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    return cv2.resize(values, (width, height), interpolation=interpolation)


@pytest.mark.parametrize(
    ("shape", "size"),
    [((8, 8), (512, 512)), ((8, 8), (1036, 1036)), ((12, 12), (385, 385)), ((40, 41), (500, 512)),
     ((300, 200), (512, 341)), ((100, 100), (37, 53)), ((1024, 1024), (512, 512))],
)  # fmt: skip
def test_bilinear_equals_opencv_inter_linear(shape, size) -> None:
    values = np.random.default_rng(0).random(shape, dtype=np.float32)
    ours = bilinear(values, *size)
    assert ours.shape == size and ours.dtype == np.float32
    # OpenCV's own code, which cxr.resize follows: within a float32 rounding.
    with _without_ipp():
        np.testing.assert_allclose(ours, _opencv(values, *size, cv2.INTER_LINEAR), rtol=0, atol=2e-7)
    # The wheel's default, Intel IPP, weighs the pixels a little differently (7e-6 measured).
    np.testing.assert_allclose(ours, _opencv(values, *size, cv2.INTER_LINEAR), rtol=0, atol=1e-5)


class _without_ipp:
    def __enter__(self) -> None:
        cv2.ipp.setUseIPP(False)

    def __exit__(self, *exc) -> None:
        cv2.ipp.setUseIPP(True)


@pytest.mark.parametrize("side", [3, 100, 333, 437, 512, 700, 1000])
@pytest.mark.parametrize("source", ["nih", "jpeg", "random"])
def test_shrink_by_area_equals_opencv_inter_area(source, side) -> None:
    values = {
        "nih": lambda: np.asarray(load_image(NIH_512[0]), np.float32),
        "jpeg": lambda: np.asarray(load_image(NON_NIH_JPEG), np.float32),  # 885 x 1036: no whole-number ratio
        "random": lambda: np.random.default_rng(1).random((777, 1301), dtype=np.float32),
    }[source]()
    scale = min(1.0, side / max(values.shape))
    height, width = (max(1, round(n * scale)) for n in values.shape)
    ours = shrink_by_area(values, height, width)
    assert ours.shape == (height, width) and ours.dtype == np.float32
    # Measured equal to the last bit on these sizes; float32 sums of a thousand pixels may differ by ~1e-6.
    np.testing.assert_allclose(ours, _opencv(values, height, width, cv2.INTER_AREA), rtol=0, atol=1e-6)


def test_shrink_by_area_refuses_to_enlarge() -> None:
    with pytest.raises(ValueError, match="cannot enlarge"):
        shrink_by_area(np.zeros((4, 4), np.float32), 5, 4)
