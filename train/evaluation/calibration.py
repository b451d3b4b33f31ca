"""Are the probabilities honest? Reliability, ECE, Brier score, calibration slope, and Platt scaling.

A network trained with a positive weight w on a label learns logits shifted by about ``log w`` (the
weighted loss is minimised by ``logit(p) + log w``), so its raw probabilities overstate rare
findings. Dividing by a temperature (Guo et al. 2017) rescales logits but cannot shift them; a
per-label bias and temperature fitted on validation (Platt scaling) can. The probability is
``sigmoid((logit + bias) / temperature)``, computed by :func:`cxr.predictor.calibrated_probabilities`
for evaluation exactly as for serving. Both parameters keep the ranking (AUROC is unchanged), and
the config's probability thresholds are converted along with them so every decision stays the same
(:func:`convert_thresholds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit, logit
from sklearn.metrics import brier_score_loss

from cxr.config import ModelConfig
from cxr.predictor import calibrated_probabilities

# Temperatures outside this range mean the logits carry (almost) no information, or a bug.
TEMPERATURE_BOUNDS = (0.05, 20.0)
# A fitted logistic intercept beyond this (in logit units) means separation, not calibration.
INTERCEPT_BOUND = 50.0
BinStrategy = Literal["width", "mass"]


@dataclass(frozen=True)
class Scaling:
    """Per-label temperatures and biases: ``p = sigmoid((logit + bias) / temperature)``."""

    temperatures: np.ndarray  # (K,)
    biases: np.ndarray  # (K,)

    @classmethod
    def of(cls, config: ModelConfig) -> Scaling:
        """The scaling a config applies."""
        return cls(np.asarray(config.temperatures, dtype=np.float64), np.asarray(config.biases, dtype=np.float64))

    def apply_to(self, config: ModelConfig) -> ModelConfig:
        """``config`` with these temperatures and biases and its thresholds converted to keep every decision."""
        thresholds = convert_thresholds(np.asarray(config.thresholds), Scaling.of(config), self)
        return config.replace(
            temperatures=tuple(self.temperatures.tolist()),
            biases=tuple(self.biases.tolist()),
            thresholds=tuple(thresholds.tolist()),
        )


def probabilities(logits: np.ndarray, scaling: Scaling) -> np.ndarray:
    """(N, K) logits -> (N, K) probabilities, computed as :class:`cxr.predictor.Predictor` computes them."""
    z = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    return calibrated_probabilities(z, scaling.temperatures, scaling.biases).numpy().astype(np.float64)


@dataclass(frozen=True)
class ReliabilityBins:
    """Probability bins of one label: how many images, mean predicted, fraction positive."""

    edges: np.ndarray  # (n_bins + 1,)
    count: np.ndarray  # (n_bins,)
    mean_probability: np.ndarray  # (n_bins,), NaN for empty bins
    fraction_positive: np.ndarray  # (n_bins,), NaN for empty bins

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean gap between the two, over non-empty bins."""
        used = self.count > 0
        gaps = np.abs(self.fraction_positive[used] - self.mean_probability[used])
        return float((gaps * self.count[used]).sum() / self.count.sum())


def reliability_bins(
    y_true: np.ndarray, probability: np.ndarray, n_bins: int = 10, strategy: BinStrategy = "width"
) -> ReliabilityBins:
    """Bin one label's probabilities into ``n_bins`` equal-width bins over [0, 1], or equal-mass bins.

    Equal-mass bins have edges at the probabilities' quantiles, so each holds about N / n_bins images:
    at 0.2-5% prevalence nearly every image falls in the first equal-width bin, which then says little.
    A probability on an inner edge goes to the lower bin, as in ``sklearn.calibration.calibration_curve``
    (``strategy="uniform"`` / ``"quantile"``).
    """
    y_true, probability = np.asarray(y_true, dtype=np.float64), np.asarray(probability, dtype=np.float64)
    if strategy == "mass":
        edges = np.percentile(probability, np.linspace(0.0, 100.0, n_bins + 1))
    else:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.searchsorted(edges[1:-1], probability)
    count = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_probability = np.bincount(bin_of, probability, n_bins) / count
        fraction_positive = np.bincount(bin_of, y_true, n_bins) / count
    return ReliabilityBins(edges, count, mean_probability, fraction_positive)


def expected_calibration_error(
    y_true: np.ndarray, probability: np.ndarray, n_bins: int = 10, strategy: BinStrategy = "width"
) -> float:
    """ECE of one label over equal-width (default) or equal-mass bins."""
    return reliability_bins(y_true, probability, n_bins, strategy).ece


