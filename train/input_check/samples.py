"""The images the input check is fitted and judged on, each with its class, group and held-out flag.

Classes (:data:`CLASSES`): frontal chest radiographs (NIH and ood-dev's non-NIH frontals), the same stored
inverted (negatives), laterals, other medical images (ood-dev's CT, MR, ultrasound and hand radiographs,
scikit-image's medical samples, pydicom's bundled CT, MR, NM and ultrasound test files) and non-medical
pictures (made by :mod:`train.input_check.negatives`, scikit-image's photographs and, when given, the distinct pictures
of Pillow's sdist ``Tests/images``). ood-dev is read from ``../shared``, never copied.

A group (NIH patient, ood-dev case, photograph, generator seed) is held out or not as a whole, by a
hash of its name, so no held-out image has a sibling in training. NIH's held-out images are patients of
the official test list. Held-out images are never augmented and never used to choose anything. Pillow's
test pictures are training images only: the tests cannot read them, so the held-out part stays one the
tests can run again (:func:`pillow_samples`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from cxr.io import DICOM_SUFFIXES, Decoded, InvalidImageError, decode
from train.input_check import negatives

CLASSES: tuple[str, ...] = ("frontal", "inverted", "lateral", "other_medical", "not_medical")
HELD_OUT_PERCENT = 30
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"  # ../shared/data beside the repository


@dataclass(frozen=True)
class Sample:
    """One image of the check's data: ``load()`` decodes it as :func:`cxr.io.decode` does an upload."""

    key: str
    label: str
    group: str
    source: str
    held_out: bool
    load: Callable[[], Decoded]


def held_out(group: str) -> bool:
    """Whether ``group`` belongs to the held-out part (a fixed hash, the same on every machine)."""
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100 < HELD_OUT_PERCENT


def _file(path: Path) -> Callable[[], Decoded]:
    return lambda: decode(path)


def _array(make: Callable[[], object]) -> Callable[[], Decoded]:
    return lambda: decode(np.asarray(make()))


def nih_samples(shared: Path = SHARED, train: int = 150, test: int = 40) -> list[Sample]:
    """One image per NIH patient: ``train`` from the train_val list, ``test`` (held out) from the test list."""
    folder = shared / "nih-cxr14" / "images"
    rows = list(csv.DictReader((folder / "SOURCES.csv").open()))
    seen: set[str] = set()
    picked = {"train_val": [], "test": []}
    for row in sorted(rows, key=lambda r: hashlib.sha256(r["image"].encode()).hexdigest()):
        if row["patient"] in seen:
            continue
        seen.add(row["patient"])
        picked[row["split"]].append(row)
    samples = []
    for split, limit in (("train_val", train), ("test", test)):
        for row in picked[split][:limit]:
            group = f"nih-{row['patient']}"
            samples.append(Sample(row["image"], "frontal", group, "NIH ChestX-ray14", split == "test",
                                  _file(folder / row["image"])))  # fmt: skip
    return samples


_CASE = re.compile(r"^(?P<prefix>[a-z]+)_(?P<case>[A-Za-z]*\d+)")


def ood_samples(shared: Path = SHARED) -> list[Sample]:
    """ood-dev's 195 images; a case (patient or study) is the group where the file name gives it."""
    folder = shared / "ood-dev"
    label_of = {"lateral": "lateral", "other-modality": "other_medical", "frontal-external": "frontal"}
    samples = []
    for row in csv.DictReader((folder / "SOURCES.csv").open()):
        name = Path(row["file"]).name
        match = _CASE.match(name)
        group = f"ood-{match['prefix']}-{match['case']}" if match else f"ood-{name}"
        label = label_of[row["class"]]
        samples.append(
            Sample(row["file"], label, group, row["source_dataset"], held_out(group), _file(folder / row["file"]))
        )
    return samples


