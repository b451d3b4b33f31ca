"""What the input check reads of the picture: its thumbnail, layout and gradient histograms, checked against
OpenCV and scikit-image; and a check fitted on other descriptors is refused by name."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.feature import hog

from cxr.input_check import (
    DESCRIPTOR_VERSION,
    THUMBNAIL,
    UNCHECKED,
    InputChecker,
    OutdatedInputCheckError,
    gradient_histograms,
    image_descriptors,
    layout,
    thumbnail,
)
from cxr.io import decode
from cxr.predictor import Predictor
from tests.conftest import NIH_512, ROOT

STARTER = ROOT / "cxr" / "starter"


@pytest.mark.parametrize("seed", range(4))
def test_gradient_histograms_equal_scikit_images_hog(seed: int) -> None:
    rng = np.random.default_rng(seed)
    picture = rng.random((THUMBNAIL, THUMBNAIL)).astype(np.float32) ** rng.uniform(0.5, 2)
    expected = hog(picture, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
    np.testing.assert_allclose(gradient_histograms(picture), expected, atol=1e-6)


def test_a_radiographs_thumbnail_and_hog_match_opencv_and_scikit_image() -> None:
    image = decode(NIH_512[0]).image
    thumb = thumbnail(image)
    np.testing.assert_allclose(thumb, cv2.resize(image, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA),
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(gradient_histograms(thumb), hog(thumb, 9, (8, 8), (2, 2), "L2-Hys"), atol=1e-6)
    small = image[:40, :50]  # smaller than the thumbnail: enlarged, as cv2.INTER_LINEAR does
    np.testing.assert_allclose(thumbnail(small), cv2.resize(small, (THUMBNAIL, THUMBNAIL)), atol=1e-5)
    assert np.isfinite(image_descriptors(np.zeros((20, 30), np.float32))).all()  # a blank, tiny frame too


def test_layout_measures_left_right_asymmetry() -> None:
    rng = np.random.default_rng(0)
    half = rng.random((THUMBNAIL, THUMBNAIL // 2)).astype(np.float32)
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)
    lopsided = np.concatenate([half, np.zeros_like(half)], axis=1)
    assert layout(symmetric)[-2:] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (layout(lopsided)[-2:] > 0.5).all()
    assert layout(symmetric)[:-2].mean() == pytest.approx(0.0, abs=1e-5)  # standardised: only the layout counts


def test_a_check_fitted_on_older_descriptors_is_refused_by_name(tmp_path: Path, caplog) -> None:
    config = json.loads((STARTER / "config.json").read_text())
    settings = config["input_check"]
    assert settings["descriptors"] == DESCRIPTOR_VERSION
    assert InputChecker.load(STARTER, settings).tensors["center"].shape[0] == 3 * 1024 + len(image_descriptors(
        decode(NIH_512[0]).image))  # fmt: skip
    shutil.copy(STARTER / "input_check.safetensors", tmp_path)
    old = {k: v for k, v in settings.items() if k != "descriptors"}  # written before descriptors had a version
    with pytest.raises(OutdatedInputCheckError, match=r"version 1, and this cxr computes version 2: fit it again"):
        InputChecker.load(tmp_path, old)
    # The folder still loads and answers, unchecked, so `python -m train input-check` can fit it again.
    shutil.copy(STARTER / "model.safetensors", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "input_check": old}))
    with caplog.at_level(logging.WARNING, logger="cxr.weights"):
        prediction = Predictor.from_pretrained(tmp_path, device="cpu").predict(NIH_512[0])
    assert prediction.input_check.kind == UNCHECKED and prediction.input_check.accepted
    assert "fit it again with `python -m train input-check" in caplog.text
