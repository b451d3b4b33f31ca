"""``python -m train synth``: a small dataset in the NIH layout whose labels a network can learn.

Each image is a chest-X-ray-like background (body, two dark lung fields, spine, ribs, noise). Each
finding it carries is drawn as that label's own pattern inside a random box, and the box is written
to ``BBox_List_2017.csv`` for the test images, so localization can be measured against the truth.
Patients never straddle the train_val / test lists, as in NIH's release.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from cxr.labels import CHESTXRAY14_LABELS
from train.data.nih import BBOX_LIST, NO_FINDING, SYNTH_MARKER, TEST_LIST, TRAIN_VAL_LIST, Box

DATA_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
NIH_SIDE_MM = 1024 * 0.143  # NIH's 1024 px images cover about 146 mm at 0.143 mm per pixel
IMAGES_PER_FOLDER = 10_000  # NIH's images_001 … images_012 hold about this many each
BOX_FRACTION = (0.28, 0.38)  # box side as a fraction of the image side
PATTERN_CONTRAST = 0.35  # brightness a pattern adds (or removes) at full strength


@dataclass(frozen=True)
class SynthConfig:
    """What to generate; saved as ``synthetic.json`` next to the data."""

    patients: int = 300
    max_images_per_patient: int = 3
    size: int = 256  # side of the square PNGs, in pixels
    prevalence: float = 0.15  # probability of each finding per image
    test_fraction: float = 0.2  # share of patients in test_list.txt
    seed: int = 0
    layout: str = "nested"  # "nested" (images_001/images/…) or "flat"


# Textures on box coordinates u, v in [-1, 1]; each returns where it is drawn (a boolean mask).
Pattern = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _radius(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v)


# Seven coarse textures, each drawn brighter (an opacity) or darker (a lucency) than the background:
# orientation, texture and polarity are what a convolutional network picks up first, so the labels
# are learnable from a few thousand images, even at 64 px input.
TEXTURES: dict[str, Pattern] = {
    "disk": lambda u, v: _radius(u, v) < 0.85,
    "horizontal stripes": lambda u, v: np.sin(np.pi * (v + 0.9) / 0.36) > 0,  # three bars inside the margin
    "vertical stripes": lambda u, v: np.sin(np.pi * (u + 0.9) / 0.36) > 0,
    "checkerboard": lambda u, v: np.cos(1.5 * np.pi * u) * np.cos(1.5 * np.pi * v) > 0,
    "hollow square": lambda u, v: np.maximum(abs(u), abs(v)) > 0.5,
    "rising stripes": lambda u, v: np.cos(1.5 * np.pi * (u + v)) > 0,
    "falling stripes": lambda u, v: np.cos(1.5 * np.pi * (u - v)) > 0,
}
# label -> (texture, +1 brighter / -1 darker)
PATTERNS: dict[str, tuple[str, int]] = {
    "Atelectasis": ("horizontal stripes", +1),
    "Cardiomegaly": ("disk", +1),
    "Effusion": ("vertical stripes", +1),
    "Infiltration": ("checkerboard", +1),
    "Mass": ("hollow square", +1),
    "Nodule": ("disk", -1),
    "Pneumonia": ("falling stripes", -1),
    "Pneumothorax": ("falling stripes", +1),
    "Consolidation": ("rising stripes", +1),
    "Edema": ("checkerboard", -1),
    "Emphysema": ("hollow square", -1),
    "Fibrosis": ("rising stripes", -1),
    "Pleural_Thickening": ("horizontal stripes", -1),
    "Hernia": ("vertical stripes", -1),
}


def pattern(label: str, side: int) -> np.ndarray:
    """(side, side) signed strength in [-1, 1] of a label's pattern, zero in a margin around it."""
    texture, sign = PATTERNS[label]
    v, u = np.mgrid[-1 : 1 : side * 1j, -1 : 1 : side * 1j]
    inside = np.maximum(abs(u), abs(v)) < 0.9  # a margin, so neighbouring boxes never touch
    return sign * (inside & TEXTURES[texture](u, v)).astype(np.float64)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A chest-radiograph-like (size, size) image in [0, 1]: bright body, dark lungs, spine and ribs."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    x = x + rng.uniform(-0.05, 0.05)
    y = y + rng.uniform(-0.05, 0.05)
    image = 0.08 + 0.47 * _soft(1 - (x / 0.92) ** 2 - (y / 1.05) ** 2, 0.08)  # body against the dark air
    for side in (-1, 1):
        lung = 1 - ((x - side * 0.4) / 0.3) ** 2 - ((y + 0.05) / 0.62) ** 2
        image -= 0.25 * _soft(lung, 0.15)
    image += 0.2 * _soft(0.1 - abs(x), 0.03) * _soft(0.9 - abs(y), 0.1)  # spine and mediastinum
    ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (4.5 * y + 0.9 * x**2 + rng.uniform(0, 1)))
    image += 0.06 * ribs * _soft(0.85 - abs(x), 0.1)
    image += 0.025 * rng.standard_normal((size, size))
    gain, offset = rng.uniform(0.85, 1.15), rng.uniform(-0.05, 0.05)
    return np.clip(image * gain + offset, 0.0, 1.0)


