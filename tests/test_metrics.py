"""train.evaluation.metrics against scikit-learn, one label at a time, on data with ties and degenerate labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from train.evaluation.metrics import (
    choose_thresholds,
    f1_optimal_threshold,
    mean_auroc,
    operating_point_metrics,
    per_label_auprc,
    per_label_auroc,
    prevalence,
)


@pytest.fixture
def multilabel() -> tuple[np.ndarray, np.ndarray]:
    """400 images x 5 labels; scores rounded to 2 decimals so ties occur; label 3 never positive, 4 always."""
    rng = np.random.default_rng(7)
    y = (rng.random((400, 5)) < [0.05, 0.2, 0.5, 0.0, 1.0]).astype(np.float32)
    scores = np.round(np.clip(0.3 * y + rng.random((400, 5)) * 0.7, 0, 1), 2)
    return y, scores


def test_auroc_equals_sklearn_and_is_nan_for_one_class_labels(multilabel) -> None:
    y, s = multilabel
    ours = per_label_auroc(y, s)
    for k in range(3):
        assert ours[k] == pytest.approx(roc_auc_score(y[:, k], s[:, k]), abs=1e-12)
    assert np.isnan(ours[3]) and np.isnan(ours[4])
    assert mean_auroc(y, s) == pytest.approx(np.mean([roc_auc_score(y[:, k], s[:, k]) for k in range(3)]))


def test_mean_auroc_is_nan_when_no_label_has_both_classes() -> None:
    assert np.isnan(mean_auroc(np.zeros((4, 2)), np.random.default_rng(0).random((4, 2))))


def test_auprc_equals_sklearn_average_precision(multilabel) -> None:
    y, s = multilabel
    ours = per_label_auprc(y, s)
    for k in (0, 1, 2, 4):
        assert ours[k] == pytest.approx(average_precision_score(y[:, k], s[:, k]), abs=1e-12)
    assert np.isnan(ours[3])
    assert ours[4] == pytest.approx(1.0)


def test_prevalence_is_the_positive_fraction(multilabel) -> None:
    y, _ = multilabel
    np.testing.assert_allclose(prevalence(y), [y[:, k].sum() / len(y) for k in range(5)])
    assert prevalence(y)[3] == 0.0 and prevalence(y)[4] == 1.0


def test_operating_point_metrics_equal_sklearn_at_per_label_thresholds(multilabel) -> None:
    y, s = multilabel
    thresholds = np.array([0.5, 0.62, 0.41, 0.5, 0.9])
    ours = operating_point_metrics(y, s, thresholds)
    for k in range(5):
        called = s[:, k] >= thresholds[k]  # ties at the threshold count as positive, as in Prediction.positive
        tn, fp, fn, tp = confusion_matrix(y[:, k], called, labels=[0, 1]).ravel()
        assert (ours["tp"][k], ours["fp"][k], ours["tn"][k], ours["fn"][k]) == (tp, fp, tn, fn)
        if tp + fn:
            assert ours["sensitivity"][k] == pytest.approx(recall_score(y[:, k], called))
        if tn + fp:
            assert ours["specificity"][k] == pytest.approx(recall_score(y[:, k], called, pos_label=0))
        if tp + fp:
            assert ours["ppv"][k] == pytest.approx(precision_score(y[:, k], called))
        if tn + fn:
            assert ours["npv"][k] == pytest.approx(precision_score(y[:, k], called, pos_label=0))
        if tp + fp + fn:
            assert ours["f1"][k] == pytest.approx(f1_score(y[:, k], called))
    # Label 3 has no positives: sensitivity undefined; label 4 has no negatives: specificity undefined.
    assert np.isnan(ours["sensitivity"][3]) and np.isnan(ours["specificity"][4])


def test_operating_point_ties_at_threshold_are_positive() -> None:
    y = np.array([[1], [0], [1], [0]])
    s = np.array([[0.5], [0.5], [0.2], [0.1]])
    m = operating_point_metrics(y, s, np.array([0.5]))
    assert (m["tp"][0], m["fp"][0], m["tn"][0], m["fn"][0]) == (1, 1, 1, 1)
    assert m["ppv"][0] == 0.5 and m["npv"][0] == 0.5


def test_f1_optimal_threshold_reaches_the_best_f1_over_all_cutoffs(multilabel) -> None:
    y, s = multilabel
    for k in range(3):
        best = max(f1_score(y[:, k], s[:, k] >= t) for t in np.unique(s[:, k]))
        chosen = f1_optimal_threshold(y[:, k], s[:, k])
        assert f1_score(y[:, k], s[:, k] >= chosen) == pytest.approx(best)


def test_f1_optimal_threshold_defaults_without_positives_and_stays_inside_unit_interval() -> None:
    assert f1_optimal_threshold(np.zeros(5), np.linspace(0, 1, 5), default=0.3) == 0.3
    assert 0 < f1_optimal_threshold(np.array([0, 1, 1]), np.array([0.0, 1.0, 1.0])) < 1


def test_choose_thresholds_is_per_label(multilabel) -> None:
    y, s = multilabel
    chosen = choose_thresholds(y, s)
    assert chosen.shape == (5,)
    assert chosen[1] == f1_optimal_threshold(y[:, 1], s[:, 1])
    assert chosen[3] == 0.5  # no positives: the default
