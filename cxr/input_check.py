"""The answer to "is this a frontal chest radiograph?", carried by every prediction.

:class:`InputCheck` is the record every entry point shows (``Prediction.input_check``, the CLI's JSON,
``/predict``, ``/cam``, MCP, ``cxr score``). A refused image's findings are never presented as findings:
its ``positive`` list is empty and the page shows the message instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from cxr.io import Upload
from cxr.resize import bilinear, shrink_by_area

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


# --- what the check reads -------------------------------------------------------------------

IMAGE_STATISTICS = 12  # length of image_statistics()
THUMBNAIL = 64  # side of the square thumbnail layout() and gradient_histograms() read
LAYOUT_GRID = 16  # layout(): block means on a 16 x 16 grid of the thumbnail
HOG_CELL, HOG_BLOCK, HOG_BINS = 8, 2, 9  # gradient_histograms(): Dalal and Triggs' cells, blocks and bins
# Bumped whenever descriptors() changes. A check fitted on other descriptors is not used: its folder loads and
# answers unchecked, with a warning that names the command fitting it again (cxr.weights.load_input_check).
DESCRIPTOR_VERSION = 2


def pooled_features(features: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) transition map -> (N, 3C) per-channel mean, max and standard deviation over space."""
    flat = features.float().flatten(2)
    return torch.cat([flat.mean(-1), flat.amax(-1), flat.std(-1)], dim=1)


def image_statistics(image: np.ndarray) -> np.ndarray:
    """Colour-free statistics of a decoded (H, W) image in [0, 1]: shape, grey-level histogram, edges.

    Read on every fourth pixel (cheap at any size). Radiographs have a typical spread of grey levels and a
    portrait-to-square shape; documents are mostly white, noise has no smooth areas, blank frames no spread.
    """
    h, w = image.shape
    grid = np.asarray(image[::4, ::4], dtype=np.float32)
    histogram = np.histogram(grid, bins=6, range=(0.0, 1.0))[0] / grid.size
    step = np.abs(np.diff(grid, axis=1)).mean() if grid.shape[1] > 1 else 0.0
    return np.array(
        [np.log(h / w), grid.mean(), grid.std(), (grid < 0.02).mean(), (grid > 0.98).mean(), step, *histogram],
        dtype=np.float32,
    )


def thumbnail(image: np.ndarray) -> np.ndarray:
    """The decoded (H, W) image squeezed to THUMBNAIL x THUMBNAIL: area means when shrinking, bilinear otherwise."""
    if min(image.shape) >= THUMBNAIL:
        return shrink_by_area(image, THUMBNAIL, THUMBNAIL)
    return bilinear(image, THUMBNAIL, THUMBNAIL)


def layout(thumb: np.ndarray) -> np.ndarray:
    """Where the bright and dark parts lie: the thumbnail's 16 x 16 block means standardised (so only the layout
    counts, not the window), and how far the grid and its column profile are from their mirror images.

    A frontal radiograph is nearly left-right symmetric (two lungs about the spine); a lateral is not.
    """
    n = THUMBNAIL // LAYOUT_GRID
    grid = thumb.reshape(LAYOUT_GRID, n, LAYOUT_GRID, n).mean(axis=(1, 3))
    grid = (grid - grid.mean()) / (grid.std() + 1e-3)
    columns = grid.mean(axis=0)
    mirrored = [np.abs(grid - grid[:, ::-1]).mean(), np.abs(columns - columns[::-1]).mean()]
    return np.concatenate([grid.ravel(), mirrored]).astype(np.float32)


