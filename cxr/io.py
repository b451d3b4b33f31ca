"""Decode chest X-rays from files, bytes, PIL images or arrays into one float32 grayscale form.

Every decoder ends in a 2-D float32 array in [0, 1] where larger means brighter (bone white, air
black). Anything that cannot become such an image raises :class:`InvalidImageError` with a sentence
meant for the person who uploaded it. DICOM files are read with only the pixel-module elements
parsed, so patient identifiers are never decoded, returned, logged or put into a message.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

MAX_FILE_BYTES = 64 * 2**20  # far above any plain radiograph; bounds memory per request
MAX_PIXELS = 50_000_000  # about 7000 x 7000; the largest detector plates are ~17 megapixels
MIN_SIDE = 32  # smaller than this cannot be a radiograph; refuse rather than upsample noise
# Decoders Pillow may use: raster formats only (no EPS/PostScript, which would run Ghostscript).
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
DICOM_SUFFIXES = (".dcm", ".dicom")
# The only DICOM elements parsed: what pixel decoding and display transforms need.
DICOM_PIXEL_TAGS = [
    "Modality", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames",
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence",
    "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    "FloatPixelData", "DoubleFloatPixelData", "PixelData",
]  # fmt: skip

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray

# Exceptions the third-party decoders raise on malformed data (Pillow and pydicom document no
# single type); each is turned into InvalidImageError at the boundary of this module.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, IndexError, KeyError,
                  TypeError, AttributeError, NotImplementedError, RuntimeError, OverflowError, MemoryError)  # fmt: skip


class InvalidImageError(ValueError):
    """The input is not a usable chest X-ray image; ``str(err)`` is a sentence for the user."""


@dataclass(frozen=True)
class Upload:
    """What the upload itself said before it became grey, for the input check (never an identifier).

    Attributes:
        colourfulness: Hasler and Süsstrunk's colourfulness M of the original pixels (0 for grey; about 15
            "slightly", 33 "moderately", 59 "quite" colourful on their scale), read on every fourth pixel.
        modality: a DICOM file's Modality code (``"CR"``, ``"DX"``, ``"CT"``, ``"MR"``, ``"US"``, ...);
            None for other files.
    """

    colourfulness: float = 0.0
    modality: str | None = None


@dataclass(frozen=True)
class Decoded:
    """A decoded image (float32 (H, W) in [0, 1], as :func:`load_image` returns) and what its upload said."""

    image: np.ndarray
    upload: Upload = Upload()


def load_image(source: ImageSource, name: str | None = None) -> np.ndarray:
    """Decode a chest X-ray into a float32 (H, W) array in [0, 1] (:func:`decode` without the upload's facts)."""
    return decode(source, name).image


def decode(source: ImageSource | Decoded, name: str | None = None) -> Decoded:
    """Decode a chest X-ray into a float32 (H, W) array in [0, 1], with what the upload said (:class:`Upload`).

    Args:
        source: a path, raw bytes, a binary file object, a PIL image or a numpy array (H, W) or
            (H, W, C). Files may be PNG or JPEG (8/16-bit, gray, RGB(A), palette, CMYK, EXIF-rotated),
            TIFF, BMP, WebP, single-frame GIF, or DICOM (any transfer syntax pydicom can decode).
        name: the original file name when ``source`` is bytes or a stream; its ``.dcm`` suffix
            marks DICOM files that lack the standard preamble.

    Raises:
        InvalidImageError: for anything that is not a single 2-D image of sensible size.
    """
    if isinstance(source, Decoded):
        return source
    if isinstance(source, np.ndarray):
        return _checked(_array_to_unit(source), Upload(colourfulness(source)))
    if isinstance(source, Image.Image):
        return _checked(_pil_to_unit(source), Upload(_pil_colourfulness(source)))
    if isinstance(source, (str, os.PathLike)):
        name = name or os.fspath(source)
        data = read_image_file(Path(source))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
    else:
        raise InvalidImageError(f"Cannot read an image from a {type(source).__name__}.")
    return _checked(decode_bytes(data, name))


def decode_bytes(data: bytes, name: str | None = None) -> Decoded:
    """Decode an encoded file's bytes (see :func:`decode`)."""
    if not data:
        raise InvalidImageError("The file is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise InvalidImageError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB.")
    has_preamble = data[128:132] == b"DICM"
    if has_preamble or (name or "").lower().endswith(DICOM_SUFFIXES):
        return _decode_dicom(data, force=not has_preamble)
    return _decode_pil(data)


def read_image_file(path: Path) -> bytes:
    """The bytes of an image file, or :class:`InvalidImageError` (missing, a folder, too large, unreadable)."""
    try:
        if not path.is_file():
            raise InvalidImageError("No such image file." if not path.exists() else "That is a folder, not an image.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidImageError(f"The file is larger than {MAX_FILE_BYTES // 2**20} MB.")
        return path.read_bytes()
    except OSError as err:
        raise InvalidImageError(f"The file could not be read ({err.strerror or type(err).__name__}).") from None


def _check_dimensions(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise InvalidImageError(
            f"The image is {width} x {height} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels accepted."
        )
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(
            f"The image is only {width} x {height} pixels; a chest X-ray needs at least {MIN_SIDE} on each side."
        )


def _checked(image: np.ndarray | Decoded, upload: Upload = Upload()) -> Decoded:
    if isinstance(image, Decoded):
        image, upload = image.image, image.upload
    _check_dimensions(image.shape[1], image.shape[0])
    return Decoded(np.ascontiguousarray(image, dtype=np.float32), upload)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Süsstrunk's (2003) colourfulness M of an (H, W, 3+) array, 0 for grey; on every fourth pixel.

    M = sqrt(std(rg)² + std(yb)²) + 0.3 sqrt(mean(rg)² + mean(yb)²) with rg = R - G and yb = (R + G) / 2 - B
    on the 0-255 scale (integer data scaled by its full scale).
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] < 3 or arr.size == 0:
        return 0.0
    scale = _integer_full_scale(arr) or max(float(np.nanmax(arr[..., :3])), 1e-6)
    grid = arr[::4, ::4, :3].astype(np.float64) * (255.0 / scale)
    r, g, b = grid[..., 0], grid[..., 1], grid[..., 2]
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _pil_colourfulness(img: Image.Image) -> float:
    """:func:`colourfulness` of a PIL image; grey modes are 0 without converting anything."""
    if img.mode in ("1", "L", "LA", "La", "I", "F") or img.mode.startswith("I;16"):
        return 0.0
    return colourfulness(np.asarray(img.convert("RGB")))


# --- PNG, JPEG and other raster formats (Pillow) ---------------------------------------------


def _decode_pil(data: bytes) -> Decoded:
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as img:
            _check_dimensions(*img.size)  # header only: refuse decompression bombs before decoding
            if getattr(img, "n_frames", 1) > 1:
                raise InvalidImageError(
                    "The file holds several frames (an animation or multi-page file); upload one still image."
                )
            upright = ImageOps.exif_transpose(img)
            return Decoded(_pil_to_unit(upright), Upload(_pil_colourfulness(upright)))
    except InvalidImageError:
        raise
    except UnidentifiedImageError:
        raise InvalidImageError(
            "The file is not a recognised image: upload a PNG, JPEG or DICOM (.dcm) chest X-ray."
        ) from None
    except Image.DecompressionBombError:
        raise InvalidImageError(f"The image has more than {MAX_PIXELS // 1_000_000} megapixels.") from None
    except _DECODE_ERRORS as err:
        message = f"The image file is damaged or truncated and cannot be decoded ({_short(err)})."
        raise InvalidImageError(message) from None


_UNIT_OF_UINT8 = np.arange(256, dtype=np.float32) / 255.0  # 8-bit gray level -> [0, 1], as float32 division gives


def _pil_to_unit(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _array_to_unit(np.asarray(img))
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        # Transparent areas become black, the colour of air on a radiograph.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    gray = img if img.mode == "L" else img.convert("L")
    # A table lookup instead of converting and dividing a million pixels: the same float32 values, ~10x faster.
    return np.take(_UNIT_OF_UINT8, np.asarray(gray))


def _array_to_unit(arr: np.ndarray) -> np.ndarray:
    """Scale an integer or float array, gray (H, W) or colour (H, W, C), to float32 gray [0, 1]."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        scale = _integer_full_scale(arr)
        gray = arr[..., 0] if arr.shape[2] == 1 else _luma(arr[..., :3])
        return (gray / scale).astype(np.float32) if scale else _min_max(gray)
    if arr.ndim != 2:
        raise InvalidImageError(f"Expected a 2-D grayscale or colour image, got an array of shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidImageError(f"Cannot use pixel values of type {arr.dtype}.")
    scale = _integer_full_scale(arr)
    return (arr / scale).astype(np.float32) if scale else _min_max(arr)


def _integer_full_scale(arr: np.ndarray) -> float | None:
    """The value that means full white for unsigned integer pixels; None for other types.

    16-bit files often hold 10-14 significant bits: scale by the bit depth the data uses, so a
    12-bit image spans [0, 1] like a full-range one. 8-bit data is always divided by 255.
    """
    if arr.dtype == np.bool_:
        return 1.0
    if not np.issubdtype(arr.dtype, np.integer) or arr.size == 0 or arr.min() < 0:
        return None
    if arr.dtype == np.uint8:
        return 255.0
    return float(2 ** max(8, int(arr.max()).bit_length()) - 1)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, the weights Pillow's ``convert('L')`` uses."""
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _min_max(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        raise InvalidImageError("The image holds no finite pixel values.")
    low, high = arr[finite].min(), arr[finite].max()
    if low >= 0.0 and high <= 1.0 and arr.dtype.kind == "f" and finite.all():
        return arr.astype(np.float32)
    scaled = (np.where(finite, arr, low) - low) / (high - low) if high > low else np.zeros_like(arr)
    return scaled.astype(np.float32)


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]


# --- DICOM (pydicom) ------------------------------------------------------------------------


def _decode_dicom(data: bytes, force: bool) -> Decoded:
    # Messages below never include element values, and `from None` keeps pydicom's own messages
    # (which may quote values) out of tracebacks and logs.
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force, specific_tags=DICOM_PIXEL_TAGS)
    except (InvalidDicomError, BytesLengthException, *_DECODE_ERRORS):
        raise InvalidImageError("The DICOM file is damaged or not a DICOM file and cannot be read.") from None
    try:
        return _dicom_pixels(ds)
    except InvalidImageError:
        raise
    except (BytesLengthException, *_DECODE_ERRORS):
        raise InvalidImageError(_undecodable_message(ds)) from None


def _dicom_pixels(ds: pydicom.Dataset) -> Decoded:
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InvalidImageError("The DICOM file holds no image: it has no pixel data, or it is cut short.")
    if "Rows" not in ds or "Columns" not in ds:
        raise InvalidImageError("The DICOM file does not say how large its image is (Rows/Columns missing).")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise InvalidImageError(f"The DICOM file holds {frames} frames; upload a single chest X-ray image.")
    _check_dimensions(int(ds.Columns), int(ds.Rows))
    samples = int(ds.get("SamplesPerPixel") or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    pixels = ds.pixel_array
    if pixels.ndim != (2 if samples == 1 else 3):
        raise InvalidImageError(f"The DICOM image is not a single 2-D image (array shape {pixels.shape}).")
    # The Modality code (CT, MR, US, CR, DX, ...) is equipment metadata, not an identifier.
    modality = str(ds.get("Modality") or "").strip().upper()[:16] or None
    if samples != 1:  # colour: pydicom already converted YBR to RGB
        return Decoded(_array_to_unit(pixels), Upload(colourfulness(pixels), modality))
    values = apply_modality_lut(pixels, ds)
    has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
    if has_voi:
        values = apply_voi_lut(values, ds)
    plain_unsigned = not has_voi and values is pixels and not int(ds.get("PixelRepresentation", 0))
    if plain_unsigned:
        bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
        image = (pixels.astype(np.float64) / (2**bits - 1)).clip(0, 1).astype(np.float32)
    else:
        image = _min_max(np.asarray(values))
    if photometric == "MONOCHROME1":  # MONOCHROME1: low values are white; flip to the usual look
        image = 1.0 - image
    return Decoded(image, Upload(0.0, modality))


def _undecodable_message(ds: pydicom.Dataset) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    known = syntax is not None and syntax.is_transfer_syntax
    what = f"its transfer syntax ({syntax.name})" if known else "its encoding"
    return f"The DICOM image cannot be decoded here: {what} is not supported or the pixel data is damaged."
