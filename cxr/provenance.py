"""What a set of weights is, in words, read from its ``config.json`` metadata (never written by hand).

The app's banner and About section, the CLI's warnings and the model card all describe weights
through these functions, so no two places can describe the same weights differently.
"""

from __future__ import annotations

from typing import Any

from cxr.config import ModelConfig

SYNTHETIC_MARK = "synthetic"  # `python -m train synth` data name their dataset "synthetic (...)"


def describe_subset(subset: dict[str, dict[str, int]] | None, parts: tuple[str, ...] = ("train_val", "test")) -> str:
    """Words for a split's subset record: "632 of 86,524 train_val images and 106 of 25,596 test images (...)".

    ``parts`` picks the official lists to mention (training says only how much of train_val it used).
    """
    if not subset:
        return "the whole official split"
    counts = {name: subset[name] for name in parts if name in subset}
    words = [f"{c['used']:,} of {c['official']:,} {name} images" for name, c in counts.items()]
    return " and ".join(words) + " (the official split restricted to the images at hand)"


def training_record(config: ModelConfig) -> dict[str, Any]:
    """``metadata["training"]`` of the weights, or an empty dict."""
    training = config.metadata.get("training")
    return training if isinstance(training, dict) else {}


def is_synthetic(config: ModelConfig) -> bool:
    """True for weights trained on ``python -m train synth`` images: meaningless on real radiographs."""
    return SYNTHETIC_MARK in str(training_record(config).get("dataset", "")).lower()


def trained_on(config: ModelConfig) -> str:
    """One sentence on the training data, from the weights' metadata."""
    if not config.trained:
        return "These weights are untrained (random): they were made for development and tests, not trained on data."
    training = training_record(config)
    if training.get("dataset"):
        split = str(training.get("split", ""))
        # fit records the name of its split file there; only a description of the split is worth showing.
        details = [f"split: {split}" if split and not split.endswith(".json") else ""]
        if training.get("data_subset"):
            details.append(describe_subset(training["data_subset"], parts=("train_val",)))
        details.append(f"{training['epochs']} epochs" if training.get("epochs") else "")
        details = "; ".join(d for d in details if d)
        return f"Trained on {training['dataset']}" + (f" — {details}." if details else ".")
    description = config.metadata.get("description")
    return str(description) if description else "The weights do not record what they were trained on."


def warning(config: ModelConfig) -> str | None:
    """The warning every output of these weights must carry, or None for weights trained on real images."""
    if not config.trained:
        return "Untrained weights: randomly initialised, never trained. Their probabilities and heatmaps mean nothing."
    if is_synthetic(config):
        return (
            "Weights trained on synthetic images (python -m train synth), not on radiographs: their probabilities "
            "and heatmaps mean nothing for a real chest X-ray."
        )
    return None


def headline_evaluation(config: ModelConfig) -> str | None:
    """ "test mean AUROC 0.612 (95% CI 0.55–0.67) on 106 images of NIH ChestX-ray14's test split", if recorded."""
    evaluation = config.metadata.get("evaluation")
    if not isinstance(evaluation, dict) or not _is_number(evaluation.get("mean_auroc")):
        return None
    ci = interval_text(evaluation, "mean_auroc_ci")
    where = f" on {evaluation['n_images']:,} images" if _is_number(evaluation.get("n_images")) else ""
    split = f" of the {evaluation['split']} split" if evaluation.get("split") else ""
    return f"{evaluation.get('split', '')} mean AUROC {evaluation['mean_auroc']:.3f}{ci}{where}{split}".strip()


def interval_text(evaluation: dict[str, Any], key: str) -> str:
    """`` (95% CI 0.801–0.823)`` when the evaluation recorded a bootstrap interval under ``key``, else ""."""
    interval = evaluation.get(key)
    if isinstance(interval, list) and len(interval) == 2 and all(_is_number(v) for v in interval):
        return f" (95% CI {interval[0]:.3f}–{interval[1]:.3f})"
    return ""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
