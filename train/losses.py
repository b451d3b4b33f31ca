"""Positive weights for the multi-label binary cross-entropy (most findings are rare)."""

from __future__ import annotations

import numpy as np
import torch

from train.distributed import World, all_reduce_sum


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
