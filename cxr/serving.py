"""What the demo server needs besides its UI: which weights to serve, what to say about them, what the API returns.

The weights source is decided here and nowhere else (command line, then ``CXR_WEIGHTS``, then
``CXR_MODEL_REPO`` at ``CXR_MODEL_REVISION``, then the project's published weights at a pinned tag).
The "about" text is read from the weights' ``config.json`` and model card, never written by hand, so
a demo cannot describe weights other than the ones it serves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import RepoCard

from cxr.config import ModelConfig
from cxr.predictor import Prediction, Predictor
from cxr.weights import WEIGHTS_FILE, WeightsError, resolve_weights, sha256_of

DEFAULT_MODEL_REPO = "cxr-project/chestxray14-resnet50-lse"
DEFAULT_MODEL_REVISION = "v0.1.0"  # a tag: the demo serves exactly these weights until someone moves the pin
MODEL_CARD_FILE = "README.md"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class WeightsSource:
    """Where the served weights come from: a local folder, or a Hub repo at a revision."""

    location: str
    revision: str | None = None
    is_local: bool = False

    def describe(self, public: bool = False) -> str:
        """Human-readable origin, e.g. ``Hub repo org/name at revision v0.1.0``; ``public`` hides local paths."""
        if self.is_local:
            return f"local folder {Path(self.location).name if public else self.location}"
        return f"Hub repo {self.location} at revision {self.revision or 'main (unpinned)'}"


def choose_weights_source(weights_folder: str | None = None, environ: Mapping[str, str] = os.environ) -> WeightsSource:
    """Pick the weights to serve: ``--weights`` / ``CXR_WEIGHTS`` folder, else ``CXR_MODEL_REPO`` on the Hub.

    The project's own repo defaults to its pinned tag; another repo is served at ``CXR_MODEL_REVISION``
    or, without one, at its main branch.
    """
    folder = weights_folder or environ.get("CXR_WEIGHTS")
    if folder:
        return WeightsSource(folder, is_local=True)
    repo = environ.get("CXR_MODEL_REPO") or DEFAULT_MODEL_REPO
    revision = environ.get("CXR_MODEL_REVISION") or (DEFAULT_MODEL_REVISION if repo == DEFAULT_MODEL_REPO else None)
    return WeightsSource(repo, revision)


def no_weights_message(source: WeightsSource, error: WeightsError) -> str:
    """The one paragraph shown when nothing can be served: what failed and both ways to fix it."""
    return (
        f"No model weights to serve: {error}\n"
        "Either pass a local weights folder (python app.py --weights DIR, or set CXR_WEIGHTS=DIR; "
        "for development, python -m cxr make-untrained-weights DIR makes one), or give this machine access to "
        f"the Hugging Face Hub for CXR_MODEL_REPO (default {DEFAULT_MODEL_REPO}) at CXR_MODEL_REVISION "
        f"(default {DEFAULT_MODEL_REVISION}); set HF_TOKEN if the repo is private. Tried: {source.describe()}."
    )


@dataclass(frozen=True)
class ServedModel:
    """The loaded predictor plus everything the page and the API say about its weights."""

    predictor: Predictor
    source: WeightsSource
    commit: str | None  # the Hub commit a revision resolved to; None for local folders
    weights_sha256: str
    model_card: str | None  # the weights folder's README.md without its YAML front matter

    @property
    def config(self) -> ModelConfig:
        return self.predictor.config

    def summary(self) -> dict[str, Any]:
        """Provenance attached to every API answer, so a result can be traced to the exact weights."""
        return {
            "source": self.source.location if not self.source.is_local else Path(self.source.location).name,
            "revision": self.source.revision,
            "commit": self.commit,
            "weights_sha256": self.weights_sha256,
            "trained": self.config.trained,
        }


def load_served_model(source: WeightsSource, **predictor_options: Any) -> ServedModel:
    """Download (if needed) and load the weights once; raises :class:`WeightsError` with a readable reason."""
    if source.is_local and not Path(source.location).expanduser().is_dir():
        # Checked here because resolve_weights would take a missing "dir/name" path for a Hub repo id.
        raise WeightsError(f"there is no folder {source.location}.")
    folder = resolve_weights(source.location, None if source.is_local else source.revision)
    predictor = Predictor.from_pretrained(folder, **predictor_options)
    card = folder / MODEL_CARD_FILE
    return ServedModel(
        predictor=predictor,
        source=source,
        # huggingface_hub names each snapshot folder after its commit.
        commit=folder.name if not source.is_local and _COMMIT.match(folder.name) else None,
        weights_sha256=predictor.config.metadata.get("weights_sha256") or sha256_of(folder / WEIGHTS_FILE),
        model_card=RepoCard(card.read_text(encoding="utf-8")).text.strip() if card.is_file() else None,
    )


# --- API answers ---------------------------------------------------------------------------------


def top_label(prediction: Prediction) -> str:
    """The most probable label: the map shown first."""
    return prediction.labels[int(prediction.probabilities.argmax())]


def prediction_record(prediction: Prediction, served: ServedModel) -> dict[str, Any]:
    """JSON answer of ``/predict``: every label's probability and threshold, the positives, the weights."""
    return {
        "labels": list(prediction.labels),
        "probabilities": prediction.probability_by_label,
        "thresholds": {label: float(t) for label, t in zip(prediction.labels, prediction.thresholds, strict=True)},
        "positive": prediction.positive,
        "overlay_label": top_label(prediction),
        "model": served.summary(),
    }


