"""Turn an evaluation's metrics.json into Markdown tables and PNG plots.

The tables are shared by the evaluation report (``report.md``) and the model card, so the card a
reader sees on the Hub shows exactly the numbers of ``metrics.json``. Plots use matplotlib's
``Figure`` API directly (no pyplot, so no GUI backend and no global figure state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve

from cxr.labels import CHESTXRAY8_LABELS
from train.published import PUBLISHED

Metrics = dict[str, Any]
DASH = "–"
PLOT_FILES = {
    "roc": "roc_curves.png",
    "pr": "pr_curves.png",
    "auroc": "auroc_ci.png",
    "reliability": "reliability.png",
    "subgroups": "subgroups.png",
    "localization": "localization.png",
}


# ---------------------------------------------------------------- formatting


def number(value: float | None, digits: int = 3) -> str:
    """A metric with fixed decimals, or a dash when it is undefined."""
    return DASH if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def percent(value: float | None, digits: int = 1) -> str:
    return DASH if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f}%"


def with_ci(value: float | None, ci: Sequence[float | None] | None) -> str:
    """``0.812 (0.801–0.823)``."""
    if ci is None or any(v is None for v in ci):
        return number(value)
    return f"{number(value)} ({number(ci[0])}–{number(ci[1])})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of l/r/c per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pretty(label: str) -> str:
    """``Pleural_Thickening`` -> ``Pleural Thickening`` for display (data keep NIH's spelling)."""
    return label.replace("_", " ")


# ---------------------------------------------------------------- tables


def headline_table(metrics: Metrics) -> str:
    """Mean AUROC (both label sets), mean ECE, pointing game: the numbers a reader looks for first."""
    rows = [
        [f"Mean AUROC, {len(metrics['labels'])} labels", with_ci(metrics["mean_auroc"], metrics["mean_auroc_ci"])],
        [
            "Mean AUROC, 8 ChestX-ray8 labels",
            with_ci(metrics["mean_auroc_chestxray8"], metrics["mean_auroc_chestxray8_ci"]),
        ],
        ["Mean ECE (10 bins)", number(metrics["calibration"]["mean_ece"])],
        ["Mean Brier score", number(metrics["calibration"]["mean_brier"])],
    ]
    localization = metrics.get("localization")
    if localization:
        rows.append(["Pointing game (all boxes)", percent(localization["all"]["pointing_game"])])
    return table(["Metric", f"{metrics['split']} split ({metrics['n_images']:,} images)"], rows)


def per_label_table(metrics: Metrics) -> str:
    """AUROC with CI, AUPRC with prevalence, counts."""
    rows = []
    for label in metrics["labels"]:
        m = metrics["per_label"][label]
        rows.append(
            [
                pretty(label),
                str(m["n_positive"]),
                percent(m["prevalence"], 2),
                with_ci(m["auroc"], m["auroc_ci"]),
                number(m["auprc"]),
            ]
        )
    return table(["Finding", "Positives", "Prevalence", "AUROC (95% CI)", "AUPRC"], rows)


def operating_point_table(metrics: Metrics) -> str:
    """Sensitivity, specificity, PPV, NPV, F1 and the confusion counts at each label's own threshold."""
    rows = []
    for label in metrics["labels"]:
        m = metrics["per_label"][label]
        c = m["confusion"]
        rows.append(
            [pretty(label), number(m["threshold"])]
            + [percent(m[key]) for key in ("sensitivity", "specificity", "ppv", "npv")]
            + [number(m["f1"])]
            + [str(c[key]) for key in ("tp", "fp", "fn", "tn")]
        )
    header = ["Finding", "Threshold", "Sensitivity", "Specificity", "PPV", "NPV", "F1", "TP", "FP", "FN", "TN"]
    return table(header, rows)


def calibration_table(metrics: Metrics) -> str:
    """ECE, Brier score and temperature per label."""
    rows = [
        [
            pretty(label),
            number(metrics["per_label"][label]["ece"]),
            number(metrics["per_label"][label]["brier"]),
            number(metrics["per_label"][label]["temperature"], 2),
        ]
        for label in metrics["labels"]
    ]
    return table(["Finding", "ECE", "Brier", "Temperature"], rows)


def subgroup_table(metrics: Metrics) -> str:
    """One row per subgroup: counts and mean AUROC (with CI) over the labels compared in that attribute."""
    subgroups = metrics["subgroups"]
    rows = []
    for attribute, entry in subgroups["attributes"].items():
        for group, g in entry["groups"].items():
            rows.append(
                [
                    attribute,
                    group,
                    f"{g['n_images']:,}",
                    f"{g['n_patients']:,}",
                    with_ci(g["mean_auroc"], g["mean_auroc_ci"]),
                    str(len(entry["labels_compared"])),
                ]
            )
    return table(["Attribute", "Group", "Images", "Patients", "Mean AUROC (95% CI)", "Labels compared"], rows, "llrrrr")


def subgroup_gap_sentence(metrics: Metrics) -> str:
    """The flagged largest gap, in words."""
    gap = metrics["subgroups"].get("largest_gap")
    if not gap:
        return "No attribute has two groups with a comparable mean AUROC."
    groups = metrics["subgroups"]["attributes"][gap["attribute"]]["groups"]
    text = (
        f"**Largest gap: {gap['attribute']}**, mean AUROC {number(gap['value'])} higher for {gap['high']} "
        f"({groups[gap['high']]['n_images']:,} images) than for {gap['low']} ({groups[gap['low']]['n_images']:,})."
    )
    label_gap = metrics["subgroups"].get("largest_label_gap")
    if label_gap:
        text += (
            f" The widest single-label spread is {pretty(label_gap['label'])} by {label_gap['attribute']} "
            f"({number(label_gap['value'])}, {label_gap['high']} over {label_gap['low']})."
        )
    return text + " Read gaps against the intervals: small groups have wide ones."


def comparison_table(metrics: Metrics) -> str:
    """Our per-label AUROC next to published results; the CheXNet column is marked as another split."""
    columns = [(p, p.name + ("" if p.official_split else " ¹")) for p in PUBLISHED]
    rows = []
    for label in metrics["labels"]:
        m = metrics["per_label"][label]
        rows.append(
            [pretty(label), with_ci(m["auroc"], m["auroc_ci"])] + [number(p.per_label.get(label)) for p, _ in columns]
        )
    if len(metrics["labels"]) == 14:
        rows.append(
            ["**Mean (14)**", f"**{with_ci(metrics['mean_auroc'], metrics['mean_auroc_ci'])}**"]
            + [f"**{number(p.mean_auroc)}**" for p, _ in columns]
        )
    rows.append(
        [
            "**Mean (ChestX-ray8 labels)**",
            f"**{with_ci(metrics['mean_auroc_chestxray8'], metrics['mean_auroc_chestxray8_ci'])}**",
        ]
        + [f"**{number(np.mean([p.per_label[label] for label in CHESTXRAY8_LABELS]))}**" for p, _ in columns]
    )
    header = ["Finding", f"These weights ({metrics['split']})"] + [title for _, title in columns]
    notes = []
    if metrics.get("dataset", "").startswith("synthetic"):
        notes.append(
            "**These weights were evaluated on synthetic images**: the published columns are real NIH results."
        )
    notes += [f"¹ {p.name}: {p.split}." for p in PUBLISHED if not p.official_split]
    notes += [f"{p.name}: {p.model}, {p.split}." for p in PUBLISHED if p.official_split]
    return table(header, rows) + "\n\n" + "\n".join(f"- {note}" for note in notes)


def localization_table(metrics: Metrics) -> str:
    """T(IoBB) accuracy per label and overlap threshold (heatmap threshold 180 if measured), and pointing game."""
    localization = metrics["localization"]
    protocol = localization["protocol"]
    region = _default_region(protocol)
    thresholds = protocol["overlap_thresholds"]
    rows = []
    for label, entry in [*localization["per_label"].items(), ("**All**", localization["all"])]:
        accuracy = entry["iobb"][region]["accuracy"]
        rows.append(
            [pretty(label), str(entry["n_boxes"])]
            + [percent(a, 0) for a in accuracy]
            + [number(entry["iobb"][region]["afp"][-1], 2), percent(entry["pointing_game"], 0)]
        )
    header = ["Finding", "Boxes"] + [f"T={t:g}" for t in thresholds] + [f"AFP@{thresholds[-1]:g}", "Pointing"]
    return table(header, rows)


def _default_region(protocol: dict[str, Any]) -> str:
    names = [f"{t:g}" for t in protocol["region_thresholds"]]
    return "180" if "180" in names else names[-1]


def relabel_table(metrics: Metrics) -> str:
    """AUROC against radiologist-adjudicated labels vs. against NIH's NLP labels on the same images."""
    relabels = metrics["relabels"]
    rows = []
    for finding, f in relabels["findings"].items():
        if "skipped" in f:
            rows.append([finding, DASH, DASH, DASH, f["skipped"]])
            continue
        rows.append(
            [
                finding,
                f"{f['n_positive_adjudicated']} / {f['n_positive_nih']}",
                with_ci(f["auroc_adjudicated"], f["auroc_adjudicated_ci"]),
                with_ci(f["auroc_nih_labels"], f["auroc_nih_labels_ci"]),
                ", ".join(pretty(o) for o in f["model_outputs"]),
            ]
        )
    header = ["Finding", "Positives (adjudicated / NIH)", "AUROC vs adjudicated", "AUROC vs NIH labels", "Scored by"]
    return table(header, rows, "lrrrl")


# ---------------------------------------------------------------- the report


def render_report(metrics: Metrics, plots: dict[str, str]) -> str:
    """The full Markdown report of one evaluation; ``plots`` maps plot keys to file names next to it."""
    w = metrics["weights"]
    parts = [
        f"# Evaluation of {w['name']} on the {metrics['split']} split",
        f"Dataset: {metrics['dataset']}. {metrics['n_images']:,} images of {metrics['n_patients']:,} patients. "
        f"Weights SHA-256 `{w['sha256']}` ({w['trunk']}, {w['image_size']} px, "
        f"{'trained' if w['trained'] else 'UNTRAINED (random) weights'}). Created {metrics['created']}.",
        _subset_warning(metrics),
        f"Intervals: {metrics['bootstrap']['n_resamples']} bootstrap resamples of patients, "
        f"{metrics['bootstrap']['confidence']:.0%} percentile intervals.",
        "## Headline\n\n" + headline_table(metrics),
        "## Per finding\n\n" + per_label_table(metrics),
        _image(plots, "auroc", "AUROC with 95% CI per finding"),
        _image(plots, "roc", "ROC curves"),
        _image(plots, "pr", "Precision-recall curves"),
        "## At the operating thresholds\n\n" + threshold_sentence(metrics) + "\n\n" + operating_point_table(metrics),
        "## Calibration\n\n" + temperature_sentence(metrics) + "\n\n" + calibration_table(metrics),
        _image(plots, "reliability", "Reliability diagrams"),
        "## Subgroups\n\n" + subgroup_gap_sentence(metrics) + "\n\n" + subgroup_table(metrics),
        _image(plots, "subgroups", "Mean AUROC by subgroup"),
        "## Comparison with published results\n\n" + comparison_table(metrics),
        localization_section(metrics),
        _image(plots, "localization", "Localization accuracy"),
        relabel_section(metrics),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def localization_section(metrics: Metrics) -> str:
    """Protocol in words and the T(IoBB) table, or why localization was not measured."""
    localization = metrics.get("localization")
    if not localization:
        reason = metrics.get("localization_skipped", "no bounding boxes for this split")
        return f"## Localization\n\nNot measured: {reason}."
    protocol = localization["protocol"]
    return (
        "## Localization (BBox_List_2017)\n\n"
        f"{localization['all']['n_boxes']} boxes on {localization['all']['n_images']} (image, finding) pairs. "
        f"Protocol of Wang et al. (2017): the Grad-CAM heatmap of the box's finding, at image resolution, is "
        f"scaled to [0, 255] and thresholded at {_default_region(protocol)}; a box is drawn around each "
        "connected region, and a ground-truth box counts as localized when a drawn box overlaps it with "
        "IoBB (intersection over the drawn box's area) above T. AFP: drawn boxes that localize nothing, per "
        f"image. Pointing game: the heatmap's maximum lies within {protocol['pointing_tolerance_px']:g} px of a "
        "ground-truth box. metrics.json also holds IoU and the other region threshold(s).\n\n"
        + localization_table(metrics)
    )


def relabel_section(metrics: Metrics) -> str:
    """The adjudicated-label table, or why it is absent."""
    relabels = metrics.get("relabels")
    if not relabels:
        reason = metrics.get("relabels_skipped", "no adjudicated labels for these images")
        return f"## Radiologist-adjudicated labels\n\nNot measured: {reason}."
    return (
        "## Radiologist-adjudicated labels (Majkowska et al. 2020)\n\n"
        f"{relabels['n_images']:,} images of this split ({relabels['n_patients']:,} patients) have labels adjudicated "
        "by radiologists. A finding's score is the highest probability among the outputs listed. Fracture is "
        "not scored (no ChestX-ray14 label).\n\n" + relabel_table(metrics)
    )


def threshold_sentence(metrics: Metrics) -> str:
    """How the per-label thresholds came about (or that they are placeholders)."""
    if not metrics["weights"]["trained"]:
        return (
            "**These weights are untrained**: their thresholds are 0.5 placeholders, not operating points. "
            "A probability at or above a finding's threshold counts as positive."
        )
    return (
        "Each finding has its own threshold, chosen on the validation split (F1-optimal) and stored in "
        "`config.json`; a probability at or above it counts as positive. No global 0.5 cut-off is used."
    )


def temperature_sentence(metrics: Metrics) -> str:
    """Which temperatures the probabilities use, and what fitting them did to ECE."""
    scaling = metrics.get("temperature_scaling")
    if not scaling:
        return "Probabilities as served by the app (the temperatures in `config.json`). ECE uses 10 equal-width bins."
    previous = set(scaling["previous_temperatures"].values())
    before = "as trained (T = 1)" if previous == {1.0} else "with the temperatures config.json held before"
    return (
        f"Temperatures fitted on the validation split ({scaling['n_images']:,} images); thresholds converted so "
        f"every decision is unchanged. Mean ECE on this split: {number(scaling['mean_ece_before'])} {before}, "
        f"{number(scaling['mean_ece_after'])} after."
    )


def _subset_warning(metrics: Metrics) -> str:
    subset = metrics.get("subset")
    if not subset:
        return ""
    return (
        f"> **Smoke test on a subset: {subset['n_evaluated']:,} of the {subset['n_in_split']:,} images of the "
        f"{metrics['split']} split** (only those present). These numbers are not comparable with anything."
    )


def _image(plots: dict[str, str], key: str, alt: str) -> str:
    return f"![{alt}]({plots[key]})" if key in plots else ""


def write_report(metrics: Metrics, folder: str | Path, plots: dict[str, str]) -> Path:
    """Write ``report.md`` into ``folder``."""
    path = Path(folder) / "report.md"
    path.write_text(render_report(metrics, plots), encoding="utf-8")
    return path


# ---------------------------------------------------------------- plots


def _grid(n: int, size: float = 2.6) -> tuple[Figure, np.ndarray]:
    cols = min(n, 4) if n > 1 else 1
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(size * cols, size * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
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
        written[key] = _save(fig, folder / PLOT_FILES[key])
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
    ax.set_xlabel("AUROC (95% patient-bootstrap CI); red mark: Wang et al. 2017 ResNet-50", fontsize=8)
    ax.set_xlim(min(0.4, ax.get_xlim()[0]), 1.0)
    return _save(fig, folder / PLOT_FILES["auroc"])


def plot_reliability(metrics: Metrics, folder: Path) -> str:
    """Reliability diagram per finding: fraction positive vs. mean probability per bin, bin counts shaded."""
    labels = metrics["labels"]
    fig, axes = _grid(len(labels))
    for ax, label in zip(axes, labels, strict=False):
        bins = metrics["calibration"]["reliability"][label]
        edges = np.asarray(bins["edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        count = np.asarray(bins["count"], dtype=float)
        mean_p = np.array([np.nan if v is None else v for v in bins["mean_probability"]])
        frac = np.array([np.nan if v is None else v for v in bins["fraction_positive"]])
        ax.bar(centers, count / max(count.max(), 1), width=edges[1] - edges[0], color="0.9", edgecolor="0.8")
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.plot(mean_p, frac, "o-", ms=3, lw=1.2)
        ax.set_title(f"{pretty(label)} (ECE {number(metrics['per_label'][label]['ece'])})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        "Reliability: fraction positive vs. predicted probability (grey: share of images per bin)", fontsize=10
    )
    return _save(fig, folder / PLOT_FILES["reliability"])


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
    return _save(fig, folder / PLOT_FILES["subgroups"])


def plot_localization(metrics: Metrics, folder: Path) -> str | None:
    """T(IoBB) accuracy vs. T per finding, at the default region threshold."""
    localization = metrics.get("localization")
    if not localization:
        return None
    protocol = localization["protocol"]
    region = _default_region(protocol)
    thresholds = protocol["overlap_thresholds"]
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
    return _save(fig, folder / PLOT_FILES["localization"])


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
