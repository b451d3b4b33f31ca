"""What the demo server needs besides its UI: which weights to serve, what to say about them, what the API returns.

The weights are chosen by :func:`cxr.sources.load_in_order` (explicit folder, the Hub repo at its pinned
revision, the bundled starter, demonstration weights) and the server never fails to start for want of
them. The "about" text and the banner are read from the weights' ``config.json`` and model card, never
written by hand, so a demo cannot describe weights other than the ones it serves.
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
from cxr.labels import display_name
from cxr.predictor import Prediction, Predictor
from cxr.provenance import headline_evaluation, interval_text, trained_on, warning
from cxr.reliability import NOT_EVALUATED, Evidence, label_evidence, reliability_sentence
from cxr.sources import WeightsChoice, load_in_order
from cxr.weights import WEIGHTS_FILE, sha256_of, state_sha256

MODEL_CARD_FILE = "README.md"
# ![alt](evaluation/roc.png): a picture beside the card in its folder, which the page cannot serve.
_LOCAL_IMAGE = re.compile(r"!\[([^\]]*)\]\((?!https?://)[^)]*\)")


@dataclass(frozen=True)
class ServedModel:
    """The loaded predictor plus everything the page and the API say about its weights."""

    predictor: Predictor
    choice: WeightsChoice
    weights_sha256: str
    model_card: str | None  # the weights folder's README.md without its YAML front matter

    @property
    def config(self) -> ModelConfig:
        return self.predictor.config

    @property
    def commit(self) -> str | None:
        return self.choice.commit

    def summary(self) -> dict[str, Any]:
        """Provenance attached to every API answer, so a result can be traced to the exact weights."""
        choice = self.choice
        location = Path(choice.location).name if choice.kind in ("folder", "starter") else choice.location
        return {
            "kind": choice.kind,
            "source": location,
            "revision": choice.revision,
            "commit": self.commit,
            "weights_sha256": self.weights_sha256,
            "trained": self.config.trained,
            "warning": warning(self.config),
            "why": choice.reason,
        }


def load_served_model(
    explicit: str | None = None,
    revision: str | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    strict_explicit: bool = False,
    **predictor_options: Any,
) -> ServedModel:
    """Load the weights once, in the documented order (:mod:`cxr.sources`); the app never fails here."""
    model, choice = load_in_order(explicit, revision, environ=environ, strict_explicit=strict_explicit)
    predictor = Predictor(model, **predictor_options)
    if choice.folder is None:  # demonstration weights exist only in memory: fingerprint their tensors
        sha = state_sha256(model)
    else:
        sha = predictor.config.metadata.get("weights_sha256") or sha256_of(choice.folder / WEIGHTS_FILE)
    card = choice.folder / MODEL_CARD_FILE if choice.folder else None
    return ServedModel(
        predictor=predictor,
        choice=choice,
        weights_sha256=sha,
        model_card=page_card(card.read_text(encoding="utf-8")) if card and card.is_file() else None,
    )


def page_card(card: str) -> str:
    """The model card as the page shows it: no YAML front matter, and its plots (files beside the card, which
    the page does not serve) named in words instead of shown as broken images."""
    text = RepoCard(card).text.strip()
    return _LOCAL_IMAGE.sub(lambda m: f"*(plot in the weights folder: {m.group(1) or 'figure'})*", text)


def weights_banner(served: ServedModel) -> tuple[str, bool] | None:
    """Markdown for the banner above the results, and whether it is a red warning (None: no banner)."""
    caveat = warning(served.config)
    if caveat is not None:
        why = f" {served.choice.reason}" if served.choice.kind == "demonstration" else ""
        return f"**{caveat}**{why}", True
    if served.choice.kind == "starter":
        evaluation = headline_evaluation(served.config)
        return (
            f"**Starter model, weak by design.** {trained_on(served.config)} From scratch (no ImageNet weights)"
            + (f"; {evaluation}" if evaluation else "")
            + ". The project's Hub weights are not available here (see About).",
            False,
        )
    return None


# --- API answers ---------------------------------------------------------------------------------


def first_heatmap(prediction: Prediction) -> tuple[str, str | None]:
    """The label whose heatmap is shown first, and why it breaks the rule (None when it keeps it).

    The rule: the most probable label that is not at chance and whose Grad-CAM map is not empty. When no
    label is both, the most probable label is shown and the reason says why no label qualifies.
    """
    excluded = {*prediction.at_chance, *prediction.empty_maps}
    ranked = sorted(prediction.labels, key=lambda label: -prediction.probability_by_label[label])
    chosen = next((label for label in ranked if label not in excluded), None)
    if chosen is not None:
        return chosen, None
    if len(prediction.at_chance) == len(prediction.labels):
        return ranked[0], "every finding is at chance on the test set of these weights"
    return ranked[0], "every finding the model can tell from chance has an empty Grad-CAM map on this image"


def prediction_record(prediction: Prediction, served: ServedModel) -> dict[str, Any]:
    """JSON answer of ``/predict``: the answer record (:meth:`Prediction.to_dict`), the map shown, the weights."""
    return {**prediction.to_dict(), "overlay_label": first_heatmap(prediction)[0], "model": served.summary()}


def cam_record(prediction: Prediction, label: str, served: ServedModel) -> dict[str, Any]:
    """JSON answer of ``/cam``: the chosen label's probability, threshold and verdict, with the answer record's
    per-image fields (input check, label reliability, empty maps)."""
    i = prediction.index(label)
    record = prediction.to_dict()
    return {
        "label": label,
        "probability": float(prediction.probabilities[i]),
        "threshold": float(prediction.thresholds[i]),
        "positive": label in prediction.positive,
        "caption": prediction.caption(label),
        **{key: record[key] for key in ("input_check", "label_reliability", "at_chance", "empty_maps")},
        "model": served.summary(),
    }


def model_info(served: ServedModel) -> dict[str, Any]:
    """JSON answer of ``/model_info``: labels, thresholds, provenance and recorded metrics of the weights, and the
    backend that runs them (see :mod:`cxr.backends`)."""
    config = served.config
    return {
        **served.summary(),
        "labels": list(config.labels),
        "thresholds": dict(zip(config.labels, config.thresholds, strict=True)),
        "image_size": config.image_size,
        "trunk": config.trunk,
        "backend": served.predictor.backend_name,
        "description": config.metadata.get("description"),
        "training": config.metadata.get("training"),
        "evaluation": config.metadata.get("evaluation"),
    }


# --- What the page says about the weights ------------------------------------------------------


def about_markdown(served: ServedModel) -> str:
    """Markdown for the page's "about" section: origin, checksum, training, evaluation, per-label table."""
    config = served.config
    origin = served.choice.describe(public=True) + (f" (commit `{served.commit[:12]}`)" if served.commit else "")
    parts = [
        f"**Weights:** {origin}  \n**SHA-256 of {WEIGHTS_FILE}:** `{served.weights_sha256}`  \n"
        f"**Model:** {config.trunk} trunk, {config.image_size} px input, LSE pooling (r = {config.lse_r:g}), "
        f"{config.num_labels} labels, Grad-CAM on the transition layer",
        f"**Why these weights:** {served.choice.reason}",
        f"**Training:** {trained_on(config)}",
    ]
    description = config.metadata.get("description")
    if description and str(description) not in parts[2]:
        parts.append(f"**Description:** {description}")
    training = config.metadata.get("training")
    if isinstance(training, dict) and training:
        parts.append(_facts_list("Training record", training))
    evaluation = config.metadata.get("evaluation")
    if isinstance(evaluation, dict) and evaluation:
        parts.append(_evaluation_headline(evaluation))
    parts.append(_label_table(config))
    return "\n\n".join(parts)