def gradient_histograms(thumb: np.ndarray) -> np.ndarray:
    """Histograms of oriented gradients of the thumbnail (Dalal and Triggs, CVPR 2005): equal to
    ``skimage.feature.hog(thumb, 9, (8, 8), (2, 2), "L2-Hys")`` (tests/test_input_check_descriptors.py).

    Ribs, clavicles and lung borders make a frontal radiograph's edge pattern; block normalisation makes it
    indifferent to a site's windowing and post-processing. Written here, vectorised, because scikit-image is
    not otherwise a dependency of the app, and this takes half the time of its loop (0.5 ms against 1.2).
    """
    g = np.asarray(thumb, dtype=np.float64)
    rows, cols = np.zeros_like(g), np.zeros_like(g)
    rows[1:-1] = g[2:] - g[:-2]
    cols[:, 1:-1] = g[:, 2:] - g[:, :-2]
    magnitude = np.hypot(rows, cols)
    orientation = np.rad2deg(np.arctan2(rows, cols)) % 180
    bins = np.minimum((orientation // (180 / HOG_BINS)).astype(np.intp), HOG_BINS - 1)
    cells = THUMBNAIL // HOG_CELL
    cell_of = (np.arange(THUMBNAIL) // HOG_CELL)[:, None] * cells + np.arange(THUMBNAIL) // HOG_CELL
    histogram = np.bincount((cell_of * HOG_BINS + bins).ravel(), magnitude.ravel(), cells * cells * HOG_BINS)
    histogram = histogram.reshape(cells, cells, HOG_BINS) / HOG_CELL**2
    # (span, span, bins, 2, 2) windows of 2 x 2 cells, one per cell step, flattened cell by cell as skimage orders them
    windows = np.lib.stride_tricks.sliding_window_view(histogram, (HOG_BLOCK, HOG_BLOCK), axis=(0, 1))
    blocks = windows.transpose(0, 1, 3, 4, 2).reshape(windows.shape[0], windows.shape[1], -1)
    eps = 1e-5
    blocks = np.minimum(blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + eps**2), 0.2)  # L2-Hys: clip at 0.2
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + eps**2)
    return blocks.ravel().astype(np.float32)


def image_descriptors(image: np.ndarray) -> np.ndarray:
    """What the check reads of the picture itself: :func:`image_statistics`, :func:`layout` and
    :func:`gradient_histograms` of its :func:`thumbnail`."""
    thumb = thumbnail(image)
    return np.concatenate([image_statistics(image), layout(thumb), gradient_histograms(thumb)])


def descriptors(images: list[np.ndarray], features: torch.Tensor) -> torch.Tensor:
    """(N, 3C + D) what the check reads: pooled transition features and each image's :func:`image_descriptors`."""
    pictures = torch.from_numpy(np.stack([image_descriptors(image) for image in images])).to(features.device)
    return torch.cat([pooled_features(features), pictures], dim=1)


# --- the fitted check -------------------------------------------------------------------------

CHECK_FILE = "input_check.safetensors"
# The check's classes, in its output order, and the kind each one answers.
CLASS_KINDS: dict[str, str] = {
    "frontal": FRONTAL,
    "inverted": FRONTAL,
    "lateral": LATERAL,
    "other_medical": OTHER_MEDICAL,
    "not_medical": NOT_MEDICAL,
}
MESSAGES: dict[str, str] = {
    LATERAL: "This looks like a lateral (side-view) chest radiograph; the model reads frontal (PA/AP) views only, "
    "so its findings are not shown.",
    OTHER_MEDICAL: "This looks like a medical image other than a chest radiograph (CT, MRI, ultrasound or another "
    "body part); the model reads frontal chest radiographs only, so its findings are not shown.",
    NOT_MEDICAL: "This does not look like a medical image; the model reads frontal chest radiographs only, "
    "so its findings are not shown.",
}
UNFAMILIAR = "This does not look like the frontal chest radiographs the model knows; its findings are not shown."
INVERTED_NOTE = "The image's grey levels were inverted (a negative); it was corrected before the model read it."
TENSORS = ("center", "scale", "weight", "bias", "pca_mean", "components", "variances")
# DICOM Modality codes of projection radiography (CR computed, DX digital, RG radiographic imaging) and the
# codes that say nothing (OT other); any other code (CT, MR, US, NM, PT, MG, XA, ...) is another modality.
RADIOGRAPHY_MODALITIES = ("CR", "DX", "RG", "OT")


class InputCheckError(ValueError):
    """An input check file that is missing, corrupted or does not fit its settings."""


class OutdatedInputCheckError(InputCheckError):
    """An input check fitted on other descriptors than this version of :func:`descriptors` computes."""


@dataclass(frozen=True)
class InputChecker:
    """A fitted input check: two rules on the upload, then a multinomial logistic head plus a density score
    on :func:`descriptors`.

    Rules first: a DICOM file whose Modality is not projection radiography (:data:`RADIOGRAPHY_MODALITIES`)
    is another medical image; an upload more colourful than ``colour_limit`` is no radiograph, and the head
    only says whether it is another medical image (histology, colour Doppler) or not medical. Otherwise the
    head names the most probable of :data:`CLASS_KINDS`' classes. The density score is the Mahalanobis
    distance of the standardised descriptor to the frontal training images in their principal subspace;
    above ``distance_threshold`` an image the head calls frontal is refused all the same, so kinds no
    training image showed are refused too.

    Attributes:
        tensors: the fitted arrays (:data:`TENSORS`), float32 torch tensors.
        classes: class names in the head's output order.
        distance_threshold: the largest distance still accepted as frontal.
        metadata: how it was fitted and its held-out rates (JSON).
        colour_limit: the largest colourfulness (:attr:`cxr.io.Upload.colourfulness`) a radiograph may have;
            None: no colour rule.
    """

    tensors: dict[str, torch.Tensor]
    classes: tuple[str, ...]
    distance_threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)
    colour_limit: float | None = None

    def probabilities_and_distance(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, D) descriptors -> (N, K) class probabilities and (N,) distances to the frontal images."""
        t = self.tensors
        z = (x.float().cpu() - t["center"]) / t["scale"]
        probabilities = torch.softmax(z @ t["weight"].T + t["bias"], dim=1)
        projected = (z - t["pca_mean"]) @ t["components"].T
        distance = torch.sqrt((projected**2 / t["variances"]).sum(dim=1))
        return probabilities, distance

    def decide(
        self, x: torch.Tensor, uploads: list[Upload] | None = None, negatives: bool = True
    ) -> list[tuple[str, float, float]]:
        """(class, P(frontal), distance) per row: the class the check settles on after the rules and the density
        score; ``"rule:"`` or ``"unfamiliar:"`` prefixes a class a rule or the density score chose.

        ``uploads`` (one per row; default: grey, not DICOM) feed the rules. ``negatives=False`` leaves the
        inverted class out (for an image already corrected once).
        """
        probabilities, distance = self.probabilities_and_distance(x)
        uploads = uploads or [Upload()] * len(x)
        index = {name: i for i, name in enumerate(self.classes)}
        out = []
        for p, d, upload in zip(probabilities, distance, uploads, strict=True):
            named = self._rule(p, upload)
            if named is None:
                candidates = p.clone()
                if not negatives:
                    candidates[index["inverted"]] = -1
                named = self.classes[int(candidates.argmax())]
            if named == "frontal" and float(d) > self.distance_threshold:
                refusals = p.clone()
                refusals[[index["frontal"], index["inverted"]]] = -1
                named = "unfamiliar:" + self.classes[int(refusals.argmax())]
            out.append((named, float(p[index["frontal"]]), float(d)))
        return out

    def _rule(self, p: torch.Tensor, upload: Upload) -> str | None:
        """The class a rule on the upload settles, or None to let the head decide."""
        if upload.modality is not None and upload.modality not in RADIOGRAPHY_MODALITIES:
            return "rule:other_medical"
        if self.colour_limit is not None and upload.colourfulness > self.colour_limit:
            other, not_medical = (p[self.classes.index(name)] for name in ("other_medical", "not_medical"))
            return "rule:" + ("other_medical" if other > not_medical else "not_medical")
        return None

    def check(
        self, image: np.ndarray, features: torch.Tensor, negatives: bool = True, upload: Upload | None = None
    ) -> InputCheck:
        """The :class:`InputCheck` of one decoded image, its (C, h, w) transition map and what its upload said.

        ``inverted=True`` here means "looks like a negative": :class:`cxr.predictor.Predictor` then reads
        the corrected image and checks that one, with ``negatives=False``.
        """
        named, score, _ = self.decide(descriptors([image], features[None]), [upload or Upload()], negatives)[0]
        if named == "frontal":
            return InputCheck(accepted=True, kind=FRONTAL, score=score)
        if named == "inverted":
            return InputCheck(accepted=False, kind=FRONTAL, score=score, inverted=True, message=INVERTED_NOTE)
        unfamiliar = named.startswith("unfamiliar:")
        kind = CLASS_KINDS[named.split(":")[-1]]
        return InputCheck(accepted=False, kind=kind, score=score, message=UNFAMILIAR if unfamiliar else MESSAGES[kind])

    def settings(self, sha256: str) -> dict[str, Any]:
        """What config.json's ``input_check`` records: the SHA-256 of :data:`CHECK_FILE` and the settings."""
        return {"sha256": sha256, "descriptors": DESCRIPTOR_VERSION, "classes": list(self.classes),
                "distance_threshold": self.distance_threshold, "colour_limit": self.colour_limit,
                "metadata": self.metadata}  # fmt: skip

    def with_metadata(self, metadata: dict[str, Any]) -> InputChecker:
        """A copy carrying ``metadata`` (fitting provenance, held-out rates)."""
        return dataclasses.replace(self, metadata={**self.metadata, **metadata})

    @classmethod
    def load(cls, folder: str | Path, settings: dict[str, Any]) -> InputChecker:
        """Read the check file config.json's ``settings`` describe (its SHA-256 checked by the caller).

        Raises InputCheckError when the file is unreadable or does not fit the settings, and its subclass
        OutdatedInputCheckError when it was fitted on other descriptors than this version of :func:`descriptors`
        computes (settings without a version: version 1).
        """
        version = settings.get("descriptors", 1)
        if version != DESCRIPTOR_VERSION:
            raise OutdatedInputCheckError(
                f"the input check was fitted on descriptors of version {version}, and this cxr computes version "
                f"{DESCRIPTOR_VERSION}: fit it again with `python -m train input-check {Path(folder)}`."
            )
        path = Path(folder) / CHECK_FILE
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise InputCheckError(f"{path.name} is not a readable safetensors file ({err}).") from err
        missing = [name for name in TENSORS if name not in tensors]
        classes = tuple(settings.get("classes", ()))
        if missing or set(classes) != set(CLASS_KINDS) or tensors["weight"].shape[0] != len(classes):
            raise InputCheckError(f"{path.name} does not fit its settings in config.json.")
        limit = settings.get("colour_limit")
        return cls({k: tensors[k].float() for k in TENSORS}, classes, float(settings["distance_threshold"]),
                   dict(settings.get("metadata", {})), None if limit is None else float(limit))  # fmt: skip
