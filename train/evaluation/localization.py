"""Weakly supervised localization on BBox_List_2017: the Wang et al. (2017) protocol and the pointing game.

Wang et al. (ChestX-ray8, CVPR 2017) turn the map of a box's label into boxes. Their map is the
class activation map ``sum_c w_c * A_c`` of the transition layer, *signed* (no ReLU;
:func:`cxr.cam.class_activation_maps`), at the image's own resolution, min-max scaled to [0, 255];
pixels below a threshold (the paper uses 60 and 180) are dropped and one box is drawn around each
connected region left. A ground-truth box counts as localized at T when some generated box overlaps
it by more than T, measured as IoBB (area of the intersection over the area of the *generated* box)
on Wang's grid T(IoBB) = 0.1, 0.25, 0.5, 0.75, 0.9, or as IoU on an IoU grid 0.1-0.7. Generated
boxes that localize no ground-truth box at T are false positives; AFP is their mean number per
(image, label).

The pointing game (Zhang et al., ECCV 2016) asks only whether the heatmap's maximum falls inside a
ground-truth box of that label, within a tolerance of 15 pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]  # x, y, width, height in pixels; pixel (row i, col j) spans [j, j+1) x [i, i+1)

REGION_THRESHOLDS: tuple[int, ...] = (60, 180)
# The overlap thresholds T per measure: Wang et al.'s T(IoBB) grid, and an IoU grid in steps of 0.1.
OVERLAP_GRIDS: dict[str, tuple[float, ...]] = {
    "iobb": (0.1, 0.25, 0.5, 0.75, 0.9),
    "iou": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
}
POINTING_TOLERANCE = 15.0
MEASURES = tuple(OVERLAP_GRIDS)


def scale_to_255(heatmap: np.ndarray) -> np.ndarray:
    """Min-max scale a heatmap to [0, 255] (float); a constant map becomes all zeros."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    span = heatmap.max() - heatmap.min()
    return (heatmap - heatmap.min()) * (255.0 / span) if span > 0 else np.zeros_like(heatmap)


def boxes_from_heatmap(heatmap255: np.ndarray, threshold: float) -> list[Box]:
    """One box around each 8-connected region of pixels ``>= threshold``, in reading order of region labels."""
    regions, _ = ndimage.label(np.asarray(heatmap255) >= threshold, structure=np.ones((3, 3), dtype=bool))
    return [
        (float(cols.start), float(rows.start), float(cols.stop - cols.start), float(rows.stop - rows.start))
        for rows, cols in ndimage.find_objects(regions)
    ]


def intersection_area(a: Box, b: Box) -> float:
    """Area shared by two boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(width, 0.0) * max(height, 0.0)


def iobb(truth: Box, generated: Box) -> float:
    """Intersection over the generated box's area (Wang et al. 2017)."""
    area = generated[2] * generated[3]
    return intersection_area(truth, generated) / area if area > 0 else 0.0


def iou(truth: Box, generated: Box) -> float:
    """Intersection over union."""
    inter = intersection_area(truth, generated)
    union = truth[2] * truth[3] + generated[2] * generated[3] - inter
    return inter / union if union > 0 else 0.0


OVERLAP = {"iobb": iobb, "iou": iou}


@dataclass(frozen=True)
class CaseResult:
    """One (image, label): which ground-truth boxes were localized, and the false-positive count, per T."""

    localized: np.ndarray  # (n_truth_boxes, n_thresholds) bool
    false_positives: np.ndarray  # (n_thresholds,) int


def localize(
    heatmap: np.ndarray,
    truth: Sequence[Box],
    region_threshold: float,
    overlap_thresholds: Sequence[float],
    measure: str,
) -> CaseResult:
    """Apply the protocol to one heatmap (at image resolution) and the ground-truth boxes of its label."""
    generated = boxes_from_heatmap(scale_to_255(heatmap), region_threshold)
    overlaps = np.array([[OVERLAP[measure](t, g) for g in generated] for t in truth]).reshape(len(truth), -1)
    hits = overlaps[:, :, None] > np.asarray(overlap_thresholds)[None, None, :]  # (truth, generated, T)
    return CaseResult(hits.any(axis=1), (~hits.any(axis=0)).sum(axis=0))


