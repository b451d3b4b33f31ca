"""A generated corpus of bad, odd and hostile files for the decoder, the CLI and the live app.

Every case is built here from code (no hand-picked binaries). ``expect`` is ``"ok"`` when the file is
a legitimate image that must decode, ``"error"`` when the one clear :class:`InvalidImageError` is the
right answer. DICOM cases carry fake patient identifiers (``PATIENT_IDENTIFIERS``) that must never
surface anywhere.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from tests.conftest import DICOM_MONO2, NIH_512

PATIENT_IDENTIFIERS = {
    "PatientName": "Doe^Janet^Q",
    "PatientID": "PID-73519-SECRET",
    "PatientBirthDate": "19431107",
    "InstitutionName": "Saint Hypothetical Hospital",
    "AccessionNumber": "ACC-99821-XR",
    "ReferringPhysicianName": "Strange^Stephen",
    "StudyDate": "20240229",
}


@dataclass(frozen=True)
class Case:
    name: str  # file name as uploaded (may itself be hostile)
    data: bytes
    expect: str  # "ok" or "error"
    check: Callable[[np.ndarray], bool] | None = None  # extra property of a decoded result


def _png(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _gradient(size: int = 96, mode: str = "L") -> Image.Image:
    ramp = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size, 1))
    return Image.fromarray(ramp, "L").convert(mode)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height 8-bit gray pixels (a decompression bomb's header)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _dicom(pixels: np.ndarray | None, *, photometric: str = "MONOCHROME2", frames: int = 1, **extra) -> bytes:
    """An uncompressed DICOM carrying fake patient identifiers; ``pixels=None`` leaves out pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = extra.pop("transfer_syntax", ExplicitVRLittleEndian)
    ds = FileDataset("upload.dcm", {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    for keyword, value in PATIENT_IDENTIFIERS.items():
        setattr(ds, keyword, value)
    if pixels is not None:
        samples = 3 if pixels.ndim == 3 + (frames > 1) else 1
        ds.SamplesPerPixel = samples
        ds.PhotometricInterpretation = photometric
        ds.Rows, ds.Columns = pixels.shape[-3:-1] if samples == 3 else pixels.shape[-2:]
        ds.BitsAllocated = pixels.dtype.itemsize * 8
        ds.BitsStored = extra.pop("bits_stored", ds.BitsAllocated)
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        if samples == 3:
            ds.PlanarConfiguration = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        raw = np.ascontiguousarray(pixels).tobytes()
        ds.PixelData = encapsulate([raw]) if meta.TransferSyntaxUID.is_encapsulated else raw
    blob = extra.pop("private_blob", None)
    if blob is not None:
        ds.private_block(0x0009, "CXR TEST", create=True).add_new(0x10, "OB", blob)
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def identified_dicom() -> bytes:
    """A valid 16-bit windowed chest-X-ray-like DICOM full of (fake) patient identifiers."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((128, 128)) * 3000 + 500).astype(np.uint16)
    return _dicom(pixels, bits_stored=12, WindowCenter=2000, WindowWidth=3000)


def _is_range(lo: float, hi: float) -> Callable[[np.ndarray], bool]:
    return lambda a: lo <= float(a.min()) and float(a.max()) <= hi


def build_corpus() -> list[Case]:
    """All cases; about 40 kinds, each built fresh."""
    real_png = NIH_512[0].read_bytes()
    real_dicom = DICOM_MONO2.read_bytes()
    gray = _gradient()
    jpeg = _encode(gray, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    stored = np.zeros((64, 128), dtype=np.uint8)
    stored[:, :64] = 255  # stored landscape with a white left half; displayed portrait, white on top
    landscape = Image.fromarray(stored)
    frames = [_gradient(64), _gradient(64).rotate(90)]
    full16 = Image.fromarray(np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (96, 1)))
    twelve_bit = Image.fromarray(np.tile(np.linspace(0, 4095, 96).astype(np.uint16), (96, 1)))
    rgba = gray.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.full((96, 96), 128, dtype=np.uint8)))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("xray.png", real_png)
    dicom16 = np.tile(np.linspace(0, 4095, 96).astype(np.uint16), (96, 1))
    return [
        Case("empty.png", b"", "error"),
        Case("notes.png", b"This is not an image, just text renamed to .png\n" * 20, "error"),
        Case("page.png", b"<html><script>alert('x')</script><img src=x onerror=alert(1)></html>", "error"),
        Case("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "error"),
        Case("random.png", np.random.default_rng(1).bytes(4096), "error"),
        Case("truncated.png", real_png[: len(real_png) // 2], "error"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], "error"),
        Case("bad_crc.png", real_png[:40] + bytes([real_png[40] ^ 0xFF]) + real_png[41:], "error"),
        Case("one_pixel.png", _png(Image.new("L", (1, 1))), "error"),
        Case("sliver.png", _png(Image.new("L", (4000, 8))), "error"),
        Case("bomb_header.png", png_claiming_size(50_000, 50_000), "error"),
        Case("bomb_real.png", _png(Image.new("L", (7200, 7200)), compress_level=9), "error"),
        Case("archive.zip", archive.getvalue(), "error"),
        Case("archive_named.png", archive.getvalue(), "error"),
        Case("document.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "error"),
        Case("icon.ico", _encode(_gradient(48), "ICO"), "error"),
        Case("animated.gif", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), "error"),
        Case("animated.png", _png(frames[0], save_all=True, append_images=frames[1:]), "error"),
        Case("no_pixels.dcm", _dicom(None), "error"),
        Case("multiframe.dcm", _dicom(np.zeros((3, 64, 64), np.uint8), frames=3), "error"),
        Case(
            "undecodable.dcm",
            _dicom(np.zeros((64, 64), np.uint8), transfer_syntax="1.2.840.10008.1.2.4.100"),  # MPEG-2 video
            "error",
        ),
        Case("truncated.dcm", real_dicom[: len(real_dicom) // 2], "error"),
        Case("tiny.dcm", _dicom(np.zeros((2, 2), np.uint8)), "error"),
        # Found by tests/fuzz_decode.py: a file-meta element whose length fits no value of its VR.
        Case("bad_meta_length.dcm", b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x03\x00abc" + b"\x00" * 64, "error"),
        Case("garbage.dcm", b"\x00" * 128 + b"DICM" + np.random.default_rng(2).bytes(2000), "error"),
        # Legitimate, if unusual, images: each must decode to a sensible [0, 1] image.
        Case("real_nih.png", real_png, "ok", _is_range(0.0, 1.0)),
        Case("real_siim.dcm", real_dicom, "ok", lambda a: a.shape == (1024, 1024)),
        Case("gray.jpg", jpeg, "ok", lambda a: a.shape == (96, 96)),
        Case("full_range_16bit.png", _png(full16), "ok", lambda a: a.max() > 0.999 and a.min() < 1e-3),
        Case("twelve_bit_in_16.png", _png(twelve_bit), "ok", lambda a: a.max() > 0.999),
        Case("palette.png", _png(gray.convert("P")), "ok", lambda a: a[:, -1].mean() > 0.9),
        Case("cmyk.jpg", _encode(gray.convert("CMYK"), "JPEG"), "ok", lambda a: a.shape == (96, 96)),
        Case(
            "rotated_exif.jpg",
            _encode(landscape, "JPEG", exif=exif),
            "ok",
            lambda a: a.shape == (128, 64) and a[:60].mean() > 0.9 and a[68:].mean() < 0.1,
        ),
        Case("half_transparent.png", _png(rgba), "ok", lambda a: 0.45 < a.max() < 0.55),
        Case("rgb.png", _png(gray.convert("RGB")), "ok", lambda a: abs(a[:, -1].mean() - 1.0) < 0.01),
        Case("scan.tiff", _encode(full16, "TIFF"), "ok", lambda a: a.max() > 0.999),
        Case("photo.webp", _encode(gray, "WEBP", lossless=True), "ok", lambda a: a.shape == (96, 96)),
        Case("bitmap.bmp", _encode(gray, "BMP"), "ok", lambda a: a.shape == (96, 96)),
        Case("still.gif", _encode(gray, "GIF"), "ok", lambda a: a.shape == (96, 96)),
        Case("../../etc/passwd.png", real_png, "ok", _is_range(0.0, 1.0)),
        Case("rgb.dcm", _dicom(np.zeros((64, 64, 3), np.uint8) + 200, photometric="RGB"), "ok", _is_range(0.7, 0.9)),
        Case("windowed_16bit.dcm", identified_dicom(), "ok", _is_range(0.0, 1.0)),
        Case(
            "monochrome1.dcm",
            _dicom(dicom16, photometric="MONOCHROME1", bits_stored=12),
            "ok",
            lambda a: a[:, 0].mean() > 0.99 and a[:, -1].mean() < 0.01,
        ),
        Case("huge_header.dcm", _dicom(dicom16, bits_stored=12, private_blob=b"x" * 4_000_000), "ok"),
        Case("no_preamble.dcm", _dicom(dicom16, bits_stored=12)[132:], "ok", lambda a: a.shape == (96, 96)),
    ]
