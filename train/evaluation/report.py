"""``report.md``: an evaluation's metrics.json in words, tables and plots.

The sections here are also used by the model card (:mod:`train.publishing.publish`).
"""

from __future__ import annotations

from pathlib import Path

from train.evaluation.tables import (
    Metrics,
    calibration_table,
    comparison_table,
    default_region,
    headline_table,
    localization_table,
    number,
    operating_point_table,
    per_label_table,
    relabel_table,
    subgroup_gap_sentence,
    subgroup_table,
)


def render_report(metrics: Metrics, plots: dict[str, str]) -> str:
    """The full Markdown report of one evaluation; ``plots`` maps plot keys to file names next to it."""
    w = metrics["weights"]
    parts = [
        f"# Evaluation of {w['name']} on the {metrics['split']} split",
        f"Dataset: {metrics['dataset']}. {metrics['n_images']:,} images of {metrics['n_patients']:,} patients. "
        f"Weights SHA-256 `{w['sha256']}` ({w['trunk']}, {w['image_size']} px, "
        f"{'trained' if w['trained'] else 'UNTRAINED (random) weights'}). Created {metrics['created']}.",
        subset_warning(metrics),
        f"Intervals: {metrics['bootstrap']['n_resamples']} bootstrap resamples of patients, "
        f"{metrics['bootstrap']['confidence']:.0%} percentile intervals.",
        "## Headline\n\n" + headline_table(metrics),
        "## Per finding\n\n" + per_label_table(metrics),
        _image(plots, "auroc", "AUROC with 95% CI per finding"),
        _image(plots, "roc", "ROC curves"),
        _image(plots, "pr", "Precision-recall curves"),
        "## At the operating thresholds\n\n" + threshold_sentence(metrics) + "\n\n" + operating_point_table(metrics),
        "## Calibration\n\n" + calibration_sentence(metrics) + "\n\n" + calibration_table(metrics),
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
        "Protocol of Wang et al. (2017): the signed class activation map of the box's finding (the sum of the "
        "transition channels weighted by the finding's classifier weights, before the ReLU that makes it the "
        f"Grad-CAM shown in the app), at image resolution, is min-max scaled to [0, 255] and thresholded at "
        f"{default_region(protocol)}; a box is drawn around each connected region, and a ground-truth box counts "
        "as localized when a drawn box overlaps it with IoBB (intersection over the drawn box's area) above T, on "
        "Wang's grid T(IoBB) = 0.1, 0.25, 0.5, 0.75, 0.9. AFP: drawn boxes that localize nothing, per image. "
        f"Pointing game: the map's maximum lies within {protocol['pointing_tolerance_px']:g} px of a "
        "ground-truth box. metrics.json also holds an IoU grid (0.1-0.7) and the other region threshold(s).\n\n"
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


def calibration_sentence(metrics: Metrics) -> str:
    """How probabilities are calibrated, and what fitting the calibration did to ECE."""
    method = (
        "Each probability is `sigmoid((logit + bias) / temperature)` with the finding's own bias and temperature "
        "from `config.json` (Platt scaling; a bias of 0 and temperature of 1 leave the network's sigmoid as it "
        f"is). ECE is shown over {metrics['calibration']['n_bins']} equal-width and over as many equal-mass bins "
        "(equal numbers of images: at low prevalence nearly all images share the first equal-width bin). "
        "Calibration slope and intercept come from the logistic fit `y ~ sigmoid(intercept + slope * logit(p))`: "
        "slope 1 and intercept 0 are perfect, slope < 1 means too extreme probabilities."
    )
    fit = metrics.get("calibration_fit")
    if not fit:
        return method
    untouched = set(fit["previous_temperatures"].values()) == {1.0} and set(fit["previous_biases"].values()) == {0.0}
    before = "as trained" if untouched else "with the calibration config.json held before"
    return (
        f"{method}\n\nBiases and temperatures fitted on the validation split ({fit['n_images']:,} images); thresholds "
        f"converted so every decision is unchanged. Mean ECE on this split {before}: "
        f"{number(fit['mean_ece_before'])} (equal-mass bins {number(fit['mean_ece_equal_mass_before'])}); after: "
        f"{number(fit['mean_ece_after'])} ({number(fit['mean_ece_equal_mass_after'])})."
    )


def subset_warning(metrics: Metrics) -> str:
    """A quoted warning when the evaluation used only part of the official test list (or of the validation split)."""
    subset = metrics.get("subset")
    if not subset:
        return ""
    return (
        f"> **Evaluated on {subset['description']}**, not the whole {metrics['split']} split: the images at hand. "
        "The intervals are correspondingly wide, and the numbers are not comparable with results on the whole split."
    )


def _image(plots: dict[str, str], key: str, alt: str) -> str:
    return f"![{alt}]({plots[key]})" if key in plots else ""


def write_report(metrics: Metrics, folder: str | Path, plots: dict[str, str]) -> Path:
    """Write ``report.md`` into ``folder``."""
    path = Path(folder) / "report.md"
    path.write_text(render_report(metrics, plots), encoding="utf-8")
    return path
