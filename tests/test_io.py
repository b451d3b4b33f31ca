"""Decoding: real radiographs in every supported form, and one clear error for everything else."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cxr.io import MAX_FILE_BYTES, InvalidImageError, load_image
from tests.bad_inputs import PATIENT_IDENTIFIERS, build_corpus, identified_dicom
from tests.conftest import DICOM_MONO1, DICOM_MONO2, NIH_512, NIH_EXAMPLES, NIH_RGBA, NON_NIH_JPEG, SHARED_DATA

CORPUS = build_corpus()
SHARED_SAMPLES = sorted((SHARED_DATA / "samples").glob("*/*"))  # all 34 real images, where ../shared exists


@pytest.mark.parametrize(
    "path",
    [*NIH_512, *NIH_EXAMPLES, NIH_RGBA, NON_NIH_JPEG, DICOM_MONO2, DICOM_MONO1, *SHARED_SAMPLES],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_real_samples_decode_to_sensible_grayscale(path) -> None:
    image = load_image(path)
    assert image.dtype == np.float32 and image.ndim == 2 and image.flags.c_contiguous
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.max() - image.min() > 0.8  # real radiographs use most of the range
    assert 0.25 < image.mean() < 0.8


def test_nih_png_is_exactly_its_8bit_values() -> None:
    expected = np.asarray(Image.open(NIH_512[0]), dtype=np.float32) / 255
    np.testing.assert_array_equal(load_image(NIH_512[0]), expected)


def test_rgba_nih_png_equals_its_gray_channel() -> None:
    rgba = np.asarray(Image.open(NIH_RGBA))
    np.testing.assert_array_equal(load_image(NIH_RGBA), rgba[..., 0].astype(np.float32) / 255)


def test_monochrome1_is_inverted_relative_to_its_monochrome2_twin() -> None:
    mono2, mono1 = load_image(DICOM_MONO2), load_image(DICOM_MONO1)
    assert mono2.shape == mono1.shape == (1024, 1024)
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)


def test_jpeg_dicom_matches_its_decoded_8bit_pixels() -> None:
    """The SIIM file is JPEG Baseline: pixels are the decoded 8-bit values / 255, with no stretch."""
    import pydicom

    pixels = pydicom.dcmread(DICOM_MONO2).pixel_array
    assert pixels.dtype == np.uint8
    np.testing.assert_allclose(load_image(DICOM_MONO2), pixels / 255.0, atol=1e-6)


def test_every_source_form_gives_the_same_image() -> None:
    path = NIH_512[1]
    data = path.read_bytes()
    reference = load_image(path)
    pil = Image.open(path)
    for source in (str(path), data, bytearray(data), memoryview(data), io.BytesIO(data), pil, np.asarray(pil)):
        np.testing.assert_array_equal(load_image(source), reference)


@pytest.mark.parametrize("case", [c for c in CORPUS if c.expect == "error"], ids=lambda c: c.name)
def test_bad_input_raises_the_one_clear_error(case) -> None:
    with pytest.raises(InvalidImageError) as info:
        load_image(case.data, name=case.name)
    message = str(info.value)
    assert message.endswith(".") and 10 < len(message) < 240 and "Traceback" not in message


@pytest.mark.parametrize("case", [c for c in CORPUS if c.expect == "ok"], ids=lambda c: c.name)
def test_odd_but_valid_input_decodes(case) -> None:
    image = load_image(case.data, name=case.name)
    assert image.dtype == np.float32 and image.ndim == 2
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert case.check is None or case.check(image)


def test_corpus_is_broad() -> None:
    assert len({c.name for c in CORPUS if c.expect == "error"}) >= 15
    assert len(CORPUS) >= 30


def test_oversized_file_is_refused_before_reading(tmp_path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(InvalidImageError, match="larger than"):
        load_image(big)
    with pytest.raises(InvalidImageError, match="No such image file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InvalidImageError, match="folder"):
        load_image(tmp_path)


def test_postscript_is_never_handed_to_ghostscript() -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    with pytest.raises(InvalidImageError, match="not a recognised image"):
        load_image(eps, name="x.eps")


def test_dicom_identifiers_never_reach_errors_or_results(caplog, capsys) -> None:
    data = identified_dicom()
    image = load_image(data, name="study.dcm")
    assert image.shape == (128, 128)
    broken = data[: len(data) - 5000]  # cut into the pixel data
    with pytest.raises(InvalidImageError) as info:
        load_image(broken, name="study.dcm")
    shown = str(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    captured = capsys.readouterr()
    for value in PATIENT_IDENTIFIERS.values():
        for text in (shown, caplog.text, captured.out, captured.err):
            assert value not in text and value.split("^")[0] not in text


def test_arrays_are_scaled_by_their_type() -> None:
    assert load_image(np.full((64, 64), 255, np.uint8)).max() == 1.0
    twelve = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (64, 1))
    assert load_image(twelve).max() == pytest.approx(4032 / 4095)
    floats = np.linspace(-3, 5, 64 * 64).reshape(64, 64)
    scaled = load_image(floats)
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    with pytest.raises(InvalidImageError, match="shape"):
        load_image(np.zeros((4, 64, 64, 2)))
