"""The input contract: letterbox geometry, resize quality against PIL, normalisation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cxr.io import load_image
from cxr.preprocess import Letterbox, fit_to_square, normalize, preprocess
from tests.conftest import EXAMPLES, NIH_512, NON_NIH_JPEG, TINY_CONFIG


def test_downsizing_matches_pil_bilinear() -> None:
    """torch's antialiased bilinear is PIL's BILINEAR filter; checked on a real 1024 px radiograph."""
    image = load_image(EXAMPLES / "00000001_000.png")
    ours = fit_to_square(image, 512)
    reference = np.asarray(Image.fromarray(image, mode="F").resize((512, 512), Image.Resampling.BILINEAR))
    assert np.abs(ours - reference).max() < 2e-3


def test_downsized_nih_image_matches_the_published_512_copy() -> None:
    ours = fit_to_square(load_image(EXAMPLES / "00000001_000.png"), 512)
    published = load_image(NIH_512[0])  # torchxrayvision's 512 px copy of the same radiograph
    assert np.corrcoef(ours.ravel(), published.ravel())[0, 1] > 0.999
    assert np.abs(ours - published).mean() < 2 / 255


def test_non_square_images_are_letterboxed_not_cropped_or_stretched() -> None:
    image = np.ones((300, 600), dtype=np.float32)
    square = fit_to_square(image, 128)
    assert square.shape == (128, 128)
    assert square[:28].max() < 1e-6 and square[-28:].max() < 1e-6  # black bands above and below
    assert square[36:92].min() > 0.999  # the whole image width survives
    box = Letterbox(300, 600)
    assert (box.side, box.top, box.left) == (600, 150, 0)
    assert box.crop(np.zeros((600, 600))).shape == (300, 600)


def test_real_non_square_jpeg_keeps_its_aspect_ratio() -> None:
    image = load_image(NON_NIH_JPEG)  # 885 x 1036
    square = fit_to_square(image, 256)
    band = round((1036 - 885) / 2 * 256 / 1036)
    assert square[: band - 1].max() == 0.0 and square[-(band - 1) :].max() == 0.0
    assert square[band + 2 : -band - 2].mean() > 0.3


def test_normalize_replicates_gray_and_applies_mean_std() -> None:
    gray = torch.rand(2, 64, 64)
    x = normalize(gray, TINY_CONFIG)
    assert x.shape == (2, 3, 64, 64)
    for c in range(3):
        torch.testing.assert_close(x[:, c], (gray - TINY_CONFIG.mean[c]) / TINY_CONFIG.std[c])


def test_preprocess_takes_one_image_or_many() -> None:
    images = [load_image(p) for p in NIH_512]
    one = preprocess(images[0], TINY_CONFIG)
    many = preprocess(images, TINY_CONFIG)
    assert one.shape == (1, 3, 256, 256) and many.shape == (2, 3, 256, 256) and many.dtype == torch.float32
    torch.testing.assert_close(one[0], many[0])
