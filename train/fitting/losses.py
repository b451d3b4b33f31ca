"""Weighted binary cross-entropy for the multi-label head (most findings are rare): positive weights, Wang's loss."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from train.fitting.distributed import World, all_reduce_sum


def class_pos_weight(targets: np.ndarray) -> torch.Tensor:
    """(K,) ``sqrt(#neg / #pos)`` per label over the training targets (1 for a label with no positives).

    The full ratio (about 500 for Hernia on NIH) lets a handful of images dominate the gradient;
    the square root keeps rare labels heard while staying in a range Adam handles smoothly.
    """
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return torch.from_numpy(np.sqrt(ratio).astype(np.float32))


def batch_pos_weight(targets: torch.Tensor, world: World | None = None) -> torch.Tensor:
    """Scalar ``#neg / #pos`` over all entries of the global batch (the seed recipe's weighting).

    Counts are summed over ranks, so the weight is the same as in a one-process run of the same
    batch. A batch without positives gets weight 1 (it has no positive terms to weigh).
    """
    counts = torch.stack([targets.sum(), torch.tensor(float(targets.numel()), device=targets.device)]).float()
    positives, total = all_reduce_sum(counts, world or World()).unbind()
    return torch.where(positives > 0, (total - positives) / positives.clamp(min=1.0), torch.ones_like(total))


def wang_betas(targets: torch.Tensor, world: World | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Wang et al.'s per-batch weights ``(beta_P, beta_N) = ((|P| + |N|) / |P|, (|P| + |N|) / |N|)``.

    |P| and |N| count the positive and negative entries of the global batch (all labels of all
    images, summed over ranks). A count of zero gives that side weight 0: it has no terms to weigh.
    """
    counts = torch.stack([targets.sum(), torch.tensor(float(targets.numel()), device=targets.device)]).float()
    positives, total = all_reduce_sum(counts, world or World()).unbind()
    negatives = total - positives
    return (
        torch.where(positives > 0, total / positives.clamp(min=1.0), torch.zeros_like(total)),
        torch.where(negatives > 0, total / negatives.clamp(min=1.0), torch.zeros_like(total)),
    )


def wang_weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, beta_p: torch.Tensor, beta_n: torch.Tensor
) -> torch.Tensor:
    """Wang et al.'s weighted cross-entropy (ChestX-ray8, CVPR 2017, eq. 1), averaged over the entries.

    ``beta_P * sum_{y=1} -ln sigmoid(z) + beta_N * sum_{y=0} -ln(1 - sigmoid(z))``, divided by the number of
    entries so its scale does not grow with the batch (Wang sums; the optimum is the same).
    """
    positive_terms = targets * F.softplus(-logits)  # -ln sigmoid(z)
    negative_terms = (1 - targets) * F.softplus(logits)  # -ln(1 - sigmoid(z))
    return (beta_p * positive_terms + beta_n * negative_terms).mean()
