"""Calibration metrics against scikit-learn and hand-computed cases; temperature scaling and thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from train.evaluation.calibration import (
    TEMPERATURE_BOUNDS,
    brier_score,
    convert_thresholds,
    expected_calibration_error,
    fit_temperature,
    fit_temperatures,
    mean_ece,
    probabilities,
    reliability_bins,
)


def logits_with_temperature(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and outcomes y ~ Bernoulli(sigmoid(z / temperature)): T = temperature calibrates them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, n)
    return z, (rng.random(n) < expit(z / temperature)).astype(int)


def test_reliability_bins_equal_sklearn_calibration_curve() -> None:
    rng = np.random.default_rng(1)
    p = np.r_[rng.random(500), [0.1, 0.2, 0.5, 0.0, 1.0]]  # exact edges included
    y = (rng.random(len(p)) < p).astype(int)
    bins = reliability_bins(y, p, n_bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    used = bins.count > 0
    np.testing.assert_allclose(bins.fraction_positive[used], prob_true)
    np.testing.assert_allclose(bins.mean_probability[used], prob_pred)
    assert bins.count.sum() == len(p)


def test_ece_hand_computed() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.85, 0.95])  # one image per bin, gaps 0.05, 0.15, 0.15, 0.05
    assert expected_calibration_error(y, p) == pytest.approx(0.1)
    # Two images in one bin: |mean(y) - mean(p)| = |0.5 - 0.35| weighted by 2/3, plus |1 - 0.9| * 1/3.
    assert expected_calibration_error(np.array([0, 1, 1]), np.array([0.31, 0.39, 0.9])) == pytest.approx(
        (2 * 0.15 + 0.1) / 3
    )


def test_ece_brute_force_over_bins() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(1000) ** 2
    y = (rng.random(1000) < np.sqrt(p)).astype(int)
    expected = 0.0
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        in_bin = (p > lo) & (p <= hi) if b else (p <= hi)
        if in_bin.any():
            expected += in_bin.mean() * abs(y[in_bin].mean() - p[in_bin].mean())
    assert expected_calibration_error(y, p, n_bins=15) == pytest.approx(expected)


def test_brier_score_is_mean_squared_error() -> None:
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.1, 0.8, 0.3, 0.5, 1.0])
    assert brier_score(y, p) == pytest.approx(np.mean((p - y) ** 2))


def test_fitted_temperature_equals_logistic_regression_without_intercept() -> None:
    z, y = logits_with_temperature(20000, temperature=2.5)
    reference = LogisticRegression(fit_intercept=False, C=np.inf).fit(z[:, None], y)
    assert fit_temperature(z, y) == pytest.approx(1.0 / reference.coef_[0, 0], rel=1e-3)
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.1)


def test_temperature_scaling_fixes_overconfidence() -> None:
    z, y = logits_with_temperature(20000, temperature=3.0, seed=3)
    raw = expected_calibration_error(y, expit(z))
    t = fit_temperature(z, y)
    scaled = expected_calibration_error(y, expit(z / t))
    assert raw > 0.05 and scaled < 0.02


def test_temperatures_per_label_and_one_class_labels_keep_one() -> None:
    z1, y1 = logits_with_temperature(5000, 0.5, seed=4)
    z2, y2 = logits_with_temperature(5000, 2.0, seed=5)
    logits = np.stack([z1, z2, z1], axis=1)
    targets = np.stack([y1, y2, np.zeros_like(y1)], axis=1)
    t = fit_temperatures(logits, targets)
    assert t[0] == pytest.approx(0.5, rel=0.15) and t[1] == pytest.approx(2.0, rel=0.15) and t[2] == 1.0
    assert all(TEMPERATURE_BOUNDS[0] <= v <= TEMPERATURE_BOUNDS[1] for v in t)


def test_probabilities_divide_logits_by_temperature() -> None:
    z = np.array([[2.0, -1.0], [0.0, 4.0]])
    np.testing.assert_allclose(probabilities(z, np.array([2.0, 0.5])), expit(z / [2.0, 0.5]))


@pytest.mark.parametrize("old", [np.ones(4), np.array([0.7, 1.3, 2.0, 0.4])])
def test_converted_thresholds_keep_every_decision(old: np.ndarray) -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(0, 4, (5000, 4))
    thresholds = np.array([0.5, 0.12, 0.83, 0.3])
    new = np.array([1.8, 0.6, 3.0, 1.0])
    converted = convert_thresholds(thresholds, old, new)
    before = probabilities(z, old) >= thresholds
    after = probabilities(z, new) >= converted
    assert (before == after).all()
    assert before.any(axis=0).all() and (~before).any(axis=0).all()  # both decisions occur for every label
    if (old == 1).all():
        np.testing.assert_allclose(converted, expit(np.log(thresholds / (1 - thresholds)) / new))


def test_unchanged_temperatures_keep_thresholds_exactly() -> None:
    thresholds = np.array([0.485, 0.3170001, 0.9])
    t = np.array([1.0, 2.5, 0.7])
    assert convert_thresholds(thresholds, t, t).tolist() == thresholds.tolist()


def test_converted_thresholds_stay_valid_config_values() -> None:
    t = convert_thresholds(np.array([1 - 1e-6, 1e-6]), np.ones(2), np.full(2, TEMPERATURE_BOUNDS[0]))
    assert (t > 0).all() and (t < 1).all()


def test_mean_ece_averages_the_labels() -> None:
    y = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])
    p = np.array([[0.05, 0.3], [0.15, 0.3], [0.85, 0.9], [0.95, 0.9]])
    per_label = [expected_calibration_error(y[:, k], p[:, k]) for k in range(2)]
    assert mean_ece(y, p) == pytest.approx(np.mean(per_label)) and per_label[0] == pytest.approx(0.1)
