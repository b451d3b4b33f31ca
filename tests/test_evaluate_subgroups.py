"""Subgroup AUROC by sex, age band and view: equal to scikit-learn on each subset, counts, the flagged gap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from train.data.nih import Record
from train.evaluation.bootstrap import BootstrapSettings
from train.evaluation.subgroups import age_band, subgroup_attributes, subgroup_auroc

LABELS = ("Atelectasis", "Effusion", "Hernia")


@pytest.mark.parametrize(
    ("age", "band"), [(0, "0-17"), (17, "0-17"), (18, "18-39"), (59, "40-59"), (60, "60-79"), (95, "80+"), (None, None)]
)
def test_age_bands(age: int | None, band: str | None) -> None:
    assert age_band(age) == band


def test_attributes_of_records() -> None:
    records = [Record("a.png", 1, (), 15, "F", "AP"), Record("b.png", 2, ("Mass",), None, "M", "PA")]
    assert subgroup_attributes(records) == {"sex": ["F", "M"], "age": ["0-17", None], "view": ["AP", "PA"]}


def cohort(seed: int = 0):
    """600 images of 300 patients. Scores separate the classes well for PA views and barely for AP;
    Hernia has no positive among AP images, so it cannot be compared across views."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(300), 2)
    sex = np.where(patients % 2, "M", "F")
    view = np.where(rng.random(600) < 0.5, "PA", "AP")
    age = rng.choice(["18-39", "40-59", None], size=600, p=[0.45, 0.45, 0.1])
    y = (rng.random((600, 3)) < 0.3).astype(int)
    y[view == "AP", 2] = 0
    strength = np.where(view == "PA", 2.0, 0.2)[:, None]
    scores = rng.normal(size=(600, 3)) + strength * y
    return y, scores, patients, {"sex": list(sex), "age": list(age), "view": list(view)}


def test_subgroup_aurocs_equal_sklearn_on_each_subset_and_the_view_gap_is_flagged() -> None:
    y, s, patients, attributes = cohort()
    result = subgroup_auroc(y, s, patients, attributes, LABELS, BootstrapSettings(n_resamples=100))
    view = result["attributes"]["view"]
    assert list(view["groups"]) == ["PA", "AP"]
    assert view["labels_compared"] == ["Atelectasis", "Effusion"]  # Hernia undefined among AP images
    for name, group in view["groups"].items():
        mask = np.array(attributes["view"]) == name
        assert group["n_images"] == mask.sum()
        assert group["n_patients"] == len(np.unique(patients[mask]))
        assert group["n_positive"]["Effusion"] == y[mask, 1].sum()
        expected = [roc_auc_score(y[mask, k], s[mask, k]) for k in range(2)]
        assert [group["per_label_auroc"][label] for label in LABELS[:2]] == pytest.approx(expected)
        assert group["mean_auroc"] == pytest.approx(np.mean(expected))
        lo, hi = group["mean_auroc_ci"]
        assert lo < group["mean_auroc"] < hi
    assert view["groups"]["AP"]["per_label_auroc"]["Hernia"] is None
    assert view["gap"]["high"] == "PA" and view["gap"]["low"] == "AP"
    assert view["gap"]["value"] == pytest.approx(
        view["groups"]["PA"]["mean_auroc"] - view["groups"]["AP"]["mean_auroc"]
    )
    assert result["largest_gap"]["attribute"] == "view"
    assert result["largest_label_gap"]["attribute"] == "view"
    # Sex and age bands are unrelated to the scores: their gaps are much smaller.
    assert result["attributes"]["sex"]["gap"]["value"] < view["gap"]["value"] / 2
    assert result["attributes"]["sex"]["labels_compared"] == list(LABELS)


def test_unknown_ages_are_counted_and_left_out() -> None:
    y, s, patients, attributes = cohort(1)
    result = subgroup_auroc(y, s, patients, attributes, LABELS, BootstrapSettings(n_resamples=50))
    age = result["attributes"]["age"]
    assert list(age["groups"]) == ["18-39", "40-59"]
    assert age["unknown"] == sum(a is None for a in attributes["age"])
    assert sum(g["n_images"] for g in age["groups"].values()) + age["unknown"] == 600


def test_a_single_group_has_no_gap() -> None:
    y, s, patients, _ = cohort(2)
    result = subgroup_auroc(y, s, patients, {"sex": ["F"] * 600}, LABELS, BootstrapSettings(n_resamples=20))
    assert result["attributes"]["sex"]["gap"] is None
    assert result["largest_gap"] is None and result["largest_label_gap"] is None
