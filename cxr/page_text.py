"""The words the demo page shows for a prediction: findings rows, heatmap choices, captions and alt text.

Labels the served weights cannot tell from chance (:mod:`cxr.reliability`) are listed apart, below the
others, with their test AUROC and interval, and never carry the positive mark. Pure functions of a
:class:`~cxr.predictor.Prediction`, so the page's text is tested without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping

from cxr.labels import display_name
from cxr.predictor import Prediction
from cxr.reliability import AT_CHANCE, Evidence

POSITIVE_MARK = "▲"
FINDINGS_HEADING = f"Findings ({POSITIVE_MARK} = at or above threshold; click one for its heatmap)"
AT_CHANCE_HEADING = "At chance on the test set: never called positive (click one for its heatmap)"


def finding_name(prediction: Prediction, label: str) -> str:
    """A findings row, ``"Pleural thickening ▲ 50.3%"``: one decimal, so 50.3% ▲ never sits beside an unmarked 50%."""
    mark = f" {POSITIVE_MARK}" if label in prediction.positive else ""
    return f"{display_name(label)}{mark} {prediction.probability_by_label[label]:.1%}"


def at_chance_name(prediction: Prediction, label: str, evidence: Evidence) -> str:
    """An at-chance row, ``"Nodule 20.1% · AUROC 0.45, 95% CI 0.22–0.70"`` (never marked)."""
    return f"{display_name(label)} {prediction.probability_by_label[label]:.1%} · {evidence.numbers()}"


def row_name(prediction: Prediction, label: str, evidence: Mapping[str, Evidence]) -> str:
    """The row (and heatmap choice) that names ``label`` on the page."""
    if label in prediction.at_chance:
        return at_chance_name(prediction, label, evidence[label])
    return finding_name(prediction, label)


def ranked(prediction: Prediction) -> list[str]:
    """Labels most probable first, the at-chance ones after all others."""
    at_chance = set(prediction.at_chance)
    return sorted(prediction.labels, key=lambda label: (label in at_chance, -prediction.probability_by_label[label]))


def finding_rows(prediction: Prediction, evidence: Mapping[str, Evidence]) -> tuple[dict[str, float], dict[str, float]]:
    """``({row: probability}, {at-chance row: probability})`` for the two gr.Label lists (they sort them)."""
    rows = {row_name(prediction, label, evidence): p for label, p in prediction.probability_by_label.items()}
    at_chance = {row_name(prediction, label, evidence) for label in prediction.at_chance}
    return (
        {row: p for row, p in rows.items() if row not in at_chance},
        {row: p for row, p in rows.items() if row in at_chance},
    )


def heatmap_choices(prediction: Prediction, evidence: Mapping[str, Evidence]) -> list[tuple[str, str]]:
    """Dropdown entries in :func:`ranked` order: ``("Pleural thickening ▲ 73.2%", "Pleural_Thickening")``."""
    return [(row_name(prediction, label, evidence), label) for label in ranked(prediction)]


def caption(prediction: Prediction, label: str, evidence: Evidence, why_not_first: str | None = None) -> str:
    """Markdown under the images: the heatmap's caption (as drawn on the overlay), the test AUROC of an
    at-chance label, and why no heatmap met the first-heatmap rule when none did."""
    text = f"**Heatmap of {prediction.caption(label)}**"
    if evidence.verdict == AT_CHANCE:
        text += f"  \n{display_name(label)} is {evidence.describe()}."
    if why_not_first:
        text = (
            f"**No heatmap of a finding above chance to show first:** {why_not_first}. Showing the most probable "
            f"finding instead.\n\n{text}"
        )
    return text


def heatmap_alt(prediction: Prediction, label: str) -> str:
    """Alt text of the heatmap: ``"Grad-CAM heatmap of Effusion over the radiograph"`` (an empty one says so)."""
    text = f"Grad-CAM heatmap of {display_name(label)} over the radiograph"
    return f"{text}: empty, no region raises this finding's score" if label in prediction.empty_maps else text
