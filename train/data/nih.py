"""The NIH ChestX-ray14 index: Data_Entry records, the official split, boxes, and where the images are.

Everything here reads metadata only (no pixels). The official split is the only test set:
``test_list.txt`` is never trained on, and validation is carved out of ``train_val_list.txt`` by
patient, so no patient appears in two splits.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr.labels import CHESTXRAY14_LABELS

DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")  # v2020 (corrected) preferred
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
BBOX_LIST = "BBox_List_2017.csv"
SYNTH_MARKER = "synthetic.json"  # written by `python -m train synth`; marks a dataset as not NIH's
NO_FINDING = "No Finding"
SPLIT_FORMAT = 1
SPLIT_FILE = "split.json"  # beside a run's weights: the split it trained, validated and is tested on
# NIH names every image PPPPPPPP_FFF.png (patient id, follow-up number).
IMAGE_NAME = re.compile(r"^\d{8}_\d{3}\.png$")
# The bounding-box file spells one finding differently from Data_Entry.
BOX_LABEL_ALIASES = {"Infiltrate": "Infiltration"}


class DataError(ValueError):
    """Dataset files that are missing or malformed; the message says which file and what."""


@dataclass(frozen=True)
class Record:
    """One row of Data_Entry: an image and what is known about it."""

    image: str  # "00000001_000.png"
    patient_id: int
    labels: tuple[str, ...]  # findings in the CHESTXRAY14 vocabulary; () for "No Finding"
    age: int | None
    sex: str  # "M" or "F"
    view: str  # "PA" or "AP"


@dataclass
class Split:
    """Records of the three splits, each in the order of its list file.

    ``subset`` is None for the whole release; for a split restricted to the images at hand
    (``--available-only``) it records how many of each official list were used, e.g.
    ``{"train_val": {"used": 632, "official": 86524}, "test": {"used": 106, "official": 25596}}``.
    """

    train: list[Record]
    val: list[Record]
    test: list[Record]
    subset: dict[str, dict[str, int]] | None = None

    def parts(self) -> list[tuple[str, list[Record]]]:
        """(name, records) for train, val and test."""
        return [("train", self.train), ("val", self.val), ("test", self.test)]


@dataclass(frozen=True)
class Box:
    """A finding's bounding box in original-image pixels (x, y = top-left corner)."""

    image: str
    label: str
    x: float
    y: float
    w: float
    h: float


def _open_text(path: Path) -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def find_data_entry(data_dir: str | Path) -> Path:
    """Path of the Data_Entry csv in ``data_dir`` (v2020 preferred; plain or ``.gz``)."""
    data_dir = Path(data_dir)
    for name in DATA_ENTRY_NAMES:
        for candidate in (data_dir / name, data_dir / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise DataError(f"No {' or '.join(DATA_ENTRY_NAMES)} (or .gz) in {data_dir}.")


def read_data_entry(path: str | Path) -> list[Record]:
    """Read Data_Entry_2017(_v2020).csv[.gz] into records, in file order.

    Accepts both published variants: ``Patient Gender`` or ``Patient Sex`` in the header, and
    lines with or without trailing commas. "No Finding" becomes the empty label tuple.
    """
    path = Path(path)
    with _open_text(path) as f:
        rows = csv.reader(f)
        header = [name.strip() for name in next(rows, [])]
        columns = _column_indices(header, path)
        records = []
        for line, row in enumerate(rows, start=2):
            if not any(cell.strip() for cell in row):
                continue
            try:
                records.append(_record(row, columns))
            except (IndexError, ValueError) as err:
                raise DataError(f"{path.name} line {line}: {err}") from None
    return records


def _column_indices(header: list[str], path: Path) -> dict[str, int]:
    sex_column = "Patient Gender" if "Patient Gender" in header else "Patient Sex"
    wanted = {
        "image": "Image Index",
        "labels": "Finding Labels",
        "patient": "Patient ID",
        "age": "Patient Age",
        "sex": sex_column,
        "view": "View Position",
    }
    missing = [name for name in wanted.values() if name not in header]
    if missing:
        raise DataError(f"{path.name} lacks the column(s) {', '.join(missing)}; is it NIH's Data_Entry file?")
    return {key: header.index(name) for key, name in wanted.items()}


def _record(row: list[str], columns: dict[str, int]) -> Record:
    cell = {key: row[index].strip() for key, index in columns.items()}
    findings = tuple(label for label in cell["labels"].split("|") if label and label != NO_FINDING)
    unknown = [label for label in findings if label not in CHESTXRAY14_LABELS]
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown} for {cell['image']}")
    if cell["sex"] not in ("M", "F"):
        raise ValueError(f"sex must be M or F, got {cell['sex']!r}")
    return Record(
        image=cell["image"],
        patient_id=int(cell["patient"]),
        labels=findings,
        age=_age(cell["age"]),
        sex=cell["sex"],
        view=cell["view"],
    )


def _age(text: str) -> int | None:
    """Years as an int; older releases write "058Y". Unparseable ages become None."""
    digits = text.rstrip("Yy")
    return int(digits) if digits.isdigit() else None


def read_split_list(path: str | Path) -> list[str]:
    """Image names of an official list file (one per line; the last line may lack a newline)."""
    with _open_text(Path(path)) as f:
        return [line.strip() for line in f if line.strip()]


