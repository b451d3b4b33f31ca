"""AUROC against radiologist-adjudicated labels (Majkowska et al., Radiology 2020) for NIH test images.

NIH's labels were mined from reports by NLP and are known to be noisy. Google had radiologists
adjudicate four findings on 1,962 images of the official test list (and 2,414 others). Three map
onto ChestX-ray14 outputs; a finding is scored with the highest probability among its outputs:

* Pneumothorax -> Pneumothorax
* Nodule or mass -> Nodule, Mass
* Airspace opacity -> Consolidation, Infiltration, Pneumonia (our choice of NIH's airspace findings)

Fracture has no ChestX-ray14 label and is not scored. Next to each adjudicated AUROC, the same
score's AUROC against NIH's own labels on the same images shows how much label noise moves it.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.data.nih import Record
from train.evaluation.bootstrap import BootstrapSettings, auroc_with_intervals
from train.evaluation.metrics import json_number

RELABEL_FILES = ("google2019_nih-chest-xray-labels.csv.gz", "google2019_nih-chest-xray-labels.csv")
FINDING_OUTPUTS: dict[str, tuple[str, ...]] = {
    "Pneumothorax": ("Pneumothorax",),
    "Nodule or mass": ("Nodule", "Mass"),
    "Airspace opacity": ("Consolidation", "Infiltration", "Pneumonia"),
}
UNSCORED = {"Fracture": "no ChestX-ray14 label"}
SOURCE = (
    "A. Majkowska, S. Mittal, D. F. Steiner, et al. Chest Radiograph Interpretation with Deep Learning Models: "
    "Assessment with Radiologist-adjudicated Reference Standards and Population-adjusted Evaluation. "
    "Radiology 294(2), 2020."
)


@dataclass(frozen=True)
class Relabel:
    """Adjudicated findings of one image (True = present)."""

    image: str
    patient_id: int
    findings: dict[str, bool]
    set_id: str


def find_relabels(data_dir: str | Path) -> Path | None:
    """The Google relabel file in ``data_dir``, if there is one."""
    return next((Path(data_dir) / n for n in RELABEL_FILES if (Path(data_dir) / n).is_file()), None)


def read_relabels(path: str | Path) -> dict[str, Relabel]:
    """Image name -> :class:`Relabel`, from the CSV (YES/NO columns per finding, ``Set Id``)."""
    findings = [*FINDING_OUTPUTS, *UNSCORED]
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f)
        return {
            row["Image Index"]: Relabel(
                image=row["Image Index"],
                patient_id=int(row["Patient ID"]),
                findings={name: row[name].strip().upper() == "YES" for name in findings},
                set_id=row["Set Id"].strip(),
            )
            for row in rows
        }


def relabel_auroc(
    records: Sequence[Record],
    probabilities: np.ndarray,
    labels: Sequence[str],
    relabels: dict[str, Relabel],
    settings: BootstrapSettings | None = None,
) -> dict[str, object] | None:
    """Per scored finding: AUROC (patient-bootstrap CI) against adjudicated and against NIH labels.

    Only evaluated images that have an adjudicated label take part; None when there are none.
    """
    rows = [i for i, record in enumerate(records) if record.image in relabels]
    if not rows:
        return None
    chosen = [records[i] for i in rows]
    patients = np.array([record.patient_id for record in chosen])
    findings: dict[str, object] = {}
    for finding, outputs in FINDING_OUTPUTS.items():
        columns = [labels.index(label) for label in outputs if label in labels]
        if not columns:
            findings[finding] = {"skipped": f"the model has none of {', '.join(outputs)}"}
            continue
        score = probabilities[np.ix_(rows, columns)].max(axis=1)
        adjudicated = np.array([relabels[r.image].findings[finding] for r in chosen], dtype=int)
        nih = np.array([any(label in r.labels for label in outputs) for r in chosen], dtype=int)
        targets = np.stack([adjudicated, nih], axis=1)
        result = auroc_with_intervals(targets, np.stack([score, score], axis=1), patients, {}, settings)
        findings[finding] = {
            "model_outputs": [labels[c] for c in columns],
            "n_positive_adjudicated": int(adjudicated.sum()),
            "n_positive_nih": int(nih.sum()),
            "auroc_adjudicated": json_number(result.per_label[0]),
            "auroc_adjudicated_ci": [json_number(v) for v in result.per_label_ci[0]],
            "auroc_nih_labels": json_number(result.per_label[1]),
            "auroc_nih_labels_ci": [json_number(v) for v in result.per_label_ci[1]],
        }
    return {
        "source": SOURCE,
        "n_images": len(rows),
        "n_patients": len(np.unique(patients)),
        "findings": findings,
        "not_scored": UNSCORED,
    }
