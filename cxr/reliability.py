"""Which labels the served weights can tell apart from chance, read from their own test evaluation.

A label is ``"above chance"`` when its test AUROC's 95% confidence interval lies above 0.5, ``"at chance"``
when the interval includes 0.5 or the AUROC is at most 0.5, and ``"not evaluated"`` when ``config.json``
holds no test evaluation for it. An at-chance label's probability is still given, but it is never a
positive finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxr.config import ModelConfig

ABOVE_CHANCE = "above chance"
AT_CHANCE = "at chance"
NOT_EVALUATED = "not evaluated"


def label_reliability(config: ModelConfig) -> dict[str, str]:
    """``{label: "above chance" | "at chance" | "not evaluated"}`` in model order, from ``metadata.evaluation``."""
    evaluation = config.metadata.get("evaluation")
    evaluation = evaluation if isinstance(evaluation, Mapping) and evaluation.get("split") == "test" else {}
    aurocs = _mapping(evaluation.get("per_label_auroc"))
    intervals = _mapping(evaluation.get("per_label_auroc_ci"))
    return {label: _verdict(aurocs.get(label), intervals.get(label)) for label in config.labels}


def _verdict(auroc: Any, interval: Any) -> str:
    if _number(auroc) and auroc <= 0.5:
        return AT_CHANCE
    if isinstance(interval, list | tuple) and len(interval) == 2 and all(_number(v) for v in interval):
        return ABOVE_CHANCE if min(interval) > 0.5 else AT_CHANCE
    return NOT_EVALUATED


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
