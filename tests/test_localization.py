"""The Wang et al. (2017) IoBB protocol and the pointing game on hand-made heatmaps and boxes."""

from __future__ import annotations

import numpy as np
import pytest

from train.evaluation.localization import (
    OVERLAP_GRIDS,
    LocalizationCase,
    boxes_from_heatmap,
    evaluate_localization,
    intersection_area,
    iobb,
    iou,
    localize,
    pointing_game_hit,
    scale_to_255,
)


def blob_map(shape: tuple[int, int], blobs: list[tuple[int, int, int, int, float]]) -> np.ndarray:
    """A heatmap that is 0 except for rectangles (x, y, w, h) filled with the given value."""
    heatmap = np.zeros(shape)
    for x, y, w, h, value in blobs:
        heatmap[y : y + h, x : x + w] = value
    return heatmap


def test_scale_to_255_is_min_max() -> None:
    np.testing.assert_allclose(scale_to_255(np.array([[2.0, 4.0], [3.0, 6.0]])), [[0, 127.5], [63.75, 255]])
    assert (scale_to_255(np.full((3, 3), 0.7)) == 0).all()


def test_boxes_cover_each_connected_region_with_8_connectivity() -> None:
    heatmap = blob_map((20, 30), [(2, 3, 4, 5, 255), (20, 10, 6, 2, 200)])
    heatmap[8, 6] = 255  # touches the first blob's corner (7, 5) diagonally: same region
    assert boxes_from_heatmap(heatmap, 180) == [(2.0, 3.0, 5.0, 6.0), (20.0, 10.0, 6.0, 2.0)]
    assert boxes_from_heatmap(heatmap, 201) == [(2.0, 3.0, 5.0, 6.0)]  # the 200-valued blob drops out
    assert boxes_from_heatmap(heatmap, 200) == [(2.0, 3.0, 5.0, 6.0), (20.0, 10.0, 6.0, 2.0)]  # >= keeps it


def test_overlap_measures_hand_computed() -> None:
    truth = (0.0, 0.0, 10.0, 10.0)
    shifted = (5.0, 5.0, 10.0, 10.0)  # shares a 5 x 5 corner
    assert intersection_area(truth, shifted) == 25.0
    assert iobb(truth, shifted) == pytest.approx(25 / 100)
    assert iou(truth, shifted) == pytest.approx(25 / 175)
    inside = (2.0, 2.0, 2.0, 3.0)  # a small generated box inside the truth: IoBB 1, IoU 6/100
    assert iobb(truth, inside) == 1.0 and iou(truth, inside) == pytest.approx(0.06)
    assert iobb(truth, (20.0, 20.0, 5.0, 5.0)) == 0.0


def test_localize_counts_hits_and_false_positives_per_threshold() -> None:
    truth = [(10.0, 10.0, 20.0, 20.0)]
    # Generated box A: (15, 15, 20, 10) overlaps truth on 15 x 10 = 150 of its 200 -> IoBB 0.75, IoU 150/450.
    # Generated box B: far away -> a false positive at every T.
    heatmap = blob_map((64, 64), [(15, 15, 20, 10, 1.0), (50, 50, 5, 5, 0.9)])
    t = [0.1, 0.3, 0.5, 0.7, 0.8]
    by_iobb = localize(heatmap, truth, 60, t, "iobb")
    assert by_iobb.localized.tolist() == [[True, True, True, True, False]]
    assert by_iobb.false_positives.tolist() == [1, 1, 1, 1, 2]
    by_iou = localize(heatmap, truth, 60, t, "iou")  # IoU = 1/3
    assert by_iou.localized.tolist() == [[True, True, False, False, False]]
    # At region threshold 240 only box A survives (B is 0.9 -> 229.5).
    assert localize(heatmap, truth, 240, t, "iobb").false_positives.tolist() == [0, 0, 0, 0, 1]


def test_localize_with_two_truth_boxes_and_a_flat_map() -> None:
    truth = [(0.0, 0.0, 8.0, 8.0), (30.0, 30.0, 8.0, 8.0)]
    heatmap = blob_map((40, 40), [(1, 1, 4, 4, 1.0)])
    result = localize(heatmap, truth, 60, [0.5], "iobb")
    assert result.localized.tolist() == [[True], [False]]
    flat = localize(np.zeros((40, 40)), truth, 60, [0.5], "iobb")  # constant map: no region at all
    assert flat.localized.tolist() == [[False], [False]] and flat.false_positives.tolist() == [0]


def test_pointing_game_with_tolerance() -> None:
    truth = [(10.0, 10.0, 5.0, 5.0)]
    assert pointing_game_hit(blob_map((50, 50), [(12, 12, 1, 1, 1.0)]), truth)
    # Peak pixel (row 10, col 30) has centre (30.5, 10.5): 15.5 px right of the box edge at x = 15.
    far = blob_map((50, 50), [(30, 10, 1, 1, 1.0)])
    assert not pointing_game_hit(far, truth)
    assert pointing_game_hit(far, truth, tolerance=16)
    assert not pointing_game_hit(far, truth, tolerance=0)


