"""DAVIS region (J) and boundary (F) measures, written from the benchmark's definition.

J is the intersection over union of two binary masks (1 when both are empty). F is the
boundary F-measure: boundaries are one-pixel contours (``seg2bmap``) matched within a
tolerance of ``ceil(0.008 * image diagonal)`` pixels (a disk dilation).
"""

from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

BOUNDARY_TOLERANCE = 0.008


def jaccard(pred: np.ndarray, gt: np.ndarray, void: Optional[np.ndarray] = None) -> float:
    """Region similarity J: |pred ∩ gt| / |pred ∪ gt|; 1 when both are empty."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in size')
    if void is not None:
        keep = ~np.asarray(void, bool)
        pred = pred & keep
        gt = gt & keep
    union = np.count_nonzero(pred | gt)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(pred & gt)) / float(union)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a binary mask (the DAVIS toolkit's definition)."""
    seg = np.asarray(seg, bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(radius: int) -> np.ndarray:
    """Binary disk structuring element of the given radius (x² + y² <= r²)."""
    r = int(radius)
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def boundary_tolerance_px(shape: tuple, tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """Matching distance in pixels for an image of ``shape``."""
    if tolerance >= 1:
        return int(tolerance)
    return int(math.ceil(tolerance * math.hypot(shape[0], shape[1])))


def f_measure(pred: np.ndarray, gt: np.ndarray, tolerance: float = BOUNDARY_TOLERANCE
              ) -> float:
    """Boundary F-measure of ``pred`` against ``gt``."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in size')
    radius = boundary_tolerance_px(pred.shape, tolerance)
    pred_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    n_pred = int(np.count_nonzero(pred_b))
    n_gt = int(np.count_nonzero(gt_b))
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    kernel = _disk(radius)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel) > 0
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel) > 0
    precision = np.count_nonzero(pred_b & gt_dil) / n_pred
    recall = np.count_nonzero(gt_b & pred_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def j_and_f(pred: np.ndarray, gt: np.ndarray) -> tuple:
    """(J, F, (J+F)/2) of one frame."""
    j = jaccard(pred, gt)
    f = f_measure(pred, gt)
    return j, f, (j + f) / 2.0