def official_split(
    data_dir: str | Path, val_fraction: float = 0.1, seed: int = 0, available: Collection[str] | None = None
) -> Split:
    """The official NIH split, with validation patients drawn from ``train_val_list.txt``.

    Args:
        data_dir: folder holding Data_Entry, ``train_val_list.txt`` and ``test_list.txt``.
        val_fraction: share of train_val *patients* moved to validation (0 <= f < 1).
        seed: seeds the patient draw, so the same seed gives the same split.
        available: image names at hand; when given, both official lists are restricted to them
            (before validation patients are drawn) and ``Split.subset`` records the counts.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    data_dir = Path(data_dir)
    by_name = {record.image: record for record in read_data_entry(find_data_entry(data_dir))}
    train_val = _lookup(read_split_list(data_dir / TRAIN_VAL_LIST), by_name, TRAIN_VAL_LIST)
    test = _lookup(read_split_list(data_dir / TEST_LIST), by_name, TEST_LIST)
    overlap = {r.patient_id for r in train_val} & {r.patient_id for r in test}
    if overlap:
        raise DataError(f"{len(overlap)} patient(s) appear in both {TRAIN_VAL_LIST} and {TEST_LIST}.")
    subset = None
    if available is not None:
        official = {"train_val": len(train_val), "test": len(test)}
        train_val = [r for r in train_val if r.image in available]
        test = [r for r in test if r.image in available]
        used = {"train_val": len(train_val), "test": len(test)}
        subset = {name: {"used": used[name], "official": official[name]} for name in official}
        if not train_val and not test:
            raise DataError(f"None of the images of {TRAIN_VAL_LIST} or {TEST_LIST} is at hand.")
    patients = np.array(sorted({record.patient_id for record in train_val}))
    n_val = round(val_fraction * len(patients))
    val_patients = set(np.random.default_rng(seed).permutation(patients)[:n_val].tolist())
    return Split(
        train=[r for r in train_val if r.patient_id not in val_patients],
        val=[r for r in train_val if r.patient_id in val_patients],
        test=test,
        subset=subset,
    )


def _lookup(names: Sequence[str], by_name: dict[str, Record], source: str) -> list[Record]:
    missing = [name for name in names if name not in by_name]
    if missing:
        raise DataError(f"{len(missing)} image(s) of {source} are not in Data_Entry (e.g. {missing[0]}).")
    return [by_name[name] for name in names]


def write_split(split: Split, path: str | Path, **info: Any) -> Path:
    """Write the split (image names per split, plus ``info`` such as seed and fraction) as JSON."""
    path = Path(path)
    lists = {name: [r.image for r in records] for name, records in split.parts()}
    data = {"format": SPLIT_FORMAT, **info, "subset": split.subset, **lists}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_split(path: str | Path, records_by_name: dict[str, Record]) -> Split:
    """Read a split written by :func:`write_split`, resolving names with ``records_by_name``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        lists = {name: data[name] for name in ("train", "val", "test")}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path} is not a split file written by train.data.nih.write_split ({err}).") from None
    parts = {name: _lookup(names, records_by_name, path.name) for name, names in lists.items()}
    return Split(**parts, subset=data.get("subset"))


def label_matrix(records: Sequence[Record], labels: Sequence[str]) -> np.ndarray:
    """(N, K) float32 targets: 1 where record n has label k (in the given label order)."""
    column = {label: k for k, label in enumerate(labels)}
    matrix = np.zeros((len(records), len(labels)), dtype=np.float32)
    for n, record in enumerate(records):
        for label in record.labels:
            if label in column:
                matrix[n, column[label]] = 1.0
    return matrix


def find_images(data_dir: str | Path) -> dict[str, Path]:
    """Map NIH image names to files anywhere under ``data_dir`` (``images_001/images/…`` or flat).

    Only names shaped like NIH's (``00000001_000.png``) count, so plots or other PNGs lying around
    are ignored. The same name in two places is an error: which one would be used is unclear.
    """
    found: dict[str, Path] = {}
    duplicates = []
    for folder, _, files in os.walk(data_dir):
        for name in files:
            if IMAGE_NAME.match(name):
                if name in found:
                    duplicates.append(name)
                found[name] = Path(folder) / name
    if duplicates:
        raise DataError(f"{len(duplicates)} image name(s) occur twice under {data_dir} (e.g. {duplicates[0]}).")
    return found


def read_bbox_list(path: str | Path) -> list[Box]:
    """Read BBox_List_2017.csv[.gz]: a 9-field header, then ``image,label,x,y,w,h`` rows."""
    path = Path(path)
    with _open_text(path) as f:
        rows = csv.reader(f)
        next(rows, None)
        boxes = []
        for line, row in enumerate(rows, start=2):
            if not any(cell.strip() for cell in row):
                continue
            try:
                image, label, *coords = (cell.strip() for cell in row[:6])
                x, y, w, h = (float(v) for v in coords)
            except ValueError:
                raise DataError(f"{path.name} line {line}: expected image,label,x,y,w,h; got {row}.") from None
            label = BOX_LABEL_ALIASES.get(label, label)
            if label not in CHESTXRAY14_LABELS:
                raise DataError(f"{path.name} line {line}: unknown finding {label!r}.")
            boxes.append(Box(image, label, x, y, w, h))
    return boxes


def dataset_name(data_dir: str | Path) -> str:
    """ "NIH ChestX-ray14", or the synthetic marker's description for data made by ``train synth``."""
    return "synthetic (python -m train synth)" if (Path(data_dir) / SYNTH_MARKER).is_file() else "NIH ChestX-ray14"


def records_by_name(records: Iterable[Record]) -> dict[str, Record]:
    """Index records by image name."""
    return {record.image: record for record in records}