def _soft(value: np.ndarray, width: float) -> np.ndarray:
    """A smooth step from 0 (value << 0) to 1 (value >> 0) over about ``width``."""
    return 1.0 / (1.0 + np.exp(-value / width))


def draw_findings(
    image: np.ndarray, findings: tuple[str, ...], rng: np.random.Generator
) -> list[tuple[str, float, float, float, float]]:
    """Draw each finding's pattern into ``image`` (in place) at a random box; return (label, x, y, w, h)."""
    size = image.shape[0]
    placed: list[tuple[str, float, float, float, float]] = []
    for label in findings:
        side = int(rng.uniform(*BOX_FRACTION) * size)
        x0, y0 = _free_spot(rng, size, side, placed)
        strength = pattern(label, side) * PATTERN_CONTRAST * rng.uniform(0.8, 1.2)
        patch = image[y0 : y0 + side, x0 : x0 + side]
        patch[:] = np.clip(patch + strength, 0.0, 1.0)
        placed.append((label, float(x0), float(y0), float(side), float(side)))
    return placed


def _free_spot(
    rng: np.random.Generator, size: int, side: int, placed: list[tuple[str, float, float, float, float]]
) -> tuple[int, int]:
    """A top-left corner inside the chest area whose box does not overlap earlier ones (if one is found)."""
    low, high = int(0.08 * size), int(0.92 * size) - side
    for _ in range(50):
        x0, y0 = (int(v) for v in rng.integers(low, high, size=2))
        if all(x0 + side <= x or x + w <= x0 or y0 + side <= y or y + h <= y0 for _, x, y, w, h in placed):
            break
    return x0, y0


