"""The work both engines share: read, hash and decode one file; turn a batch of decoded images into rows.

Reading and decoding happen where the engine puts them (DataLoader worker processes, Ray actors); the forward
pass is one :meth:`cxr.predictor.Predictor.predict_batch`, so a scored row holds exactly what ``cxr predict``
prints for the same file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.io import Decoded, InvalidImageError, decode, read_image_file
from cxr.predictor import Prediction
from cxr.scoring.inputs import ScoreInput
from cxr.scoring.rows import error_row, prediction_row
from cxr.serving import ServedModel


@dataclass
class LoadedImage:
    """One input after reading: its bytes' SHA-256 and decoded pixels, or why there are none."""

    item: ScoreInput
    sha256: str | None
    image: Decoded | None = None
    error: str | None = None
    skipped: bool = False  # already scored with these weights (same path and SHA-256)


def load_input(item: ScoreInput, done: set[tuple[str, str]] | frozenset = frozenset()) -> LoadedImage:
    """Read the file once, hash it, and decode it unless (path, SHA-256) is in ``done``; never raises for bad files."""
    try:
        data = read_image_file(Path(item.path))
    except InvalidImageError as err:
        return LoadedImage(item, None, error=str(err))
    sha = hashlib.sha256(data).hexdigest()
    if (item.path, sha) in done:
        return LoadedImage(item, sha, skipped=True)
    try:
        return LoadedImage(item, sha, image=decode(data, name=item.path))
    except InvalidImageError as err:
        return LoadedImage(item, sha, error=str(err))


class CamWriter:
    """``--cams DIR``: every label's maps as one compressed ``.npz`` per image, or overlays of the named labels.

    Files are named ``<stem>-<12 hex of SHA-256 of the path>``, unique per input path.
    """

    def __init__(self, folder: str | Path, labels: Sequence[str] = (), opacity: float = 0.5) -> None:
        self.folder = Path(folder)
        self.labels = list(labels)
        self.opacity = opacity
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, path: str, prediction: Prediction) -> list[str]:
        stem = f"{Path(path).stem}-{hashlib.sha256(path.encode()).hexdigest()[:12]}"
        if not self.labels:
            target = self.folder / f"{stem}.npz"
            # float16 keeps 3 significant digits of maps in [0, 1]: plenty for display, half the disk.
            np.savez_compressed(target, maps=prediction.maps.astype(np.float16), labels=np.array(prediction.labels))
            return [str(target)]
        written = []
        for label in self.labels:
            target = self.folder / f"{stem}_{label}.png"
            Image.fromarray(prediction.overlay(label, opacity=self.opacity)).save(target)
            written.append(str(target))
        return written


def rows_for(
    loaded: Sequence[LoadedImage], served: ServedModel, batch_size: int, cams: CamWriter | None = None
) -> list[dict]:
    """Rows for a batch of loaded inputs (skipped ones give none), in input order."""
    weights = served.weights_sha256
    decoded = [x for x in loaded if x.image is not None]
    predictions = dict(
        zip(
            (id(x) for x in decoded),
            served.predictor.predict_batch([x.image for x in decoded], batch_size=batch_size),
            strict=True,
        )
    )
    rows = []
    for x in loaded:
        if x.skipped:
            continue
        if x.image is None:
            rows.append(error_row(x.item.path, x.sha256, x.error or "not decoded", weights, x.item.extra))
            continue
        prediction = predictions[id(x)]
        files = cams.write(x.item.path, prediction) if cams else []
        rows.append(prediction_row(x.item.path, x.sha256, prediction.to_dict(), weights, x.item.extra, files))
    return rows