def made_samples(per_kind: int = 40) -> list[Sample]:
    """Non-medical pictures: ``per_kind`` of each :data:`train.input_check.negatives.MAKERS` kind, plus photographs."""
    samples = []
    for kind in negatives.MAKERS:
        for seed in range(per_kind):
            group = f"made-{kind}-{seed}"
            make = _array(lambda kind=kind, seed=seed: negatives.make(kind, seed))
            samples.append(Sample(group, "not_medical", group, f"made: {kind}", held_out(group), make))
    photos = negatives.sample_photographs()
    for name, picture in photos.items():
        group = f"skimage-{name}"
        samples.append(Sample(group, "not_medical", group, "scikit-image sample", held_out(group),
                              _array(lambda p=picture: p)))  # fmt: skip
    medical = negatives.sample_photographs(negatives.SKIMAGE_MEDICAL)
    for name, picture in medical.items():
        group = f"skimage-{name}"
        samples.append(Sample(group, "other_medical", group, "scikit-image sample", held_out(group),
                              _array(lambda p=picture: p)))  # fmt: skip
    return samples


# pydicom's bundled test files that hold one distinct, decodable medical image each, by group (files of
# one group are the same picture). MR_small and CT_small (with MR_small's re-encodings) are always held out.
PYDICOM_FILES: dict[str, tuple[str, ...]] = {
    "CT_small": ("CT_small.dcm",),
    "MR_small": ("MR_small.dcm",),
    "CT-693": ("693_J2KI.dcm",),
    "CT-pixelrep": ("J2K_pixelrep_mismatch.dcm",),
    "NM": ("JPEG2000.dcm", "JPGExtended.dcm"),
    "MR-overlay": ("examples_overlay.dcm",),
    "US-palette": ("examples_palette.dcm",),
    "US-rgb": ("examples_rgb_color.dcm",),
    "US-jpeg2k": ("examples_jpeg2k.dcm",),
    "US-small": ("ExplVR_BigEnd.dcm",),
}
ALWAYS_HELD_OUT = ("CT_small", "MR_small")


def pydicom_samples() -> list[Sample]:
    """pydicom's bundled medical test images (other medical); CT_small and MR_small always held out."""
    from pydicom.data import get_testdata_file

    samples = []
    for group, names in PYDICOM_FILES.items():
        held = group in ALWAYS_HELD_OUT or held_out(f"pydicom-{group}")
        for name in names:
            path = Path(get_testdata_file(name))
            samples.append(Sample(name, "other_medical", f"pydicom-{group}", "pydicom test data", held, _file(path)))
    return samples


def pillow_samples(folder: Path) -> list[Sample]:
    """The distinct pictures of Pillow's sdist ``Tests/images`` (not medical), training images only.

    The folder holds many re-encodings of a few pictures (``hopper`` in every format): files whose 8x8
    average hash agrees are one group, and one file per group is kept. Files this project does not decode
    (other formats, animations, tiny icons) are passed over.
    """
    picked: dict[str, Sample] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() in DICOM_SUFFIXES:
            continue
        try:  # the upload path: anything it refuses is passed over
            image = decode(path).image
        except InvalidImageError:
            continue
        small = np.asarray(Image.fromarray((image * 255).astype(np.uint8)).resize((8, 8), Image.BILINEAR))
        group = "pillow-" + np.packbits(small > small.mean()).tobytes().hex()
        picked.setdefault(group, Sample(path.name, "not_medical", group, "Pillow sdist Tests/images", False,
                                        _file(path)))  # fmt: skip
    return list(picked.values())


def inverted(sample: Sample) -> Sample:
    """The frontal ``sample`` stored as a negative (grey levels inverted), in the same group."""

    def load() -> Decoded:
        original = sample.load()
        return Decoded((1.0 - original.image).astype(np.float32), original.upload)

    return Sample(f"{sample.key}:inverted", "inverted", sample.group, sample.source, sample.held_out, load)


