"""Run a model over a :class:`~train.data.dataset.CachedDataset`: validation during training, and evaluation."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from cxr.cam import head_logits
from cxr.config import ModelConfig
from cxr.model import CXRNet
from train.data.dataset import CachedDataset, to_model_input
from train.fitting.distributed import World, gather_rows


@torch.inference_mode()
def predict_logits(
    model: CXRNet,
    dataset: CachedDataset,
    config: ModelConfig,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    workers: int = 0,
    amp_dtype: torch.dtype | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    world: World | None = None,
) -> np.ndarray:
    """(N, K) float32 logits for every item of ``dataset``, in dataset order.

    The trunk runs under ``amp_dtype`` autocast; the head runs in float32 through the function the
    predictor uses (:func:`cxr.cam.head_logits`), so validation picks thresholds on served numbers.

    Under DDP each rank predicts every ``world.size``-th item and the shares are gathered, so every
    rank returns the full array. The model is put in eval mode and restored afterwards.
    """
    device, world = torch.device(device), world or World()
    shard = Subset(dataset, range(world.rank, len(dataset), world.size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=workers, pin_memory=device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    rows, logits = [], []
    for images, _, index in loader:
        x = to_model_input(images.to(device, non_blocking=True), config, memory_format=memory_format)
        with autocast:
            features = model.forward_features(x)
        logits.append(head_logits(model, features).cpu())  # the serving head, in float32 (cxr.cam)
        rows.append(index)
    model.train(was_training)
    k = config.num_labels
    local_rows = torch.cat(rows).numpy() if rows else np.zeros(0, dtype=np.int64)
    local_logits = torch.cat(logits).numpy() if logits else np.zeros((0, k), dtype=np.float32)
    return gather_rows(local_rows, local_logits, len(dataset), world)
