"""The evaluation's PNG plots: ROC and PR curves, AUROC forest plot, reliability, subgroups, localization.

matplotlib's ``Figure`` API is used directly (no pyplot, so no GUI backend and no global figure state).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from train.evaluation.published import PUBLISHED
from train.evaluation.tables import Metrics, default_region, number, pretty

PLOT_FILES = {
    "roc": "roc_curves.png",
    "pr": "pr_curves.png",
    "auroc": "auroc_ci.png",
    "reliability": "reliability.png",
    "subgroups": "subgroups.png",
    "localization": "localization.png",
}


def _grid(n: int, size: float = 2.6) -> tuple[Figure, np.ndarray]:
    cols = min(n, 4) if n > 1 else 1
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(size * cols, size * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig: Figure, path: Path, metrics: Metrics) -> str:
    """Write the figure; one measured on synthetic images says so on the image itself."""
    fig.tight_layout()
    if metrics.get("dataset", "").startswith("synthetic"):
        fig.text(0.995, 0.005, "SYNTHETIC DATA", ha="right", va="bottom", color="C3", fontsize=9, weight="bold")
    fig.savefig(path, dpi=110)
    return path.name


def plot_curves(y_true: np.ndarray, probability: np.ndarray, metrics: Metrics, folder: Path) -> dict[str, str]:
    """ROC and precision-recall curves, one panel per finding."""
    labels = metrics["labels"]
    written = {}
    for key, curve, xlabel, ylabel in (
        ("roc", roc_curve, "1 - specificity", "Sensitivity"),
        ("pr", precision_recall_curve, "Recall", "Precision"),
    ):
        fig, axes = _grid(len(labels))
        for k, (ax, label) in enumerate(zip(axes, labels, strict=False)):
            m = metrics["per_label"][label]
            ax.set_title(pretty(label), fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.01)
            ax.tick_params(labelsize=7)
            if not 0 < y_true[:, k].sum() < len(y_true):
                ax.text(0.5, 0.5, "one class only", ha="center", fontsize=8)
                continue
            if key == "roc":
                fpr, tpr, _ = curve(y_true[:, k], probability[:, k])
                ax.plot(fpr, tpr, lw=1.2)
                ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
                ax.plot(1 - m["specificity"], m["sensitivity"], "o", ms=4, c="C3")
                ax.text(0.97, 0.05, f"AUROC {number(m['auroc'])}", ha="right", fontsize=8)
            else:
                precision, recall, _ = curve(y_true[:, k], probability[:, k])
                ax.plot(recall, precision, lw=1.2)
                ax.axhline(m["prevalence"], ls=":", c="grey", lw=0.8)
                if m["ppv"] is not None:
                    ax.plot(m["sensitivity"], m["ppv"], "o", ms=4, c="C3")
                ax.text(0.97, 0.92, f"AUPRC {number(m['auprc'])}", ha="right", fontsize=8)
            ax.set_xlabel(xlabel, fontsize=7)
            ax.set_ylabel(ylabel, fontsize=7)
        fig.suptitle(
            f"{'ROC' if key == 'roc' else 'Precision-recall'} curves; dot = operating threshold"
            + ("" if key == "roc" else ", dotted = prevalence"),
            fontsize=10,
        )
        written[key] = _save(fig, folder / PLOT_FILES[key], metrics)
    return written


def plot_auroc_ci(metrics: Metrics, folder: Path) -> str:
    """Forest plot: AUROC and 95% CI per finding, with Wang et al. 2017 as a reference mark."""
    labels = metrics["labels"]
    fig = Figure(figsize=(6.5, 0.35 * len(labels) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(labels))[::-1]
    for yi, label in zip(y, labels, strict=True):
        m = metrics["per_label"][label]
        if m["auroc"] is None:
            continue
        lo, hi = m["auroc_ci"]
        ax.plot([lo, hi], [yi, yi], c="C0", lw=2)
        ax.plot(m["auroc"], yi, "o", c="C0", ms=5)
        reference = PUBLISHED[0].per_label.get(label)
        if reference is not None:
            ax.plot(reference, yi, "|", c="C3", ms=10, mew=2)
    ax.set_yticks(y, [pretty(label) for label in labels], fontsize=8)
    ax.axvline(0.5, ls=":", c="grey", lw=0.8)
    ax.set_xlabel(f"AUROC (95% patient-bootstrap CI); red mark: {PUBLISHED[0].name}, ResNet-50", fontsize=8)
    ax.set_xlim(min(0.4, ax.get_xlim()[0]), 1.0)
    return _save(fig, folder / PLOT_FILES["auroc"], metrics)


def plot_reliability(metrics: Metrics, folder: Path) -> str:
    """Reliability diagram per finding: fraction positive vs. mean probability per bin, with a histogram.

    The histogram (share of images per bin) has its own right-hand axis from 0 to 1, so a bin holding
    nearly all images (the usual first bin at low prevalence) is drawn whole, not clipped.
    """
    labels = metrics["labels"]
    fig, axes = _grid(len(labels), size=2.9)
    for i, (ax, label) in enumerate(zip(axes, labels, strict=False)):
        bins = metrics["calibration"]["reliability"][label]
        edges = np.asarray(bins["edges"])
        count = np.asarray(bins["count"], dtype=float)
        mean_p = np.array([np.nan if v is None else v for v in bins["mean_probability"]])
        frac = np.array([np.nan if v is None else v for v in bins["fraction_positive"]])
        share = ax.twinx()
        share.bar(edges[:-1], count / max(count.sum(), 1), width=np.diff(edges), align="edge", color="0.88")
        share.set_ylim(0, 1)
        share.tick_params(labelsize=6, colors="0.45")
        ax.set_zorder(share.get_zorder() + 1)  # the curve in front of the bars
        ax.patch.set_visible(False)
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.plot(mean_p, frac, "o-", ms=3, lw=1.2)
        m = metrics["per_label"][label]
        ax.set_title(f"{pretty(label)} (ECE {number(m['ece'])})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("mean predicted probability", fontsize=7)
        if i % 4 == 0:
            ax.set_ylabel("fraction positive", fontsize=7)
        if i % 4 == 3 or i == len(labels) - 1:
            share.set_ylabel("share of images (grey)", fontsize=7, color="0.45")
    fig.suptitle(
        "Reliability: fraction positive vs. predicted probability per bin (dotted: perfect calibration); "
        "grey bars: share of images per bin",
        fontsize=10,
    )
    return _save(fig, folder / PLOT_FILES["reliability"], metrics)


def plot_subgroups(metrics: Metrics, folder: Path) -> str | None:
    """Mean AUROC with CI per subgroup, one panel per attribute."""
    attributes = {a: e for a, e in metrics["subgroups"]["attributes"].items() if e["groups"]}
    if not attributes:
        return None
    fig = Figure(figsize=(3.2 * len(attributes), 2.8))
    axes = fig.subplots(1, len(attributes), squeeze=False, sharey=True)
    for ax, (attribute, entry) in zip(axes.flat, attributes.items(), strict=True):
        names = list(entry["groups"])
        for i, name in enumerate(names):
            g = entry["groups"][name]
            if g["mean_auroc"] is None:
                continue
            # A percentile interval of a tiny group need not contain the estimate: draw it as a bar.
            if None not in g["mean_auroc_ci"]:
                ax.plot([i, i], g["mean_auroc_ci"], color="C0", lw=2, solid_capstyle="butt")
            ax.plot(i, g["mean_auroc"], "o", color="C0", ms=6)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xticks(range(len(names)), [f"{n}\n(n={entry['groups'][n]['n_images']:,})" for n in names], fontsize=7)
        ax.set_title(f"{attribute} ({len(entry['labels_compared'])} labels)", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", lw=0.3)
    axes.flat[0].set_ylabel("Mean AUROC (95% CI)", fontsize=8)
    return _save(fig, folder / PLOT_FILES["subgroups"], metrics)


def plot_localization(metrics: Metrics, folder: Path) -> str | None:
    """T(IoBB) accuracy vs. T per finding, at the default region threshold."""
    localization = metrics.get("localization")
    if not localization:
        return None
    protocol = localization["protocol"]
    region = default_region(protocol)
    thresholds = protocol["overlap_thresholds"]["iobb"]
    fig = Figure(figsize=(7.5, 3.8))
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab20"].colors
    for i, (label, entry) in enumerate(localization["per_label"].items()):
        accuracy = entry["iobb"][region]["accuracy"]
        ax.plot(thresholds, accuracy, "o-", ms=3, lw=1, color=colors[i % len(colors)], label=pretty(label))
    ax.plot(thresholds, localization["all"]["iobb"][region]["accuracy"], "k-", lw=2.5, label="All")
    ax.set_xlabel("T(IoBB)", fontsize=8)
    ax.set_ylabel("Share of boxes localized", fontsize=8)
    ax.set_ylim(0, 1)
    ax.grid(lw=0.3)
    ax.set_title(f"Localization accuracy (heatmap threshold {region})", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, folder / PLOT_FILES["localization"], metrics)


def write_plots(y_true: np.ndarray, probability: np.ndarray, metrics: Metrics, folder: str | Path) -> dict[str, str]:
    """Write every plot that has data into ``folder``; returns plot key -> file name."""
    folder = Path(folder)
    plots = plot_curves(y_true, probability, metrics, folder)
    plots["auroc"] = plot_auroc_ci(metrics, folder)
    plots["reliability"] = plot_reliability(metrics, folder)
    for key, plot in (("subgroups", plot_subgroups), ("localization", plot_localization)):
        name = plot(metrics, folder)
        if name:
            plots[key] = name
    return plots
