"""The answer to "is this a frontal chest radiograph?", carried by every prediction.

:class:`InputCheck` is the record every entry point shows (``Prediction.input_check``, the CLI's JSON,
``/predict``, ``/cam``, MCP, ``cxr score``). A refused image's findings are never presented as findings:
its ``positive`` list is empty and the page shows the message instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FRONTAL = "frontal_chest_xray"
LATERAL = "lateral_chest_xray"
OTHER_MEDICAL = "other_medical_image"
NOT_MEDICAL = "not_medical_image"
UNCHECKED = "unchecked"
KINDS: tuple[str, ...] = (FRONTAL, LATERAL, OTHER_MEDICAL, NOT_MEDICAL, UNCHECKED)

NO_CHECK_NOTE = "These weights carry no input check: the image was not checked for being a frontal chest radiograph."


@dataclass(frozen=True)
class InputCheck:
    """What the input check concluded about one image.

    Attributes:
        accepted: True when the findings may be presented as findings.
        kind: one of :data:`KINDS`.
        score: probability that the image is a frontal chest radiograph (None when unchecked).
        inverted: True when the grey levels were found inverted (a negative) and corrected before predicting.
        message: one sentence for a person; empty when accepted, unless there is something to note.
    """

    accepted: bool
    kind: str
    score: float | None
    inverted: bool = False
    message: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}.")

    @classmethod
    def unchecked(cls, note: str = NO_CHECK_NOTE) -> InputCheck:
        """The answer for weights without an input check: accepted, with a note."""
        return cls(accepted=True, kind=UNCHECKED, score=None, inverted=False, message=note)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, as every answer record carries them."""
        return asdict(self)