def _evaluation_headline(evaluation: dict[str, Any]) -> str:
    numbers = []
    if _is_number(evaluation.get("mean_auroc")):
        numbers.append(
            f"mean AUROC **{evaluation['mean_auroc']:.3f}**{interval_text(evaluation, 'mean_auroc_ci')} over all labels"
        )
    if _is_number(evaluation.get("mean_auroc_chestxray8")):
        value = evaluation["mean_auroc_chestxray8"]
        ci = interval_text(evaluation, "mean_auroc_chestxray8_ci")
        numbers.append(f"**{value:.3f}**{ci} over the 8 ChestX-ray8 labels")
    where = [f"{evaluation['dataset']}" if evaluation.get("dataset") else ""]
    where.append(f"{evaluation['split']} split" if evaluation.get("split") else "")
    if evaluation.get("n_images"):
        where.append(f"{evaluation['n_images']} images")
    scope = ", ".join(w for w in where if w)
    headline = "; ".join(numbers) if numbers else "no summary metric recorded"
    return f"**Evaluation:** {headline}" + (f" ({scope})." if scope else ".")


def _facts_list(title: str, facts: dict[str, Any]) -> str:
    """Scalars of a free-form metadata dict as a list (nested values are left to the model card)."""
    rows = [f"- {_pretty(k)}: {_format(v)}" for k, v in facts.items() if isinstance(v, str | int | float | bool)]
    return f"**{title}:**\n\n" + "\n".join(rows) if rows else ""


def _label_table(config: ModelConfig) -> str:
    """Each label's threshold and, from a test evaluation, its AUROC with 95% CI and whether it is above chance,
    after the sentence the page and the model card also say about the labels at chance."""
    evidence = label_evidence(config)
    evaluated = any(e.verdict != NOT_EVALUATED for e in evidence.values())
    header = "| Label | Threshold |" + (" Test AUROC (95% CI) | Reliability |" if evaluated else "")
    rule = "| --- | ---: |" + (" ---: | --- |" if evaluated else "")
    rows = [
        f"| {display_name(label)} | {threshold:.3f} |"
        + (f" {_auroc_cell(evidence[label])} | {evidence[label].verdict} |" if evaluated else "")
        for label, threshold in zip(config.labels, config.thresholds, strict=True)
    ]
    table = "\n".join([header, rule, *rows])
    if not evaluated:
        return table
    return reliability_sentence({label: e.verdict for label, e in evidence.items()}) + "\n\n" + table


def _auroc_cell(evidence: Evidence) -> str:
    auroc = f"{evidence.auroc:.3f}" if evidence.auroc is not None else "–"
    return auroc + (f" ({evidence.interval[0]:.3f}–{evidence.interval[1]:.3f})" if evidence.interval else "")


def _pretty(key: str) -> str:
    return key.replace("_", " ")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