def generate(out: str | Path, config: SynthConfig = SynthConfig(), progress: bool = True) -> Path:
    """Write the dataset into ``out`` and return it; the same config always writes the same files."""
    if config.layout not in ("nested", "flat"):
        raise ValueError(f"layout must be 'nested' or 'flat', got {config.layout!r}.")
    if config.patients < 1 or config.max_images_per_patient < 1 or config.size < 64:
        raise ValueError("need at least 1 patient and 1 image each, and images of at least 64 px.")
    if not (0 <= config.prevalence <= 1 and 0 < config.test_fraction < 1):
        raise ValueError("prevalence must be in [0, 1] and test fraction in (0, 1).")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    n_test = round(config.test_fraction * config.patients)
    test_patients = set(rng.permutation(np.arange(1, config.patients + 1))[:n_test].tolist())
    entries, train_val, test, boxes = [], [], [], []
    spacing = NIH_SIDE_MM / config.size
    index = 0
    for patient in tqdm(range(1, config.patients + 1), desc="synth", unit="patient", disable=not progress):
        age, sex = int(rng.integers(18, 90)), str(rng.choice(["M", "F"]))
        for follow_up in range(int(rng.integers(1, config.max_images_per_patient + 1))):
            name = f"{patient:08d}_{follow_up:03d}.png"
            findings = tuple(label for label in CHESTXRAY14_LABELS if rng.random() < config.prevalence)
            image = background(rng, config.size)
            placed = draw_findings(image, findings, rng)
            folder = _image_folder(out, index, config.layout)
            Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / name)
            view = "PA" if rng.random() < 0.7 else "AP"
            labels = "|".join(findings) or NO_FINDING
            entries.append(
                f"{name},{labels},{follow_up},{patient},{age + follow_up},{sex},{view},"
                f"{config.size},{config.size},{spacing},{spacing}"
            )
            (test if patient in test_patients else train_val).append(name)
            if patient in test_patients:
                boxes += [Box(name, *box) for box in placed]
            index += 1
    _write_metadata(out, config, entries, train_val, test, boxes)
    return out


def _image_folder(out: Path, index: int, layout: str) -> Path:
    """NIH's nested layout (``images_001/images/``, 10,000 per folder) or everything in ``out``."""
    folder = out / f"images_{index // IMAGES_PER_FOLDER + 1:03d}" / "images" if layout == "nested" else out
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_metadata(
    out: Path, config: SynthConfig, entries: list[str], train_val: list[str], test: list[str], boxes: list[Box]
) -> None:
    (out / "Data_Entry_2017.csv").write_text("\n".join([DATA_ENTRY_HEADER, *entries]) + "\n", encoding="utf-8")
    (out / TRAIN_VAL_LIST).write_text("\n".join(train_val) + "\n", encoding="utf-8")
    (out / TEST_LIST).write_text("\n".join(test) + "\n", encoding="utf-8")
    with open(out / BBOX_LIST, "w", encoding="utf-8", newline="") as f:
        f.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")  # NIH's 9-field header over 6-field rows
        writer = csv.writer(f, lineterminator="\n")
        writer.writerows([b.image, b.label, b.x, b.y, b.w, b.h] for b in boxes)
    marker = {
        "generator": "python -m train synth",
        "config": asdict(config),
        "patterns": {
            label: f"{'bright' if sign > 0 else 'dark'} {texture}" for label, (texture, sign) in PATTERNS.items()
        },
        "images": len(entries),
    }
    (out / SYNTH_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _parser() -> argparse.ArgumentParser:
    defaults = SynthConfig()
    parser = argparse.ArgumentParser(
        prog="python -m train synth",
        description="Write a small synthetic dataset in the NIH ChestX-ray14 layout, with learnable labels "
        "(a distinct pattern per finding inside a known box) and BBox_List_2017.csv for the test images.",
    )
    parser.add_argument("out", type=Path, help="folder to write (created if missing)")
    parser.add_argument("--patients", type=int, default=defaults.patients, help="number of patients (default 300)")
    parser.add_argument(
        "--max-images-per-patient", type=int, default=defaults.max_images_per_patient, help="1 to N images each"
    )
    parser.add_argument("--size", type=int, default=defaults.size, help="image side in pixels (default 256)")
    parser.add_argument("--prevalence", type=float, default=defaults.prevalence, help="per-finding probability")
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction, help="patients in test")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--layout", choices=("nested", "flat"), default=defaults.layout, help="image folders")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of ``python -m train synth``."""
    args = _parser().parse_args(argv)
    config = SynthConfig(
        patients=args.patients,
        max_images_per_patient=args.max_images_per_patient,
        size=args.size,
        prevalence=args.prevalence,
        test_fraction=args.test_fraction,
        seed=args.seed,
        layout=args.layout,
    )
    try:
        out = generate(args.out, config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote a synthetic NIH-layout dataset to {out}")
    return 0
