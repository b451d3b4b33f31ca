"""Other datasets' label files as distributed -> NIH ChestX-ray14 labels, for ``evaluate --scores``.

Only findings a dataset shares with NIH's 14 are mapped; the rest are left out, never zero-filled.

| NIH label | CheXpert / MIMIC-CXR-JPG column | PadChest label |
| --- | --- | --- |
| Atelectasis | Atelectasis | atelectasis |
| Cardiomegaly | Cardiomegaly | cardiomegaly |
| Effusion | Pleural Effusion | pleural effusion |
| Infiltration | – | infiltrates |
| Mass | – | mass |
| Nodule | – | nodule |
| Pneumonia | Pneumonia | pneumonia |
| Pneumothorax | Pneumothorax | pneumothorax |
| Consolidation | Consolidation | consolidation |
| Edema | Edema | pulmonary edema |
| Emphysema | – | emphysema |
| Fibrosis | – | pulmonary fibrosis |
| Pleural_Thickening | – | pleural thickening |
| Hernia | – | hiatal hernia |

Sources: CheXpert's 14 observations, Irvin et al., AAAI 2019 (``train.csv`` / ``valid.csv``: 1 positive, 0 negative,
-1 uncertain, blank not mentioned); MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-chexpert.csv``, the same labeler's columns
per study (Johnson et al., 2019, arXiv:1901.07042); PadChest's ``Labels`` column of UMLS-derived finding names
(Bustos et al., Medical Image Analysis 2020). CheXpert's "Lung Lesion" and "Lung Opacity" are broader than NIH's
Mass / Nodule / Infiltration and are left out. A blank (not mentioned) counts as negative; -1 follows the
``--uncertain`` policy.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAPS = ("nih", "chexpert", "mimic", "padchest")
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")

CHEXPERT_COLUMNS = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
}
PADCHEST_NAMES = {
    "atelectasis": "Atelectasis",
    "cardiomegaly": "Cardiomegaly",
    "pleural effusion": "Effusion",
    "infiltrates": "Infiltration",
    "mass": "Mass",
    "nodule": "Nodule",
    "pneumonia": "Pneumonia",
    "pneumothorax": "Pneumothorax",
    "consolidation": "Consolidation",
    "pulmonary edema": "Edema",
    "emphysema": "Emphysema",
    "pulmonary fibrosis": "Fibrosis",
    "pleural thickening": "Pleural_Thickening",
    "hiatal hernia": "Hernia",
}
PADCHEST_FRONTAL = {"PA", "AP", "AP_horizontal"}
NIH_LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip
UNCERTAIN = -1


class LabelMapError(ValueError):
    """A label file does not have the columns its map reads; ``str(err)`` says which."""


@dataclass(frozen=True)
class LabelRow:
    """One labelled image (or, for MIMIC, one study): how it is matched, its patient, view and labels.

    ``key`` is a file name, a path relative to the dataset's root, or (``kind == "study"``) a MIMIC study id.
    ``labels`` maps NIH labels to 1, 0 or -1 (uncertain).
    """

    key: str
    patient: str
    labels: dict[str, int]
    frontal: bool | None = None  # None: the label file does not say
    kind: str = "path"
    attributes: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelSet:
    """Every row of a label file, and the NIH labels the dataset has."""

    name: str
    labels: tuple[str, ...]
    rows: list[LabelRow]


def _read_csv(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _need(rows: list[dict[str, str]], columns: list[str], path: Path, what: str) -> None:
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise LabelMapError(f"{path.name} is not {what}: it has no column {', '.join(map(repr, missing))}.")


def _chexpert_value(text: str) -> int:
    return int(float(text)) if text.strip() else 0  # blank: not mentioned in the report


def read_nih(path: Path) -> LabelSet:
    """NIH's Data_Entry_2017(_v2020).csv(.gz): ``Image Index``, ``Finding Labels`` (|-separated), ``Patient ID``."""
    rows = _read_csv(path)
    _need(rows, ["Image Index", "Finding Labels", "Patient ID"], path, "an NIH Data_Entry file")
    out = []
    for r in rows:
        findings = set(r["Finding Labels"].split("|"))
        attributes = {"sex": r.get("Patient Gender"), "age": r.get("Patient Age"), "view": r.get("View Position")}
        out.append(
            LabelRow(
                r["Image Index"], r["Patient ID"], {k: int(k in findings) for k in NIH_LABELS}, True, "path", attributes
            )
        )
    return LabelSet("nih", NIH_LABELS, out)