def cam_record(prediction: Prediction, label: str, served: ServedModel) -> dict[str, Any]:
    """JSON answer of ``/cam``: the chosen label's probability, threshold and verdict."""
    i = prediction.index(label)
    probability, threshold = float(prediction.probabilities[i]), float(prediction.thresholds[i])
    return {
        "label": label,
        "probability": probability,
        "threshold": threshold,
        "positive": probability >= threshold,
        "caption": prediction.caption(label),
        "model": served.summary(),
    }


def model_info(served: ServedModel) -> dict[str, Any]:
    """JSON answer of ``/model_info``: labels, thresholds, provenance and recorded metrics of the weights."""
    config = served.config
    return {
        **served.summary(),
        "labels": list(config.labels),
        "thresholds": dict(zip(config.labels, config.thresholds, strict=True)),
        "image_size": config.image_size,
        "trunk": config.trunk,
        "description": config.metadata.get("description"),
        "training": config.metadata.get("training"),
        "evaluation": config.metadata.get("evaluation"),
    }


# --- What the page says about the weights ------------------------------------------------------


def trained_on(config: ModelConfig) -> str:
    """One sentence on the training data, from the weights' metadata."""
    if not config.trained:
        return "These weights are untrained (random): they were made for development and tests, not trained on data."
    training = config.metadata.get("training")
    if isinstance(training, dict) and training.get("dataset"):
        details = [f"split: {training['split']}" if training.get("split") else ""]
        details.append(f"{training['epochs']} epochs" if training.get("epochs") else "")
        details = "; ".join(d for d in details if d)
        return f"Trained on {training['dataset']}" + (f" — {details}." if details else ".")
    description = config.metadata.get("description")
    return str(description) if description else "The weights do not record what they were trained on."


def about_markdown(served: ServedModel) -> str:
    """Markdown for the page's "about" section: origin, checksum, training, evaluation, per-label table."""
    config = served.config
    origin = served.source.describe(public=True) + (f" (commit `{served.commit[:12]}`)" if served.commit else "")
    parts = [
        f"**Weights:** {origin}  \n**SHA-256 of {WEIGHTS_FILE}:** `{served.weights_sha256}`  \n"
        f"**Model:** {config.trunk} trunk, {config.image_size} px input, LSE pooling (r = {config.lse_r:g}), "
        f"{config.num_labels} labels, Grad-CAM on the transition layer",
        f"**Training:** {trained_on(config)}",
    ]
    description = config.metadata.get("description")
    if description and str(description) not in parts[1]:
        parts.append(f"**Description:** {description}")
    training = config.metadata.get("training")
    if isinstance(training, dict) and training:
        parts.append(_facts_list("Training record", training))
    evaluation = config.metadata.get("evaluation")
    if isinstance(evaluation, dict) and evaluation:
        parts.append(_evaluation_headline(evaluation))
    parts.append(_label_table(config, evaluation if isinstance(evaluation, dict) else {}))
    return "\n\n".join(parts)


def _evaluation_headline(evaluation: dict[str, Any]) -> str:
    numbers = []
    if _is_number(evaluation.get("mean_auroc")):
        numbers.append(
            f"mean AUROC **{evaluation['mean_auroc']:.3f}**{_ci(evaluation, 'mean_auroc_ci')} over all labels"
        )
    if _is_number(evaluation.get("mean_auroc_chestxray8")):
        value = evaluation["mean_auroc_chestxray8"]
        numbers.append(f"**{value:.3f}**{_ci(evaluation, 'mean_auroc_chestxray8_ci')} over the 8 ChestX-ray8 labels")
    where = [f"{evaluation['dataset']}" if evaluation.get("dataset") else ""]
    where.append(f"{evaluation['split']} split" if evaluation.get("split") else "")
    if evaluation.get("n_images"):
        where.append(f"{evaluation['n_images']} images")
    scope = ", ".join(w for w in where if w)
    headline = "; ".join(numbers) if numbers else "no summary metric recorded"
    return f"**Evaluation:** {headline}" + (f" ({scope})." if scope else ".")


def _ci(evaluation: dict[str, Any], key: str) -> str:
    """`` (95% CI 0.801–0.823)`` when the evaluation recorded a bootstrap interval, else nothing."""
    interval = evaluation.get(key)
    if isinstance(interval, list) and len(interval) == 2 and all(_is_number(v) for v in interval):
        return f" (95% CI {interval[0]:.3f}–{interval[1]:.3f})"
    return ""


def _facts_list(title: str, facts: dict[str, Any]) -> str:
    """Scalars of a free-form metadata dict as a list (nested values are left to the model card)."""
    rows = [f"- {_pretty(k)}: {_format(v)}" for k, v in facts.items() if isinstance(v, str | int | float | bool)]
    return f"**{title}:**\n\n" + "\n".join(rows) if rows else ""


def _label_table(config: ModelConfig, evaluation: dict[str, Any]) -> str:
    auroc = evaluation.get("per_label_auroc")
    auroc = auroc if isinstance(auroc, dict) else {}
    header = "| Label | Threshold |" + (" AUROC |" if auroc else "")
    rule = "| --- | ---: |" + (" ---: |" if auroc else "")
    rows = [
        f"| {label} | {threshold:.3f} |" + (f" {_format(auroc.get(label, '–'))} |" if auroc else "")
        for label, threshold in zip(config.labels, config.thresholds, strict=True)
    ]
    return "\n".join([header, rule, *rows])


def _pretty(key: str) -> str:
    return key.replace("_", " ")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def display_name(label: str) -> str:
    """How the page writes a label: ``Pleural_Thickening`` -> ``Pleural thickening`` (the API keeps the name)."""
    return label.replace("_", " ").capitalize()
