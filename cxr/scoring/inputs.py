"""What ``cxr score`` reads: image files, folders (recursive), globs, or CSV / Parquet manifests with a path column.

A manifest's other columns (patient or study ids, ...) are carried into every output row of its images, as text,
so the schema of the output does not depend on which rows a part holds.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cxr.io import DICOM_SUFFIXES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", *DICOM_SUFFIXES)
MANIFEST_SUFFIXES = (".csv", ".parquet")
DEFAULT_PATH_COLUMN = "path"


class ManifestError(ValueError):
    """A manifest cannot be used (no path column, unreadable); ``str(err)`` says why."""


@dataclass(frozen=True)
class ScoreInput:
    """One image to score: its path as given (manifest paths resolved against the manifest's folder) and the
    manifest columns that travel with it."""

    path: str
    extra: dict[str, str | None] = field(default_factory=dict)


def expand_inputs(specs: Sequence[str], path_column: str = DEFAULT_PATH_COLUMN) -> list[ScoreInput]:
    """Every image named by ``specs``, once each, in the order given (folders and globs sorted).

    A name that is neither a folder, a manifest nor a glob that matches is kept as it is, so the run records
    it as an unreadable file instead of dropping it silently.
    """
    seen: set[str] = set()
    inputs: list[ScoreInput] = []
    for item in _expand(specs, path_column):
        if item.path not in seen:
            seen.add(item.path)
            inputs.append(item)
    extra_columns = {key for item in inputs for key in item.extra}
    if extra_columns:  # images from several sources: every row gets every carried column
        return [ScoreInput(i.path, {key: i.extra.get(key) for key in sorted(extra_columns)}) for i in inputs]
    return inputs


def _expand(specs: Sequence[str], path_column: str) -> Iterable[ScoreInput]:
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            yield from (ScoreInput(str(p)) for p in sorted(path.rglob("*")) if _is_image(p))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            yield from read_manifest(path, path_column)
        elif not path.exists() and glob.has_magic(spec):
            yield from (ScoreInput(p) for p in sorted(glob.glob(spec, recursive=True)) if _is_image(Path(p)))
        else:
            yield ScoreInput(spec)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def read_manifest(path: Path, path_column: str = DEFAULT_PATH_COLUMN) -> list[ScoreInput]:
    """Rows of a CSV or Parquet manifest; relative paths are taken relative to the manifest's folder."""
    rows = _read_table(path)
    if rows and path_column not in rows[0]:
        raise ManifestError(f"{path.name} has no {path_column!r} column (columns: {', '.join(rows[0])}).")
    inputs = []
    for row in rows:
        value = row.pop(path_column)
        if not value:
            continue
        image = Path(str(value))
        inputs.append(
            ScoreInput(
                str(image if image.is_absolute() else path.parent / image),
                {key: None if v is None else str(v) for key, v in row.items()},
            )
        )
    return inputs


def _read_table(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as f:
                return list(csv.DictReader(f))
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    except (OSError, ValueError, csv.Error) as err:  # pyarrow.ArrowInvalid is a ValueError
        raise ManifestError(f"{path.name} could not be read as a manifest: {err}") from err
