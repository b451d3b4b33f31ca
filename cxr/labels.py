"""The label vocabularies, defined once for the whole project.

Spelled exactly as in NIH's ``Data_Entry_2017.csv`` ("Finding Labels" column), in the order of the
ChestX-ray14 paper. ChestX-ray8 (Wang et al., CVPR 2017) used the first eight.
"""

from __future__ import annotations

CHESTXRAY14_LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)

CHESTXRAY8_LABELS: tuple[str, ...] = CHESTXRAY14_LABELS[:8]

LABEL_SETS: dict[str, tuple[str, ...]] = {
    "chestxray14": CHESTXRAY14_LABELS,
    "chestxray8": CHESTXRAY8_LABELS,
}


def display_name(label: str) -> str:
    """How people read a label: ``Pleural_Thickening`` -> ``Pleural thickening`` (data and APIs keep the name)."""
    return label.replace("_", " ").capitalize()


def label_set(name: str) -> tuple[str, ...]:
    """Return the labels of a named set (``chestxray14`` or ``chestxray8``)."""
    try:
        return LABEL_SETS[name]
    except KeyError:
        known = ", ".join(LABEL_SETS)
        raise ValueError(f"Unknown label set {name!r}; choose one of: {known}.") from None
