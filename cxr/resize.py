"""Resizing (H, W) float maps as OpenCV's ``cv2.resize`` does, without OpenCV (~160 MiB the Space need not install).

:func:`bilinear` is ``INTER_LINEAR`` (pixel centres aligned, no antialiasing: torch's bilinear without
``align_corners``); :func:`shrink_by_area` is ``INTER_AREA`` when shrinking: each output pixel is the mean of the
input it covers, partly covered pixels weighted by the part. Pillow's BOX filter and torch's ``area`` mode agree
with it only when the ratio is a whole number: on others they give whole input pixels to one output pixel
(up to 55 grey levels off on a radiograph). ``tests/test_resize.py`` checks both against OpenCV.
"""

from __future__ import annotations

import numpy as np


def bilinear(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """``values`` (H, W) resized to (height, width), float32, as ``cv2.resize(..., INTER_LINEAR)``."""
    return _resample(values, _linear_taps(values.shape[0], height), _linear_taps(values.shape[1], width))


def shrink_by_area(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """``values`` (H, W) shrunk to (height, width) <= (H, W), float32, as ``cv2.resize(..., INTER_AREA)``."""
    if height > values.shape[0] or width > values.shape[1]:
        raise ValueError(f"shrink_by_area cannot enlarge {values.shape} to {(height, width)}.")
    return _resample(values, _area_taps(values.shape[0], height), _area_taps(values.shape[1], width))


def _linear_taps(size: int, new_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of OpenCV's ``INTER_LINEAR``: the two input pixels about ``(i + 0.5) * scale - 0.5``, the position
    rounded to float32 as OpenCV does; past either edge, the edge pixel alone."""
    scale = 1.0 / (new_size / size)
    position = ((np.arange(new_size) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(position)
    fraction = np.where((left < 0) | (left >= size - 1), np.float32(0), position - left)
    index = np.clip(left, 0, size - 1).astype(np.intp)[:, None] + [0, 1]
    return np.minimum(index, size - 1), np.stack([1 - fraction, fraction], axis=1).astype(np.float32)


def _area_taps(size: int, new_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(new_size, k) input indices and float32 weights: output pixel i is ``sum_t weight[i, t] * input[index[i, t]]``.

    The weights are OpenCV's (``computeResizeAreaTab``): the cell of output pixel i spans ``[i * scale, (i + 1) *
    scale)`` of the input; an input pixel cut by the cell's edge is weighted by the part inside it, unless that part
    is under 1e-3 of a pixel.
    """
    scale = 1.0 / (new_size / size)  # as OpenCV computes it, so cells end on the same side of a whole number
    start = np.arange(new_size) * scale
    end = start + scale
    cell = np.minimum(scale, size - start)
    last = np.minimum(np.floor(end), size - 1)  # the pixel the cell's end cuts (or the last one)
    first = np.minimum(np.ceil(start), last)  # the first pixel wholly inside the cell
    left, right = first - start, np.minimum(np.minimum(end - last, 1.0), cell)  # the cut pixels' parts in the cell
    k = int(np.ceil(scale)) + 2
    index = (first - 1)[:, None] + np.arange(k)  # from the pixel before the first, past the last
    weight = np.where(index < first[:, None], np.where(left > 1e-3, left, 0.0)[:, None], 1.0)
    weight = np.where(index == last[:, None], np.where(end - last > 1e-3, right, 0.0)[:, None], weight)
    weight = np.where(index > last[:, None], 0.0, weight) / cell[:, None]
    used = weight.any(axis=0)  # e.g. a whole-number scale cuts no pixel: its first and last taps are all zero
    return np.clip(index[:, used], 0, size - 1).astype(np.intp), weight[:, used].astype(np.float32)


def _resample(values: np.ndarray, rows: tuple[np.ndarray, np.ndarray], columns: tuple[np.ndarray, np.ndarray]):
    """``values`` resampled along each row by the ``columns`` taps, then down the columns by the ``rows`` taps (the
    order OpenCV sums in)."""
    return _along(_along(np.asarray(values, dtype=np.float32), *columns, axis=1), *rows, axis=0)


def _along(values: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """``sum_t weight[:, t] * values[index[:, t]]`` along ``axis``: a resampling of that axis by its taps."""
    shape = (-1, 1) if axis == 0 else (1, -1)
    out = np.take(values, index[:, 0], axis=axis)
    out *= weight[:, 0].reshape(shape)
    for t in range(1, index.shape[1]):
        taken = np.take(values, index[:, t], axis=axis)
        taken *= weight[:, t].reshape(shape)
        out += taken
    return out
