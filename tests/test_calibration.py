"""Calibration metrics against scikit-learn and hand-computed cases; Platt scaling (bias + temperature), thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression

from cxr.config import ModelConfig
from train.evaluation.calibration import (
    TEMPERATURE_BOUNDS,
    Scaling,
    brier_score,
    calibration_slope_intercept,
    convert_thresholds,
    expected_calibration_error,
    fit_platt,
    fit_scaling,
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


def scaling(temperatures, biases) -> Scaling:
    return Scaling(np.asarray(temperatures, dtype=np.float64), np.asarray(biases, dtype=np.float64))


def test_equal_mass_bins_equal_sklearn_quantile_calibration_curve() -> None:
    rng = np.random.default_rng(7)
    p = expit(rng.normal(-3.0, 1.0, 2000))  # a rare finding: nearly everything in the first equal-width bin
    y = (rng.random(len(p)) < p).astype(int)
    bins = reliability_bins(y, p, n_bins=10, strategy="mass")
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(bins.fraction_positive, prob_true)
    np.testing.assert_allclose(bins.mean_probability, prob_pred)
    assert bins.count.min() >= 199 and bins.count.max() <= 201
    assert reliability_bins(y, p, n_bins=10).count[0] > 0.75 * len(p)  # why equal-mass bins are reported


def test_platt_fit_equals_unpenalised_logistic_regression() -> None:
    rng = np.random.default_rng(8)
    z = rng.normal(0.0, 3.0, 20000)
    y = (rng.random(len(z)) < expit((z - 1.5) / 2.5)).astype(int)  # calibrated by T = 2.5, bias = -1.5
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(z[:, None], y)
    a, c = reference.coef_[0, 0], reference.intercept_[0]
    temperature, bias = fit_platt(z, y)
    assert temperature == pytest.approx(1.0 / a, rel=1e-4) and bias == pytest.approx(c / a, abs=1e-3)
    assert temperature == pytest.approx(2.5, rel=0.1) and bias == pytest.approx(-1.5, abs=0.15)


def positive_weight_case(n: int, seed: int, w: float = 3.95) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a net trained with positive weight ``w`` on a ~6% finding: the true logit shifted by log w."""
    rng = np.random.default_rng(seed)
    true_logit = -3.35 + 1.2 * rng.normal(size=n)
    y = (rng.random(n) < expit(true_logit)).astype(int)
    return (true_logit + np.log(w))[:, None], y[:, None]


def test_bias_removes_the_positive_weight_offset_that_a_temperature_cannot() -> None:
    """Issue 10 item 1: temperature scaling left the mean probability near twice the true rate."""
    val_logits, val_y = positive_weight_case(50_000, seed=0)
    test_logits, test_y = positive_weight_case(50_000, seed=1)
    rate = test_y.mean()
    assert 0.05 < rate < 0.07
    # Before: a temperature alone (logistic regression without intercept) cannot shift the logits.
    only_t = 1.0 / LogisticRegression(fit_intercept=False, C=np.inf).fit(val_logits, val_y[:, 0]).coef_[0, 0]
    before = probabilities(test_logits, scaling([only_t], [0.0]))
    assert before.mean() > rate + 0.03 and expected_calibration_error(test_y[:, 0], before[:, 0]) > 0.03
    # After: bias and temperature together (Platt) give the true rate, and undo about log w.
    fitted = fit_scaling(val_logits, val_y)
    after = probabilities(test_logits, fitted)
    assert after.mean() == pytest.approx(rate, abs=0.003)
    assert expected_calibration_error(test_y[:, 0], after[:, 0]) < 0.008
    assert expected_calibration_error(test_y[:, 0], after[:, 0], strategy="mass") < 0.008
    assert fitted.biases[0] == pytest.approx(-np.log(3.95), abs=0.1) and fitted.temperatures[0] == pytest.approx(
        1, abs=0.05
    )


def test_scaling_per_label_and_one_class_labels_keep_identity() -> None:
    (z1, y1), (z2, y2) = positive_weight_case(20_000, 2, w=2.0), positive_weight_case(20_000, 3, w=10.0)
    logits = np.hstack([z1, z2, z1])
    targets = np.hstack([y1, y2, np.zeros_like(y1)])
    fitted = fit_scaling(logits, targets)
    np.testing.assert_allclose(fitted.biases[:2], -np.log([2.0, 10.0]), atol=0.15)
    assert fitted.temperatures[2] == 1.0 and fitted.biases[2] == 0.0
    assert all(TEMPERATURE_BOUNDS[0] <= v <= TEMPERATURE_BOUNDS[1] for v in fitted.temperatures)


