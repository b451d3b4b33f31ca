"""Bootstrap confidence intervals for AUROC that resample patients, not images.

NIH ChestX-ray14 holds several follow-up images of many patients; they are not independent, and
resampling images as if they were gives intervals that are too narrow. Each bootstrap replicate
therefore draws patients with replacement and keeps all of their images, which is the same as
weighting every image by its patient's draw count.

With those weights the AUROC of all replicates comes from one sort per label
(:func:`weighted_auroc`), so 1,000 replicates over the 25,596 test images take seconds instead of
the minutes that 14,000 calls to scikit-learn's ``roc_auc_score`` need (``bench/bootstrap_speed.py``);
tests check it equals ``roc_auc_score(..., sample_weight=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from train.evaluation.metrics import per_label_auroc


@dataclass(frozen=True)
class BootstrapSettings:
    """How intervals are computed; recorded next to the numbers in metrics.json."""

    n_resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    unit: str = "patient"
    method: str = "percentile"


def patient_resample_weights(groups: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B, N) image weights: how often each image's patient was drawn in each of B replicates."""
    _, patient_of_image = np.unique(np.asarray(groups), return_inverse=True)
    n_patients = int(patient_of_image.max()) + 1
    draws = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=n_resamples)
    return draws[:, patient_of_image].astype(np.float64)


def weighted_auroc(y_true: np.ndarray, y_score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one label under each row of ``weights`` (B, N) -> (B,), NaN where a class has no weight.

    Mann-Whitney form: for every positive, the weight of negatives scored below it plus half the
    weight of tied negatives, which is what ``roc_auc_score`` with ``sample_weight`` computes.
    """
    order = np.argsort(y_score, kind="stable")
    scores = np.asarray(y_score)[order]
    positive = np.asarray(y_true)[order].astype(bool)
    w = np.atleast_2d(weights)[:, order]
    tie_starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    pos = np.add.reduceat(w * positive, tie_starts, axis=1)
    neg = np.add.reduceat(w * ~positive, tie_starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def bootstrap_aurocs(
    y_true: np.ndarray, y_score: np.ndarray, groups: np.ndarray, settings: BootstrapSettings, chunk: int = 100
) -> np.ndarray:
    """(B, K) per-label AUROC of every patient-level bootstrap replicate."""
    rng = np.random.default_rng(settings.seed)
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    replicates = np.empty((settings.n_resamples, y_true.shape[1]))
    for start in range(0, settings.n_resamples, chunk):
        n = min(chunk, settings.n_resamples - start)
        weights = patient_resample_weights(groups, n, rng)
        for k in range(y_true.shape[1]):
            replicates[start : start + n, k] = weighted_auroc(y_true[:, k], y_score[:, k], weights)
    return replicates


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> np.ndarray:
    """(B, ...) replicates -> (..., 2) lower and upper percentile bounds over the finite replicates.

    NaN replicates (no positive or no negative image drawn) are left out; an estimate with no
    finite replicate gets a NaN interval.
    """
    tail = 50.0 * (1.0 - confidence)
    values = np.asarray(replicates, dtype=np.float64)
    columns = values.reshape(len(values), -1)
    bounds = np.full((columns.shape[1], 2), np.nan)
    for j, column in enumerate(columns.T):
        finite = column[np.isfinite(column)]
        if finite.size:
            bounds[j] = np.percentile(finite, [tail, 100.0 - tail])
    return bounds.reshape(*values.shape[1:], 2)


@dataclass(frozen=True)
class AurocIntervals:
    """Point estimates and patient-bootstrap intervals of per-label and mean AUROC."""

    per_label: np.ndarray  # (K,) AUROC, NaN where undefined
    per_label_ci: np.ndarray  # (K, 2)
    means: dict[str, float]  # name of a label subset -> mean AUROC over its defined labels
    means_ci: dict[str, tuple[float, float]]


def auroc_with_intervals(
    y_true: np.ndarray,
    y_score: np.ndarray,
    groups: np.ndarray,
    subsets: dict[str, list[int]],
    settings: BootstrapSettings | None = None,
) -> AurocIntervals:
    """AUROC per label and its mean over each named subset of label indices, each with a CI.

    A subset's mean uses the labels whose AUROC is defined on the full data; a replicate missing
    one of them (no positive drawn) averages over the rest rather than being dropped.
    """
    settings = settings or BootstrapSettings()
    point = per_label_auroc(y_true, y_score)
    replicates = bootstrap_aurocs(y_true, y_score, groups, settings)
    means: dict[str, float] = {}
    means_ci: dict[str, tuple[float, float]] = {}
    for name, indices in subsets.items():
        defined = [k for k in indices if np.isfinite(point[k])]
        if not defined:
            means[name], means_ci[name] = float("nan"), (float("nan"), float("nan"))
            continue
        means[name] = float(point[defined].mean())
        replicate_means = _nan_mean_rows(replicates[:, defined])
        lower, upper = percentile_interval(replicate_means, settings.confidence)
        means_ci[name] = (float(lower), float(upper))
    return AurocIntervals(point, percentile_interval(replicates, settings.confidence), means, means_ci)


def _nan_mean_rows(values: np.ndarray) -> np.ndarray:
    """Row means over finite entries; NaN (without a warning) for a row with none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)