def pointing_game_hit(heatmap: np.ndarray, truth: Sequence[Box], tolerance: float = POINTING_TOLERANCE) -> bool:
    """True when the centre of the heatmap's maximal pixel lies within ``tolerance`` pixels of a truth box."""
    row, col = np.unravel_index(int(np.argmax(heatmap)), np.shape(heatmap))
    x, y = col + 0.5, row + 0.5
    for bx, by, bw, bh in truth:
        dx = max(bx - x, 0.0, x - (bx + bw))
        dy = max(by - y, 0.0, y - (by + bh))
        if np.hypot(dx, dy) <= tolerance:
            return True
    return False


@dataclass(frozen=True)
class LocalizationCase:
    """The heatmap of ``label`` on ``image`` at the image's resolution, and that label's truth boxes there."""

    image: str
    label: str
    heatmap: np.ndarray
    boxes: tuple[Box, ...]


@dataclass
class _Tally:
    """Running counts for one label (or all labels pooled)."""

    n_cases: int = 0
    n_boxes: int = 0
    pointing_hits: int = 0
    localized: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)
    false_positives: dict[tuple[str, float], np.ndarray] = field(default_factory=dict)

    def add(self, case: LocalizationCase, results: dict[tuple[str, float], CaseResult], hit: bool) -> None:
        self.n_cases += 1
        self.n_boxes += len(case.boxes)
        self.pointing_hits += hit
        for key, result in results.items():
            self.localized[key] = self.localized.get(key, 0) + result.localized.sum(axis=0)
            self.false_positives[key] = self.false_positives.get(key, 0) + result.false_positives

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "n_images": self.n_cases,
            "n_boxes": self.n_boxes,
            "pointing_game": self.pointing_hits / self.n_cases if self.n_cases else None,
        }
        for measure in MEASURES:
            keys = sorted(k for k in self.localized if k[0] == measure)
            out[measure] = {
                f"{threshold:g}": {
                    "accuracy": (self.localized[(measure, threshold)] / self.n_boxes).tolist(),
                    "afp": (self.false_positives[(measure, threshold)] / self.n_cases).tolist(),
                }
                for _, threshold in keys
            }
        return out


def evaluate_localization(
    cases: Iterable[LocalizationCase],
    region_thresholds: Sequence[float] = REGION_THRESHOLDS,
    overlap_grids: dict[str, Sequence[float]] = OVERLAP_GRIDS,
    tolerance: float = POINTING_TOLERANCE,
) -> dict[str, object]:
    """Accuracy and AFP per label, region threshold and T (on each measure's grid), plus the pointing game.

    ``cases`` may be a generator: each full-resolution heatmap is used once and dropped, so the
    984 NIH boxes never need their 1024 x 1024 maps in memory at the same time.

    Returns a JSON-ready dict: ``protocol`` (the settings), ``per_label`` and ``all`` (pooled over
    boxes), each with ``n_images``, ``n_boxes``, ``pointing_game`` and, for ``iobb`` and ``iou``,
    ``{region_threshold: {"accuracy": [per T], "afp": [per T]}}`` over ``protocol["overlap_thresholds"][measure]``.
    """
    tallies: dict[str, _Tally] = {}
    pooled = _Tally()
    for case in cases:
        results = {
            (measure, threshold): localize(case.heatmap, case.boxes, threshold, overlap_grids[measure], measure)
            for measure in MEASURES
            for threshold in region_thresholds
        }
        hit = pointing_game_hit(case.heatmap, case.boxes, tolerance)
        tallies.setdefault(case.label, _Tally()).add(case, results, hit)
        pooled.add(case, results, hit)
    return {
        "protocol": {
            "reference": "Wang et al., ChestX-ray8, CVPR 2017 (IoBB); Zhang et al., ECCV 2016 (pointing game)",
            "heatmap": "signed class activation map sum_c w_c A_c of the box's label (Wang et al.), upsampled to "
            "the image, min-max scaled to [0, 255]",
            "region_thresholds": [float(t) for t in region_thresholds],
            "overlap_thresholds": {measure: [float(t) for t in overlap_grids[measure]] for measure in MEASURES},
            "pointing_tolerance_px": float(tolerance),
        },
        "per_label": {label: tally.summary() for label, tally in sorted(tallies.items())},
        "all": pooled.summary(),
    }