def mean_ece(y_true: np.ndarray, probability: np.ndarray, n_bins: int = 10, strategy: BinStrategy = "width") -> float:
    """(N, K) targets and probabilities -> ECE averaged over the K labels."""
    return float(
        np.mean(
            [
                expected_calibration_error(y_true[:, k], probability[:, k], n_bins, strategy)
                for k in range(y_true.shape[1])
            ]
        )
    )


def brier_score(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (scikit-learn's ``brier_score_loss``)."""
    return float(brier_score_loss(np.asarray(y_true).astype(int), probability, pos_label=1))


def logistic_fit(x: np.ndarray, y: np.ndarray, slope_bounds: tuple[float, float]) -> tuple[float, float]:
    """Maximum-likelihood ``(slope, intercept)`` of ``y ~ Bernoulli(sigmoid(slope * x + intercept))``.

    An unpenalised logistic regression on one feature (convex), solved with L-BFGS-B and the exact
    gradient; the bounds keep a separable sample from running off to infinity.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        s = params[0] * x + params[1]
        residual = expit(s) - y
        return float(np.mean(np.logaddexp(0.0, s) - y * s)), np.array([np.mean(residual * x), np.mean(residual)])

    start = np.array([np.clip(1.0, *slope_bounds), 0.0])
    bounds = [slope_bounds, (-INTERCEPT_BOUND, INTERCEPT_BOUND)]
    result = minimize(
        loss_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-14, "gtol": 1e-10}
    )
    return float(result.x[0]), float(result.x[1])


def fit_platt(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, float]:
    """``(temperature, bias)`` minimising the cross-entropy of ``sigmoid((logit + bias) / T)`` on one label.

    Fitted as the logistic regression ``sigmoid(a * logit + c)``, so ``T = 1 / a`` and ``bias = c / a``,
    with T kept in :data:`TEMPERATURE_BOUNDS`. A label with only one class on validation has no
    defined optimum and keeps ``(1, 0)``.
    """
    y = np.asarray(y_true, dtype=np.float64)
    if not 0 < y.sum() < len(y):
        return 1.0, 0.0
    slope_bounds = (1.0 / TEMPERATURE_BOUNDS[1], 1.0 / TEMPERATURE_BOUNDS[0])
    a, c = logistic_fit(logits, y, slope_bounds)
    return 1.0 / a, c / a


def fit_scaling(logits: np.ndarray, y_true: np.ndarray) -> Scaling:
    """(N, K) validation logits and targets -> per-label Platt scaling (:func:`fit_platt`)."""
    fitted = np.array([fit_platt(logits[:, k], y_true[:, k]) for k in range(logits.shape[1])]).reshape(-1, 2)
    return Scaling(fitted[:, 0], fitted[:, 1])


def calibration_slope_intercept(y_true: np.ndarray, probability: np.ndarray) -> tuple[float, float]:
    """Calibration slope and intercept of one label: ``y ~ sigmoid(intercept + slope * logit(p))``.

    Perfect calibration is slope 1, intercept 0; slope < 1 means over-confident (too extreme)
    probabilities, intercept < 0 (at slope 1) too high ones. NaN for a label with one class only.
    """
    y = np.asarray(y_true, dtype=np.float64)
    if not 0 < y.sum() < len(y):
        return float("nan"), float("nan")
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-7, 1 - 1e-7)  # float32 sigmoid reaches 0 and 1
    return logistic_fit(logit(p), y, (-INTERCEPT_BOUND, INTERCEPT_BOUND))


def convert_thresholds(thresholds: np.ndarray, old: Scaling, new: Scaling) -> np.ndarray:
    """Probability thresholds under scaling ``new`` that make the same decisions as under ``old``.

    ``sigmoid((z + b) / T) >= t``  <=>  ``z >= T * logit(t) - b``, so the new threshold is
    ``t' = sigmoid((T_old * logit(t) - b_old + b_new) / T_new)``. Results are kept inside
    [1e-6, 1 - 1e-6], since a config threshold must lie strictly in (0, 1).
    """
    t = np.asarray(thresholds, dtype=np.float64)
    cut = old.temperatures * logit(t) - old.biases  # the logit where decisions flip
    converted = np.clip(expit((cut + new.biases) / new.temperatures), 1e-6, 1 - 1e-6)
    unchanged = (old.temperatures == new.temperatures) & (old.biases == new.biases)
    return np.where(unchanged, t, converted)  # an unchanged label keeps its threshold bit for bit
