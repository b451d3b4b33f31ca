"""AUROC by patient subgroup (sex, age band, view position), with counts and the largest gap flagged.

A subgroup's mean AUROC is taken over the labels whose AUROC is defined in *every* group of that
attribute, so the groups are compared on the same labels (a label without positives among children,
say, would otherwise move one group's mean and not the other's). Each mean carries a
patient-bootstrap interval, so a gap can be read against the noise of small groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from train.data.nih import Record
from train.evaluation.bootstrap import BootstrapSettings, auroc_with_intervals
from train.evaluation.metrics import json_number

# (lowest age, highest age, name); NIH ages are whole years.
AGE_BANDS: tuple[tuple[int, int, str], ...] = (
    (0, 17, "0-17"),
    (18, 39, "18-39"),
    (40, 59, "40-59"),
    (60, 79, "60-79"),
    (80, 200, "80+"),
)
ATTRIBUTE_ORDER = {"sex": ("F", "M"), "age": tuple(name for _, _, name in AGE_BANDS), "view": ("PA", "AP")}


def age_band(age: int | None) -> str | None:
    """The band name of an age in years, None when unknown or out of range."""
    if age is None:
        return None
    return next((name for low, high, name in AGE_BANDS if low <= age <= high), None)


def subgroup_attributes(records: Sequence[Record]) -> dict[str, list[str | None]]:
    """The group of every record under each attribute: ``{"sex": [...], "age": [...], "view": [...]}``."""
    return {
        "sex": [r.sex for r in records],
        "age": [age_band(r.age) for r in records],
        "view": [r.view for r in records],
    }


def subgroup_auroc(
    y_true: np.ndarray,
    y_score: np.ndarray,
    patient_ids: np.ndarray,
    attributes: dict[str, Sequence[str | None]],
    labels: Sequence[str],
    settings: BootstrapSettings | None = None,
) -> dict[str, object]:
    """Per attribute and group: counts, per-label AUROC, mean AUROC over the shared labels with a CI.

    Returns a JSON-ready dict with ``attributes`` (one entry per attribute: ``groups``,
    ``labels_compared``, ``gap``), ``largest_gap`` (the attribute whose groups' mean AUROC differ
    most) and ``largest_label_gap`` (the single label and attribute with the widest spread).
    """
    y_true, y_score, patient_ids = np.asarray(y_true), np.asarray(y_score), np.asarray(patient_ids)
    result: dict[str, dict] = {}
    label_gaps = []
    for attribute, values in attributes.items():
        values = np.array([v if v is not None else "" for v in values])
        present = [g for g in ATTRIBUTE_ORDER.get(attribute, ()) if g in values]
        present += sorted(set(values) - set(present) - {""})
        masks = {group: values == group for group in present}
        defined = {group: _defined_labels(y_true[mask]) for group, mask in masks.items()}
        shared = [k for k in range(len(labels)) if all(defined[g][k] for g in present)]
        groups = {}
        for group, mask in masks.items():
            intervals = auroc_with_intervals(
                y_true[mask], y_score[mask], patient_ids[mask], {"shared": shared}, settings
            )
            groups[group] = {
                "n_images": int(mask.sum()),
                "n_patients": len(np.unique(patient_ids[mask])),
                "n_positive": {labels[k]: int(y_true[mask, k].sum()) for k in range(len(labels))},
                "per_label_auroc": {labels[k]: json_number(intervals.per_label[k]) for k in range(len(labels))},
                "mean_auroc": json_number(intervals.means["shared"]),
                "mean_auroc_ci": [json_number(v) for v in intervals.means_ci["shared"]],
            }
        result[attribute] = {
            "groups": groups,
            "labels_compared": [labels[k] for k in shared],
            "unknown": int((values == "").sum()),
            "gap": _gap({g: v["mean_auroc"] for g, v in groups.items()}),
        }
        for k in shared:
            gap = _gap({g: v["per_label_auroc"][labels[k]] for g, v in groups.items()})
            if gap:
                label_gaps.append({"label": labels[k], "attribute": attribute, **gap})
    attribute_gaps = [{"attribute": a, **v["gap"]} for a, v in result.items() if v["gap"]]
    return {
        "attributes": result,
        "largest_gap": max(attribute_gaps, key=lambda g: g["value"], default=None),
        "largest_label_gap": max(label_gaps, key=lambda g: g["value"], default=None),
    }


def _defined_labels(y_true: np.ndarray) -> np.ndarray:
    """(K,) True where the label has both positives and negatives."""
    positives = y_true.sum(axis=0)
    return (positives > 0) & (positives < len(y_true))


def _gap(means: dict[str, float | None]) -> dict[str, object] | None:
    """Spread between the best and worst group, or None with fewer than two comparable groups."""
    known = {g: m for g, m in means.items() if m is not None}
    if len(known) < 2:
        return None
    high = max(known, key=known.__getitem__)
    low = min(known, key=known.__getitem__)
    return {"value": known[high] - known[low], "high": high, "low": low}
