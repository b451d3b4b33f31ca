"""Training curves as a PNG (matplotlib's object API with the Agg canvas: no display, no global state)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Losses, validation AUROC (mean and per label) and learning rate against epoch."""
    epochs = [record["epoch"] for record in history]
    figure = Figure(figsize=(15, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    loss, auroc, lr = figure.subplots(1, 3)
    loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train (weighted BCE)")
    loss.plot(epochs, [r["val_loss"] for r in history], "o-", label="validation (BCE)")
    loss.set(title="loss", xlabel="epoch")
    loss.legend()
    labels = list(history[-1]["val_auroc"]) if history else []
    colors = matplotlib.colormaps["tab20"].colors
    for i, label in enumerate(labels):
        values = [_nan_if_none(r["val_auroc"].get(label)) for r in history]
        auroc.plot(epochs, values, lw=0.9, color=colors[i % len(colors)], label=label.replace("_", " "))
    auroc.plot(epochs, [_nan_if_none(r["val_mean_auroc"]) for r in history], "ko-", lw=2.2, label="mean")
    auroc.set(title="validation AUROC per finding", xlabel="epoch", ylabel="AUROC")
    auroc.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # 14 findings: beside the panel
    loss.set_ylabel("loss")
    lr.plot(epochs, [r["lr"] for r in history], "o-")
    lr.set(title="learning rate at epoch end", xlabel="epoch", ylabel="learning rate")
    for axes in (loss, auroc, lr):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    return path


def _nan_if_none(value: float | None) -> float:
    return float("nan") if value is None else value
