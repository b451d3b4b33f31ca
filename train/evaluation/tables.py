"""Markdown tables of an evaluation's metrics.json, shared by the evaluation report and the model card.

The card a reader sees on the Hub therefore shows exactly the numbers of ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cxr.labels import CHESTXRAY8_LABELS
from train.evaluation.published import PUBLISHED

Metrics = dict[str, Any]
DASH = "–"


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
        ["Mean ECE (10 equal-width bins)", number(metrics["calibration"]["mean_ece"])],
        ["Mean ECE (10 equal-mass bins)", number(metrics["calibration"]["mean_ece_equal_mass"])],
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
    """Mean probability against prevalence, ECE (both binnings), slope, intercept, Brier, bias and temperature."""
    rows = []
    for label in metrics["labels"]:
        m = metrics["per_label"][label]
        rows.append(
            [
                pretty(label),
                percent(m["prevalence"], 2),
                percent(m["mean_probability"], 2),
                number(m["ece"]),
                number(m["ece_equal_mass"]),
                number(m["calibration_slope"], 2),
                number(m["calibration_intercept"], 2),
                number(m["brier"]),
                number(m["bias"], 2),
                number(m["temperature"], 2),
            ]
        )
    header = ["Finding", "Prevalence", "Mean probability", "ECE (width)", "ECE (mass)", "Slope", "Intercept", "Brier"]
    return table([*header, "Bias", "Temperature"], rows)


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
    """Our per-label AUROC next to published results, each column footnoted with its source, table and split."""
    marks = "¹²³⁴⁵⁶⁷⁸⁹"
    rows = []
    for label in metrics["labels"]:
        m = metrics["per_label"][label]
        rows.append(
            [pretty(label), with_ci(m["auroc"], m["auroc_ci"])] + [number(p.per_label.get(label)) for p in PUBLISHED]
        )
    if len(metrics["labels"]) == 14:
        rows.append(
            ["**Mean (14)**", f"**{with_ci(metrics['mean_auroc'], metrics['mean_auroc_ci'])}**"]
            + [f"**{number(p.mean_auroc)}**" if p.n_labels == 14 else DASH for p in PUBLISHED]
        )
    rows.append(
        [
            "**Mean (ChestX-ray8 labels)**",
            f"**{with_ci(metrics['mean_auroc_chestxray8'], metrics['mean_auroc_chestxray8_ci'])}**",
        ]
        + [f"**{number(np.mean([p.per_label[label] for label in CHESTXRAY8_LABELS]))}**" for p in PUBLISHED]
    )
    header = ["Finding", f"These weights ({metrics['split']})"] + [
        f"{p.name} {marks[i]}" for i, p in enumerate(PUBLISHED)
    ]
    notes = []
    if metrics.get("dataset", "").startswith("synthetic"):
        notes.append(
            "**These weights were evaluated on synthetic images**: the published columns are real NIH results."
        )
    notes += [
        f"{marks[i]} {p.name}: {p.model}. Source: {p.source}. Split: {p.split}. Checked: {p.checked}."
        for i, p in enumerate(PUBLISHED)
    ]
    notes.append(
        "Only results on the official test list (`test_list.txt`) are directly comparable with these weights' "
        "test numbers; none of the columns above is confirmed to be on it."
    )
    return table(header, rows) + "\n\n" + "\n".join(f"- {note}" for note in notes)


def localization_table(metrics: Metrics) -> str:
    """T(IoBB) accuracy per label and overlap threshold (heatmap threshold 180 if measured), and pointing game."""
    localization = metrics["localization"]
    protocol = localization["protocol"]
    region = default_region(protocol)
    thresholds = protocol["overlap_thresholds"]["iobb"]
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


def default_region(protocol: dict[str, Any]) -> str:
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
