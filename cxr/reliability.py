"""Which labels the served weights can tell apart from chance, read from their own test evaluation.

A label is ``"above chance"`` when its test AUROC's 95% confidence interval lies above 0.5, ``"at chance"``
when the interval includes 0.5 or the AUROC is at most 0.5, and ``"not evaluated"`` when ``config.json``
holds no test evaluation for it. An at-chance label's probability is still given, but it is never a
positive finding. The page, the About text and the model card all word this with the functions here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxr.config import ModelConfig
from cxr.labels import display_name

ABOVE_CHANCE = "above chance"
AT_CHANCE = "at chance"
NOT_EVALUATED = "not evaluated"


@dataclass(frozen=True)
class Evidence:
    """One label's test AUROC and its 95% interval, as recorded (either may be missing)."""

    auroc: float | None
    interval: tuple[float, float] | None

    @property
    def verdict(self) -> str:
        """``"above chance"``, ``"at chance"`` or ``"not evaluated"``."""
        if self.auroc is not None and self.auroc <= 0.5:
            return AT_CHANCE
        if self.interval is None:
            return NOT_EVALUATED
        return ABOVE_CHANCE if min(self.interval) > 0.5 else AT_CHANCE

    def numbers(self) -> str:
        """``"AUROC 0.45, 95% CI 0.22–0.70"``: what is recorded, to two decimals."""
        parts = [f"AUROC {self.auroc:.2f}"] if self.auroc is not None else []
        if self.interval is not None:
            parts.append(f"95% CI {self.interval[0]:.2f}–{self.interval[1]:.2f}")
        return ", ".join(parts)

    def describe(self) -> str:
        """``"at chance on the test set: AUROC 0.45, 95% CI 0.22–0.70"``."""
        if self.verdict == NOT_EVALUATED:
            return "not evaluated on a test set"
        return f"{self.verdict} on the test set: {self.numbers()}"


def evidence(auroc: Any, interval: Any) -> Evidence:
    """An :class:`Evidence` from raw JSON values; anything that is not a number (or a pair of them) is missing."""
    pair = interval if isinstance(interval, list | tuple) and len(interval) == 2 else ()
    return Evidence(
        float(auroc) if _number(auroc) else None,
        (float(pair[0]), float(pair[1])) if pair and all(_number(v) for v in pair) else None,
    )


def label_evidence(config: ModelConfig) -> dict[str, Evidence]:
    """``{label: Evidence}`` in model order, from ``metadata.evaluation`` when it is a test-split evaluation."""
    evaluation = config.metadata.get("evaluation")
    evaluation = evaluation if isinstance(evaluation, Mapping) and evaluation.get("split") == "test" else {}
    aurocs = _mapping(evaluation.get("per_label_auroc"))
    intervals = _mapping(evaluation.get("per_label_auroc_ci"))
    return {label: evidence(aurocs.get(label), intervals.get(label)) for label in config.labels}


def label_reliability(config: ModelConfig) -> dict[str, str]:
    """``{label: "above chance" | "at chance" | "not evaluated"}`` in model order, from ``metadata.evaluation``."""
    return {label: e.verdict for label, e in label_evidence(config).items()}


def reliability_sentence(verdicts: Mapping[str, str]) -> str:
    """What the page, About and the model card say about the labels at chance (one wording for all three)."""
    at_chance = [display_name(label) for label, verdict in verdicts.items() if verdict == AT_CHANCE]
    unknown = sum(verdict == NOT_EVALUATED for verdict in verdicts.values())
    if unknown == len(verdicts):
        return "These weights record no per-finding test evaluation, so which findings are at chance is not known."
    if not at_chance:
        if not unknown:
            return "Every finding's test AUROC has a 95% CI above 0.5: all are above chance on the test set."
        return (
            f"No evaluated finding is at chance on the test set; {unknown} of {len(verdicts)} have no test evaluation."
        )
    return (
        f"**At chance on the test set ({len(at_chance)} of {len(verdicts)}):** {', '.join(at_chance)} — the 95% CI "
        "of each one's test AUROC includes 0.5 (or its AUROC is at most 0.5), so these weights cannot tell it from "
        "chance. Its probability is still given, but it is never called positive or marked ▲, and the demo page "
        "lists it greyed, below the other findings."
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
