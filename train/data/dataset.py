"""A Dataset over the prepared cache, and the step that turns its uint8 batches into network input.

Workers only copy uint8 rows; conversion to float, augmentation and normalisation happen on the
training device, on whole batches, through :func:`cxr.preprocess.normalize`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cxr.config import ModelConfig
from cxr.preprocess import normalize
from train.data.augment import Augmentation
from train.data.cache import CacheError, ImageCache
from train.data.nih import Record, label_matrix


class CachedDataset(Dataset):
    """Records of one split, read from an :class:`ImageCache`.

    Item ``i`` is ``(image, target, i)``: the (S, S) uint8 prepared image, the (K,) float32 target
    in ``labels`` order, and ``i`` itself (augmentation and sharded prediction key on it).
    """

    def __init__(self, cache: ImageCache, records: Sequence[Record], labels: Sequence[str]) -> None:
        missing = cache.not_ready([record.image for record in records])
        if missing:
            raise CacheError(
                f"{len(missing)} of {len(records)} images are not in the prepared cache at {cache.folder} "
                f"(e.g. {missing[0]}); run `python -m train prepare --data-dir DATA_DIR "
                f"--image-size {cache.image_size} --cache-dir {cache.folder}` first, or, to use only the images "
                "at hand, add --available-only to prepare and fit."
            )
        self.cache = cache
        self.records = list(records)
        self.labels = tuple(labels)
        self.rows = np.array([cache.row(record.image) for record in records], dtype=np.int64)
        self.targets = label_matrix(records, labels)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return torch.from_numpy(self.cache.read(int(self.rows[i]))), torch.from_numpy(self.targets[i]), i


def to_model_input(
    images: torch.Tensor,
    config: ModelConfig,
    augment: tuple[Augmentation, torch.Tensor] | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """(N, S, S) uint8 cache batch (on the target device) -> (N, 3, S, S) normalised float input.

    Args:
        images: prepared images as stored in the cache.
        config: the model's config (mean and std of :func:`cxr.preprocess.normalize`).
        augment: an :class:`Augmentation` and its sampled parameters, for training batches.
        memory_format: ``torch.channels_last`` to match a channels-last model.
    """
    x = images.float().div_(255.0)
    if augment is not None:
        augmentation, params = augment
        x = augmentation.apply(x, params)
    return normalize(x, config).contiguous(memory_format=memory_format)
