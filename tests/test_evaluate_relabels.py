"""Radiologist-adjudicated labels: the real Google file reads and joins to NIH; AUROC equals scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxr.labels import CHESTXRAY8_LABELS, CHESTXRAY14_LABELS
from train.data.nih import Record, find_data_entry, read_data_entry, read_split_list
from train.evaluation.bootstrap import BootstrapSettings
from train.evaluation.relabels import Relabel, find_relabels, read_relabels, relabel_auroc


def test_google_relabels_read_and_join_to_nih_test_images(shared_data) -> None:
    folder = shared_data / "nih-cxr14"
    relabels = read_relabels(find_relabels(folder))
    assert len(relabels) == 4376
    test = [r for r in relabels.values() if r.set_id == "test"]
    assert len(test) == 1962
    assert {r.image for r in test} <= set(read_split_list(folder / "test_list.txt"))
    nih = {record.image: record for record in read_data_entry(find_data_entry(folder))}
    assert all(nih[r.image].patient_id == r.patient_id for r in relabels.values())
    assert set(test[0].findings) == {"Pneumothorax", "Nodule or mass", "Airspace opacity", "Fracture"}
    # The first test row of the file: No Finding in NIH, adjudicated airspace opacity only.
    first = relabels["00000013_008.png"]
    assert first.findings == {
        "Fracture": False,
        "Pneumothorax": False,
        "Airspace opacity": True,
        "Nodule or mass": False,
    }


def cohort(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    records, relabels = [], {}
    for i in range(n):
        labels = tuple(label for label in ("Pneumothorax", "Mass", "Nodule", "Pneumonia") if rng.random() < 0.2)
        records.append(Record(f"{i:08d}_000.png", i // 2, labels, 50, "M", "PA"))
        if i % 3:  # a third of the images have no adjudicated label
            findings = {f: bool(rng.random() < 0.25) for f in ("Pneumothorax", "Nodule or mass", "Airspace opacity")}
            relabels[records[-1].image] = Relabel(records[-1].image, i // 2, {**findings, "Fracture": False}, "test")
    return records, relabels, rng.random((n, 14))


def test_adjudicated_and_nih_auroc_equal_sklearn_on_the_max_of_mapped_outputs() -> None:
    records, relabels, probability = cohort()
    labels = list(CHESTXRAY14_LABELS)
    result = relabel_auroc(records, probability, labels, relabels, BootstrapSettings(n_resamples=50))
    rows = [i for i, r in enumerate(records) if r.image in relabels]
    assert result["n_images"] == len(rows) == 200
    nodule_mass = result["findings"]["Nodule or mass"]
    score = probability[rows][:, [labels.index("Nodule"), labels.index("Mass")]].max(axis=1)
    adjudicated = [relabels[records[i].image].findings["Nodule or mass"] for i in rows]
    nih = [("Nodule" in records[i].labels) or ("Mass" in records[i].labels) for i in rows]
    assert nodule_mass["model_outputs"] == ["Nodule", "Mass"]
    assert nodule_mass["n_positive_adjudicated"] == sum(adjudicated)
    assert nodule_mass["n_positive_nih"] == sum(nih)
    assert nodule_mass["auroc_adjudicated"] == pytest.approx(roc_auc_score(adjudicated, score))
    assert nodule_mass["auroc_nih_labels"] == pytest.approx(roc_auc_score(nih, score))
    lo, hi = nodule_mass["auroc_adjudicated_ci"]
    assert lo <= nodule_mass["auroc_adjudicated"] <= hi
    airspace = result["findings"]["Airspace opacity"]
    assert airspace["model_outputs"] == ["Consolidation", "Infiltration", "Pneumonia"]
    assert result["not_scored"] == {"Fracture": "no ChestX-ray14 label"}


def test_a_chestxray8_model_scores_airspace_with_the_outputs_it_has() -> None:
    records, relabels, probability = cohort(seed=1)
    result = relabel_auroc(records, probability[:, :8], list(CHESTXRAY8_LABELS), relabels, BootstrapSettings(20))
    assert result["findings"]["Airspace opacity"]["model_outputs"] == ["Infiltration", "Pneumonia"]


def test_no_adjudicated_image_in_the_split_gives_none() -> None:
    records, _, probability = cohort(30)
    assert relabel_auroc(records, probability, list(CHESTXRAY14_LABELS), {}) is None
