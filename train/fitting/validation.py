"""After each epoch: the validation record (losses, AUROC per label and mean, thresholds, speed), which epoch is
best, the line printed for it, and the exported weights folder brought in line with the checkpoints.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cxr.config import ModelConfig
from train.data.dataset import CachedDataset
from train.evaluation.metrics import choose_thresholds, json_number, mean_auroc, per_label_auroc
from train.fitting import checkpoint as ckpt
from train.fitting.export import CURVES_PLOT, METRICS_LOG, export_weights, exported_epoch, write_metrics_log
from train.fitting.plots import plot_curves


def epoch_record(
    epoch: int, logits: np.ndarray, val_set: CachedDataset, train_loss: float, lr: float, seconds: float, images: int
) -> dict[str, Any]:
    """One line of metrics.jsonl: losses, validation AUROC per label and mean, thresholds, speed."""
    targets = val_set.targets
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    val_loss = F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(targets)).item()
    aurocs = per_label_auroc(targets, probabilities)
    mean = mean_auroc(targets, probabilities)
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_mean_auroc": json_number(mean),
        "val_auroc": {label: json_number(a) for label, a in zip(val_set.labels, aurocs, strict=True)},
        "thresholds": [float(t) for t in choose_thresholds(targets, probabilities)],
        "lr": lr,
        "train_seconds": seconds,
        "train_images_per_s": images / seconds,
    }


def score(record: dict[str, Any]) -> float:
    """What "best epoch" maximises: the validation mean AUROC (-inf where undefined)."""
    return -math.inf if record["val_mean_auroc"] is None else record["val_mean_auroc"]


def auroc_text(value: float | None) -> str:
    """An AUROC for logs: 4 decimals, or "n/a" where a label had one class only."""
    return "n/a" if value is None else f"{value:.4f}"


def epoch_line(record: dict[str, Any], epochs: int, best: bool) -> str:
    """The line printed after an epoch, every number rounded to at most 4 decimals."""
    return (
        f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, val loss {record['val_loss']:.4f}, "
        f"val mean AUROC {auroc_text(record['val_mean_auroc'])}{' (best)' if best else ''}, "
        f"{record['train_images_per_s']:.0f} img/s"
    )


def sync_exports(
    history: list[dict[str, Any]],
    best_epoch: int,
    checkpoints: Path,
    weights_dir: Path,
    model_config: ModelConfig,
    training_info: dict[str, Any],
) -> None:
    """Bring the exported folder in line with the checkpoints: log, curves, and the best epoch's weights."""
    for leftover in weights_dir.glob(".*.tmp*"):  # temporary files of a write that a kill interrupted
        leftover.unlink()
    if not history:
        return
    write_metrics_log(history, weights_dir / METRICS_LOG)
    plot_curves(history, weights_dir / CURVES_PLOT)
    if exported_epoch(weights_dir) == best_epoch:
        return
    best = history[best_epoch - 1]
    state = ckpt.load_checkpoint(ckpt.checkpoint_path(checkpoints, best_epoch))["model"]
    info = {**training_info, "best_epoch": best_epoch, "val_mean_auroc": best["val_mean_auroc"],
            "val_auroc": best["val_auroc"]}  # fmt: skip
    export_weights(weights_dir, state, model_config, best["thresholds"], info)