def read_chexpert(path: Path) -> LabelSet:
    """CheXpert's train.csv / valid.csv: ``Path`` is relative to the folder holding CheXpert-v1.0-small/; the
    patient comes from it."""
    rows = _read_csv(path)
    _need(rows, ["Path", "Frontal/Lateral", *CHEXPERT_COLUMNS], path, "a CheXpert label file")
    out = []
    for r in rows:
        patient = re.search(r"patient(\d+)", r["Path"])
        attributes = {"sex": r.get("Sex"), "age": r.get("Age"), "view": r.get("AP/PA") or r["Frontal/Lateral"]}
        out.append(
            LabelRow(
                r["Path"],
                patient.group(1) if patient else r["Path"],
                {nih: _chexpert_value(r[col]) for col, nih in CHEXPERT_COLUMNS.items()},
                r["Frontal/Lateral"] == "Frontal",
                "path",
                attributes,
            )
        )
    return LabelSet("chexpert", tuple(CHEXPERT_COLUMNS.values()), out)


def read_mimic(path: Path) -> LabelSet:
    """MIMIC-CXR-JPG's mimic-cxr-2.0.0-chexpert.csv(.gz): labels per study (``subject_id``, ``study_id``)."""
    rows = _read_csv(path)
    _need(rows, ["subject_id", "study_id", *CHEXPERT_COLUMNS], path, "MIMIC-CXR-JPG's CheXpert label file")
    out = [
        LabelRow(
            r["study_id"],
            r["subject_id"],
            {nih: _chexpert_value(r[col]) for col, nih in CHEXPERT_COLUMNS.items()},
            None,
            "study",
        )
        for r in rows
    ]
    return LabelSet("mimic", tuple(CHEXPERT_COLUMNS.values()), out)


def mimic_frontal_images(metadata: Path) -> dict[str, bool]:
    """dicom_id -> frontal (ViewPosition PA or AP), from MIMIC-CXR-JPG's mimic-cxr-2.0.0-metadata.csv(.gz)."""
    rows = _read_csv(metadata)
    _need(rows, ["dicom_id", "ViewPosition"], metadata, "MIMIC-CXR-JPG's metadata file")
    return {r["dicom_id"]: r["ViewPosition"] in ("PA", "AP") for r in rows}


def read_padchest(path: Path) -> LabelSet:
    """PadChest's PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv(.gz): ``ImageID``, ``PatientID``,
    ``Projection``, ``Labels`` (a Python-list literal of finding names)."""
    rows = _read_csv(path)
    _need(rows, ["ImageID", "PatientID", "Projection", "Labels"], path, "PadChest's label file")
    out = []
    for r in rows:
        try:
            names = {str(n).strip().lower() for n in ast.literal_eval(r["Labels"] or "[]")}
        except (ValueError, SyntaxError):
            names = set()  # a handful of distributed rows hold no parsable list
        present = {PADCHEST_NAMES[n] for n in names if n in PADCHEST_NAMES}
        attributes = {"sex": r.get("PatientSex_DICOM"), "view": r["Projection"]}
        out.append(
            LabelRow(
                r["ImageID"],
                r["PatientID"],
                {nih: int(nih in present) for nih in PADCHEST_NAMES.values()},
                r["Projection"] in PADCHEST_FRONTAL,
                "path",
                attributes,
            )
        )
    return LabelSet("padchest", tuple(PADCHEST_NAMES.values()), out)


def read_custom(spec: Path, labels: Path) -> LabelSet:
    """A JSON map ``{"id_column", "patient_column", "labels": {"their column": "NIH label"}}`` over a wide CSV of
    1 / 0 / -1 values (blank = 0); the id column holds file names or relative paths."""
    mapping = json.loads(spec.read_text(encoding="utf-8"))
    columns = mapping["labels"]
    unknown = [nih for nih in columns.values() if nih not in NIH_LABELS]
    if unknown:
        raise LabelMapError(f"{spec.name} maps to {', '.join(unknown)}, which are not NIH labels.")
    rows = _read_csv(labels)
    patient_column = mapping.get("patient_column")
    _need(rows, [mapping["id_column"], *columns, *([patient_column] if patient_column else [])], labels, spec.name)
    out = [
        LabelRow(
            r[mapping["id_column"]],
            r[patient_column] if patient_column else r[mapping["id_column"]],
            {nih: _chexpert_value(r[col]) for col, nih in columns.items()},
        )
        for r in rows
    ]
    return LabelSet(spec.stem, tuple(dict.fromkeys(columns.values())), out)


def read_labels(label_map: str, labels: Path) -> LabelSet:
    """The label file read with the named map (or a JSON map file)."""
    readers = {"nih": read_nih, "chexpert": read_chexpert, "mimic": read_mimic, "padchest": read_padchest}
    if label_map in readers:
        return readers[label_map](labels)
    spec = Path(label_map)
    if not spec.is_file():
        raise LabelMapError(f"--label-map must be one of {', '.join(MAPS)} or a JSON map file; got {label_map!r}.")
    return read_custom(spec, labels)


def path_suffixes(path: str) -> Iterator[str]:
    """``a/b/c.png`` -> ``a/b/c.png``, ``b/c.png``, ``c.png``: what a relative path or file name may match."""
    parts = path.replace("\\", "/").split("/")
    for i in range(len(parts)):
        yield "/".join(parts[i:])


MIMIC_STUDY = re.compile(r"(?:^|/)s(\d+)/([^/]+?)(?:\.\w+)?$")
