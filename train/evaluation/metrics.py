"""Per-label ranking metrics and operating points, shared by the training loop and evaluation.

AUROC comes from scikit-learn; a label with only one class present has no AUROC (NaN) and is left
out of means rather than counted as 0.5.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def per_label_auroc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """(N, K) binary targets and scores -> (K,) AUROC, NaN where a label lacks positives or negatives."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    result = np.full(y_true.shape[1], np.nan)
    for k in range(y_true.shape[1]):
        if 0 < y_true[:, k].sum() < len(y_true):
            result[k] = roc_auc_score(y_true[:, k], y_score[:, k])
    return result


def mean_auroc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean AUROC over the labels where it is defined (NaN if none is)."""
    aurocs = per_label_auroc(y_true, y_score)
    return float(np.nanmean(aurocs)) if np.isfinite(aurocs).any() else float("nan")


def f1_optimal_threshold(y_true: np.ndarray, y_score: np.ndarray, default: float = 0.5) -> float:
    """The score cut-off that maximises F1 for one label (``default`` when it has no positives).

    Kept strictly inside (0, 1) so it is a valid probability threshold in a model config.
    """
    y_true = np.asarray(y_true)
    if y_true.sum() == 0:
        return default
    precision, recall, thresholds = precision_recall_curve(y_true, y_score)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(np.clip(thresholds[int(np.argmax(f1))], 1e-6, 1 - 1e-6))


def choose_thresholds(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """(K,) per-label F1-optimal thresholds chosen on validation predictions."""
    return np.array([f1_optimal_threshold(y_true[:, k], y_score[:, k]) for k in range(y_true.shape[1])])


def per_label_auprc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """(N, K) targets and scores -> (K,) average precision (area under the PR curve), NaN without positives.

    A random classifier's AUPRC equals the label's prevalence, so read it next to :func:`prevalence`.
    """
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    result = np.full(y_true.shape[1], np.nan)
    for k in range(y_true.shape[1]):
        if y_true[:, k].sum() > 0:
            result[k] = average_precision_score(y_true[:, k], y_score[:, k])
    return result


def prevalence(y_true: np.ndarray) -> np.ndarray:
    """(N, K) binary targets -> (K,) fraction of positive images per label."""
    return np.asarray(y_true, dtype=np.float64).mean(axis=0)


def operating_point_metrics(y_true: np.ndarray, y_score: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts and rates per label when ``score >= threshold`` means positive (as in the app).

    Returns (K,) arrays ``tp, fp, tn, fn`` (integers) and ``sensitivity, specificity, ppv, npv, f1``
    (NaN where the denominator is zero, e.g. PPV when nothing is called positive).
    """
    truth = np.asarray(y_true).astype(bool)
    called = np.asarray(y_score) >= np.asarray(thresholds, dtype=np.float64)[None, :]
    tp = (called & truth).sum(axis=0)
    fp = (called & ~truth).sum(axis=0)
    tn = (~called & ~truth).sum(axis=0)
    fn = (~called & truth).sum(axis=0)
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def json_number(value: float) -> float | None:
    """A metric as JSON allows it: a float, or None (null) where it is undefined (NaN)."""
    return float(value) if np.isfinite(value) else None