def all_samples(
    shared: Path = SHARED, nih_train: int = 150, nih_test: int = 40, per_kind: int = 30, pillow: Path | None = None
) -> list[Sample]:
    """Every sample of every class (training and held out), in a fixed order; ``pillow``: Pillow's
    ``Tests/images`` folder, whose pictures join the training part."""
    frontal_and_ood = nih_samples(shared, nih_train, nih_test) + ood_samples(shared)
    frontals = [s for s in frontal_and_ood if s.label == "frontal"]
    # Every third frontal is also shown as a negative: enough to learn the look, a third of the cost.
    negatives_ = [inverted(s) for s in frontals[::3]]
    extra = pillow_samples(pillow) if pillow else []
    return frontal_and_ood + negatives_ + made_samples(per_kind) + pydicom_samples() + extra


# --- augmentation of training images ----------------------------------------------------------

BURN_INS = ("L", "R", "PA", "AP", "PORTABLE", "ERECT", "SUPINE", "12/03/2019", "x1", "DX")


def augment(image: np.ndarray, rng: np.random.Generator) -> Decoded:
    """A plausible re-take of a decoded image: crop, rotation, contrast, border, burnt-in text, resize, JPEG."""
    pil = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    w, h = pil.size
    keep = rng.uniform(0.75, 1.0)
    cw, ch = int(w * keep), int(h * rng.uniform(0.75, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    pil = pil.crop((x0, y0, x0 + cw, y0 + ch)).rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, expand=True)
    if rng.random() < 0.4:
        pad = int(min(pil.size) * rng.uniform(0.02, 0.12))
        framed = Image.new("L", (pil.width + 2 * pad, pil.height + 2 * pad), int(rng.choice([0, 255])))
        framed.paste(pil, (pad, pad))
        pil = framed
    if rng.random() < 0.5:
        draw = ImageDraw.Draw(pil)
        for _ in range(int(rng.integers(1, 4))):
            xy = (int(rng.integers(0, pil.width * 0.8)), int(rng.integers(0, pil.height * 0.9)))
            draw.text(xy, str(rng.choice(BURN_INS)), fill=255, font=ImageFont.load_default(int(pil.height * 0.04) + 8))
    side = int(rng.integers(256, 1025))
    scale = side / max(pil.size)
    pil = pil.resize((max(32, int(pil.width * scale)), max(32, int(pil.height * scale))), Image.BILINEAR)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    arr = np.clip(arr, 0, 1) ** rng.uniform(0.7, 1.4)
    buffer = io.BytesIO()
    Image.fromarray((arr * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=int(rng.integers(30, 95)))
    return decode(buffer.getvalue())


def restyle(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same picture as another site's equipment might deliver it, before :func:`augment` re-takes it.

    Hospitals post-process radiographs differently (histogram equalisation, edge enhancement, a tight or a
    wide window, noise) and frame them differently (a small patient on a large plate, collimated edges).
    Every class is restyled alike, so the head learns these looks as no sign of any class.
    """
    pil = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    look = int(rng.integers(4))
    if look == 0:
        pil = ImageOps.equalize(pil)
    elif look == 1:
        pil = pil.filter(ImageFilter.UnsharpMask(radius=float(rng.uniform(2, 12)), percent=int(rng.integers(80, 250))))
    elif look == 2:
        pil = ImageOps.autocontrast(pil, cutoff=float(rng.uniform(1, 8)))
    else:
        noisy = np.asarray(pil, np.float32) + rng.normal(0, rng.uniform(4, 14), (pil.height, pil.width))
        pil = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    if rng.random() < 0.5:  # a smaller subject on a larger plate, the plate's ground dark or light
        zoom = rng.uniform(0.6, 0.9)
        small = pil.resize((max(8, int(pil.width * zoom)), max(8, int(pil.height * zoom))), Image.BILINEAR)
        ground = int(rng.choice([0, 30, 200, 255]))
        plate = Image.new("L", pil.size, ground)
        plate.paste(small, (int(rng.integers(0, pil.width - small.width + 1)),
                            int(rng.integers(0, pil.height - small.height + 1))))  # fmt: skip
        pil = plate
    return np.asarray(pil, dtype=np.float32) / 255.0
