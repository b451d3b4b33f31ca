"""Are the probabilities honest? Reliability curves, ECE and Brier score per label, and temperature scaling.

Temperature scaling divides each label's logit by a positive T fitted on validation (Guo et al.
2017), which changes the probabilities but not their ranking (AUROC is unchanged). Because the
config's decision thresholds are probabilities, they are converted along with T so that every
decision stays the same (:func:`convert_thresholds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, logit
from sklearn.metrics import brier_score_loss

# Temperatures outside this range mean the logits carry (almost) no information, or a bug.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def probabilities(logits: np.ndarray, temperatures: Sequence[float] | np.ndarray) -> np.ndarray:
    """(N, K) logits -> (N, K) probabilities ``sigmoid(logit / T)``, as :class:`cxr.predictor.Predictor` does."""
    return expit(np.asarray(logits, dtype=np.float64) / np.asarray(temperatures, dtype=np.float64))


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width probability bins of one label: how many images, mean predicted, fraction positive."""

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


def reliability_bins(y_true: np.ndarray, probability: np.ndarray, n_bins: int = 10) -> ReliabilityBins:
    """Bin one label's probabilities into ``n_bins`` equal-width bins over [0, 1].

    A probability on an inner edge goes to the lower bin, as in ``sklearn.calibration.calibration_curve``.
    """
    y_true, probability = np.asarray(y_true, dtype=np.float64), np.asarray(probability, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.searchsorted(edges[1:-1], probability)
    count = np.bincount(bin_of, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_probability = np.bincount(bin_of, probability, n_bins) / count
        fraction_positive = np.bincount(bin_of, y_true, n_bins) / count
    return ReliabilityBins(edges, count, mean_probability, fraction_positive)


def expected_calibration_error(y_true: np.ndarray, probability: np.ndarray, n_bins: int = 10) -> float:
    """ECE of one label over equal-width bins."""
    return reliability_bins(y_true, probability, n_bins).ece


def mean_ece(y_true: np.ndarray, probability: np.ndarray, n_bins: int = 10) -> float:
    """(N, K) targets and probabilities -> ECE averaged over the K labels."""
    return float(
        np.mean([expected_calibration_error(y_true[:, k], probability[:, k], n_bins) for k in range(y_true.shape[1])])
    )


def brier_score(y_true: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between probability and outcome (scikit-learn's ``brier_score_loss``)."""
    return float(brier_score_loss(np.asarray(y_true).astype(int), probability, pos_label=1))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The T > 0 minimising the binary cross-entropy of ``sigmoid(logits / T)`` on one label.

    The loss is convex in 1/T, so a bounded scalar search on log T finds the optimum. A label
    with only one class on validation has no defined optimum and keeps T = 1.
    """
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(y_true, dtype=np.float64)
    if not 0 < y.sum() < len(y):
        return 1.0

    def loss(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, scaled) - y * scaled))

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def fit_temperatures(logits: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    """(N, K) validation logits and targets -> (K,) per-label temperatures."""
    return np.array([fit_temperature(logits[:, k], y_true[:, k]) for k in range(logits.shape[1])])


def convert_thresholds(thresholds: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Probability thresholds under temperatures ``new`` that make the same decisions as under ``old``.

    ``sigmoid(z / T_old) >= t``  <=>  ``z >= T_old * logit(t)``  <=>  ``sigmoid(z / T_new) >= t'`` with
    ``t' = sigmoid(logit(t) * T_old / T_new)`` (for T_old = 1: ``sigmoid(logit(t) / T_new)``).
    Results are kept inside [1e-6, 1 - 1e-6], since a config threshold must lie strictly in (0, 1).
    """
    t = np.asarray(thresholds, dtype=np.float64)
    old, new = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    converted = np.clip(expit(logit(t) * old / new), 1e-6, 1 - 1e-6)
    return np.where(old == new, t, converted)  # an unchanged temperature keeps its threshold bit for bit