def test_probabilities_add_the_bias_then_divide_by_the_temperature() -> None:
    z = np.array([[2.0, -1.0], [0.0, 4.0]])
    expected = expit((z + np.array([0.5, -2.0])) / [2.0, 0.5])
    np.testing.assert_allclose(probabilities(z, scaling([2.0, 0.5], [0.5, -2.0])), expected, rtol=1e-6)


def test_calibration_slope_and_intercept_equal_logistic_regression_on_the_logit() -> None:
    rng = np.random.default_rng(9)
    z = rng.normal(-2.0, 2.0, 20000)
    y = (rng.random(len(z)) < expit(z)).astype(int)
    slope, intercept = calibration_slope_intercept(y, expit(z))
    assert slope == pytest.approx(1.0, abs=0.05) and intercept == pytest.approx(0.0, abs=0.08)
    overconfident = expit(2 * z)  # too extreme: slope 1/2
    slope, intercept = calibration_slope_intercept(y, overconfident)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(2 * z[:, None], y)
    assert slope == pytest.approx(reference.coef_[0, 0], rel=1e-4) and slope == pytest.approx(0.5, abs=0.03)
    assert intercept == pytest.approx(reference.intercept_[0], abs=1e-3)
    assert np.isnan(calibration_slope_intercept(np.zeros(5), np.full(5, 0.2))).all()


@pytest.mark.parametrize(
    "old", [scaling(np.ones(4), np.zeros(4)), scaling([0.7, 1.3, 2.0, 0.4], [0.0, -1.2, 0.8, 2.0])], ids=["1-0", "fit"]
)
def test_converted_thresholds_keep_every_decision(old: Scaling) -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(0, 4, (5000, 4))
    thresholds = np.array([0.5, 0.12, 0.83, 0.3])
    new = scaling([1.8, 0.6, 3.0, 1.0], [-1.4, 0.3, 0.0, -2.5])
    converted = convert_thresholds(thresholds, old, new)
    before = probabilities(z, old) >= thresholds
    after = probabilities(z, new) >= converted
    assert (before == after).all()
    assert before.any(axis=0).all() and (~before).any(axis=0).all()  # both decisions occur for every label
    if (old.temperatures == 1).all():
        np.testing.assert_allclose(
            converted, expit((np.log(thresholds / (1 - thresholds)) + new.biases) / new.temperatures)
        )


def test_applying_a_scaling_to_a_config_keeps_decisions_and_round_trips(tmp_path) -> None:
    config = ModelConfig(labels=("A", "B"), thresholds=(0.3, 0.6))
    fitted = scaling([1.5, 0.8], [-1.0, 0.4])
    calibrated = fitted.apply_to(config)
    calibrated.save(tmp_path / "config.json")
    loaded = ModelConfig.load(tmp_path / "config.json")
    assert loaded == calibrated and loaded.biases == (-1.0, 0.4) and loaded.temperatures == (1.5, 0.8)
    z = np.linspace(-6, 6, 2001)[:, None].repeat(2, axis=1)
    assert (
        (probabilities(z, Scaling.of(config)) >= config.thresholds)
        == (probabilities(z, Scaling.of(loaded)) >= loaded.thresholds)
    ).all()


def test_unchanged_scaling_keeps_thresholds_exactly() -> None:
    thresholds = np.array([0.485, 0.3170001, 0.9])
    same = scaling([1.0, 2.5, 0.7], [0.0, -1.0, 0.3])
    assert convert_thresholds(thresholds, same, same).tolist() == thresholds.tolist()


def test_converted_thresholds_stay_valid_config_values() -> None:
    t = convert_thresholds(
        np.array([1 - 1e-6, 1e-6]),
        scaling(np.ones(2), np.zeros(2)),
        scaling(np.full(2, TEMPERATURE_BOUNDS[0]), [5, -5]),
    )
    assert (t > 0).all() and (t < 1).all()


def test_mean_ece_averages_the_labels() -> None:
    y = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])
    p = np.array([[0.05, 0.3], [0.15, 0.3], [0.85, 0.9], [0.95, 0.9]])
    per_label = [expected_calibration_error(y[:, k], p[:, k]) for k in range(2)]
    assert mean_ece(y, p) == pytest.approx(np.mean(per_label)) and per_label[0] == pytest.approx(0.1)
