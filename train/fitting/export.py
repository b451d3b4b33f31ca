"""The exported weights folder: the best epoch as ``config.json`` + ``model.safetensors`` that cxr loads,
with the split, the per-epoch metrics log and the training curves next to them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from cxr.config import ModelConfig
from cxr.model import CXRNet
from cxr.weights import WEIGHTS_FILE, WeightsError, load_config, save_model, sha256_of
from train.data.nih import SPLIT_FILE as SPLIT_FILE  # its home is the split's module; this name stays for 0.1 users

METRICS_LOG = "metrics.jsonl"
CURVES_PLOT = "curves.png"


def export_weights(
    folder: str | Path,
    state: dict[str, torch.Tensor],
    config: ModelConfig,
    thresholds: Sequence[float],
    training: dict[str, Any],
) -> Path:
    """Save a trained model: ``trained=True``, per-label ``thresholds``, ``metadata["training"] = training``."""
    config = config.replace(
        trained=True, thresholds=tuple(thresholds), metadata={**config.metadata, "training": training}
    )
    with torch.random.fork_rng(devices=[]):  # the throwaway random init must not move the run's RNG
        model = CXRNet(config)
    model.load_state_dict(state, strict=True)
    return save_model(model, folder)


def exported_epoch(folder: str | Path) -> int | None:
    """The best epoch recorded in an intact exported folder; None if absent, unreadable or inconsistent."""
    folder = Path(folder)
    try:
        config = load_config(folder)
        intact = sha256_of(folder / WEIGHTS_FILE) == config.metadata.get("weights_sha256")
    except (WeightsError, OSError):
        return None
    epoch = config.metadata.get("training", {}).get("best_epoch")
    return epoch if intact and isinstance(epoch, int) else None


def write_metrics_log(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Rewrite the JSON-lines log (one object per epoch) atomically from the run's history."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(record) + "\n" for record in history), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_metrics_log(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics log, in epoch order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
