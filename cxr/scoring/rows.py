"""One Parquet row per image, flattened from the answer record (:meth:`cxr.predictor.Prediction.to_dict`).

Columns, in order:

- ``path`` (string): the image as given; ``sha256`` (string): of the file's bytes, null when it could not be read;
  ``error`` (string): why the image has no scores, null when it has them.
- ``p_<label>`` (float32), one per label in model order: the calibrated probability, exactly the record's value.
- ``positive``, ``at_chance``, ``empty_maps`` (list of string): as in the record.
- ``input_check`` (struct): the record's input check, field by field (:class:`cxr.input_check.InputCheck`).
- ``cam_files`` (list of string): the maps (``.npz``) or overlays (``.png``) written for the image with ``--cams``.
- ``weights_sha256`` (string): of the weights that scored the row (resume never mixes weights).
- then the manifest's carried columns (string).

What is the same for every row (labels, thresholds, label reliability, the weights' provenance and config, the
cxr version) is in the file's metadata instead (:mod:`cxr.scoring.store`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from cxr.input_check import InputCheck

# InputCheck's annotations (strings under ``from __future__ import annotations``) -> Arrow types.
_ARROW_TYPES = {"bool": pa.bool_(), "str": pa.string(), "float | None": pa.float64(), "float": pa.float64()}


def probability_column(label: str) -> str:
    """The column holding ``label``'s probability."""
    return f"p_{label}"


def input_check_type() -> pa.StructType:
    """The ``input_check`` struct: one field per :class:`InputCheck` field, so the record and the column agree."""
    fields = []
    for f in dataclasses.fields(InputCheck):
        if f.type not in _ARROW_TYPES:
            raise TypeError(f"InputCheck.{f.name} has type {f.type!r}, which cxr.scoring.rows does not map yet.")
        fields.append(pa.field(f.name, _ARROW_TYPES[f.type]))
    return pa.struct(fields)


def score_schema(labels: Sequence[str], extra_columns: Sequence[str] = ()) -> pa.Schema:
    """The schema of every part and of the consolidated file."""
    strings = pa.list_(pa.string())
    return pa.schema(
        [
            pa.field("path", pa.string(), nullable=False),
            pa.field("sha256", pa.string()),
            pa.field("error", pa.string()),
            *(pa.field(probability_column(label), pa.float32()) for label in labels),
            pa.field("positive", strings),
            pa.field("at_chance", strings),
            pa.field("empty_maps", strings),
            pa.field("input_check", input_check_type()),
            pa.field("cam_files", strings),
            pa.field("weights_sha256", pa.string()),
            *(pa.field(name, pa.string()) for name in extra_columns),
        ]
    )


def prediction_row(
    path: str, sha256: str, record: dict[str, Any], weights_sha256: str, extra: dict[str, Any], cam_files: Sequence[str]
) -> dict[str, Any]:
    """The row of a scored image, from its answer record (``Prediction.to_dict()``)."""
    return {
        "path": path,
        "sha256": sha256,
        "error": None,
        **{probability_column(label): p for label, p in record["probabilities"].items()},
        "positive": record["positive"],
        "at_chance": record["at_chance"],
        "empty_maps": record["empty_maps"],
        "input_check": record["input_check"],
        "cam_files": list(cam_files),
        "weights_sha256": weights_sha256,
        **extra,
    }


def error_row(path: str, sha256: str | None, message: str, weights_sha256: str, extra: dict[str, Any]) -> dict:
    """The row of an image that could not be scored: no probabilities, the reason in ``error``."""
    return {"path": path, "sha256": sha256, "error": message, "weights_sha256": weights_sha256, **extra}


def rows_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows -> a table of exactly ``schema`` (missing columns are null)."""
    return pa.Table.from_pylist(list(rows), schema=schema)