def test_evaluate_localization_aggregates_per_label_and_pooled() -> None:
    box = (10.0, 10.0, 20.0, 20.0)
    good = blob_map((64, 64), [(12, 12, 10, 10, 1.0)])  # inside the box: IoBB 1, IoU 0.25
    bad = blob_map((64, 64), [(50, 50, 10, 10, 1.0)])  # elsewhere (> 15 px away): a miss and a false positive
    cases = [
        LocalizationCase("a.png", "Mass", good, (box,)),
        LocalizationCase("b.png", "Mass", bad, (box,)),
        LocalizationCase("c.png", "Nodule", good, (box, (45.0, 45.0, 5.0, 5.0))),  # second box missed
    ]
    result = evaluate_localization(
        iter(cases), region_thresholds=(60,), overlap_grids={"iobb": (0.1, 0.5), "iou": (0.1, 0.5)}
    )
    mass, nodule, pooled = result["per_label"]["Mass"], result["per_label"]["Nodule"], result["all"]
    assert (mass["n_images"], mass["n_boxes"], nodule["n_boxes"], pooled["n_boxes"]) == (2, 2, 2, 4)
    assert mass["iobb"]["60"]["accuracy"] == [0.5, 0.5]
    assert mass["iobb"]["60"]["afp"] == [0.5, 0.5]
    assert mass["iou"]["60"]["accuracy"] == [0.5, 0.0]  # IoU 0.25 passes 0.1, not 0.5
    assert nodule["iobb"]["60"]["accuracy"] == [0.5, 0.5]
    assert pooled["iobb"]["60"]["accuracy"] == [0.5, 0.5]
    assert pooled["iobb"]["60"]["afp"] == pytest.approx([1 / 3, 1 / 3])
    # Pointing game: a hit, a miss, and a hit (the peak lies in the first Nodule box).
    assert mass["pointing_game"] == 0.5 and nodule["pointing_game"] == 1.0
    assert pooled["pointing_game"] == pytest.approx(2 / 3)
    assert result["protocol"]["overlap_thresholds"] == {"iobb": [0.1, 0.5], "iou": [0.1, 0.5]}


def test_wangs_iobb_grid_on_a_signed_map_known_answer() -> None:
    """Issue 10 item 4: a hand-made signed map, three truth boxes, exact accuracies on T(IoBB) = 0.1 ... 0.9."""
    assert OVERLAP_GRIDS["iobb"] == (0.1, 0.25, 0.5, 0.75, 0.9)
    # Signed map: background -3, a finding blob +3 at (20, 20, 20, 10), a weakly negative patch -0.6.
    # Min-max to [0, 255]: background 0, blob 255, patch (2.4 / 6) * 255 = 102.
    signed = blob_map((100, 100), [(0, 0, 100, 100, -3.0), (20, 20, 20, 10, 3.0), (70, 70, 10, 10, -0.6)])
    truths = {
        "exact": (20.0, 20.0, 20.0, 10.0),  # IoBB 200/200 = 1.0: localized at every T
        "shorter": (20.0, 20.0, 20.0, 8.0),  # IoBB 160/200 = 0.8: not at 0.9
        "half": (30.0, 20.0, 30.0, 10.0),  # IoBB 100/200 = 0.5: only at 0.1 and 0.25 (overlap must exceed T)
    }
    cases = [LocalizationCase(name, "Mass", signed, (box,)) for name, box in truths.items()]
    result = evaluate_localization(cases)
    assert result["protocol"]["overlap_thresholds"]["iobb"] == [0.1, 0.25, 0.5, 0.75, 0.9]
    assert result["all"]["iobb"]["180"]["accuracy"] == pytest.approx([1, 1, 2 / 3, 2 / 3, 1 / 3])
    assert result["all"]["iobb"]["180"]["afp"] == pytest.approx([0, 0, 1 / 3, 1 / 3, 2 / 3])
    # At region threshold 60 the weakly negative patch (102) is a region of the signed map: one more false
    # positive per image. The ReLU'd map (Grad-CAM) would have flattened it to 0 and drawn no box there.
    assert result["all"]["iobb"]["60"]["afp"] == pytest.approx([1, 1, 4 / 3, 4 / 3, 5 / 3])
    relu = evaluate_localization([LocalizationCase(c.image, c.label, np.maximum(c.heatmap, 0), c.boxes) for c in cases])
    assert relu["all"]["iobb"]["60"]["afp"] == pytest.approx([0, 0, 1 / 3, 1 / 3, 2 / 3])
    assert len(result["all"]["iou"]["180"]["accuracy"]) == len(OVERLAP_GRIDS["iou"]) == 7
