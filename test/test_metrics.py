"""Metric tests with hand-computed values (DAVIS definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from motionseg_ros.evaluation import metrics as M


def square(h=100, w=100, x=20, y=20, size=10, value=1):
    img = np.zeros((h, w), np.uint8)
    img[y:y + size, x:x + size] = value
    return img


def test_empty_masks_score_one():
    z = np.zeros((50, 60), bool)
    assert M.jaccard(z, z) == 1.0
    assert M.f_measure(z, z) == 1.0


def test_empty_prediction_against_object_scores_zero():
    gt = square().astype(bool)
    pred = np.zeros_like(gt)
    assert M.jaccard(pred, gt) == 0.0
    assert M.f_measure(pred, gt) == 0.0
    assert M.j_and_f(pred, gt) == (0.0, 0.0, 0.0)


def test_full_masks():
    full = np.ones((40, 50), bool)
    assert M.jaccard(full, full) == 1.0
    assert M.f_measure(full, full) == 1.0
    half = full.copy()
    half[:, 25:] = False
    assert M.jaccard(half, full) == pytest.approx(0.5)


def test_one_pixel_shift():
    gt = square().astype(bool)
    pred = np.roll(gt, 1, axis=1)
    # |A ∩ B| = 9 columns x 10 rows, |A ∪ B| = 11 x 10
    assert M.jaccard(pred, gt) == pytest.approx(90 / 110)
    # tolerance = ceil(0.008 * hypot(100, 100)) = 2 px >= the shift: every boundary matches
    assert M.boundary_tolerance_px(gt.shape) == 2
    assert M.f_measure(pred, gt) == pytest.approx(1.0)


def test_far_shift_has_no_boundary_match():
    gt = square(x=10).astype(bool)
    pred = square(x=60).astype(bool)
    assert M.jaccard(pred, gt) == 0.0
    assert M.f_measure(pred, gt) == 0.0


def test_void_pixels_are_ignored():
    gt = square().astype(bool)
    pred = gt.copy()
    pred[0:5, 0:5] = True          # false positive inside the void region
    void = np.zeros_like(gt)
    void[0:5, 0:5] = True
    assert M.jaccard(pred, gt) < 1.0
    assert M.jaccard(pred, gt, void) == 1.0


def test_mos_merges_objects():
    gt = square(x=10) + square(x=60, value=2)
    pred = square(x=10, value=7) + square(x=60, value=3)   # any labels: merged
    j, f = M.mos_frame(pred, gt)
    assert (j, f) == (1.0, 1.0)


def test_objects_swapped_between_ids():
    gt = square(x=10, value=1) + square(x=60, value=2)
    pred = square(x=10, value=2) + square(x=60, value=1)
    # naive id-to-id comparison would give 0 for both objects; matching recovers the swap
    assert M.jaccard(pred == 1, gt == 1) == 0.0
    res = M.match_objects([pred, pred], [gt, gt])
    assert res['objects']['1']['matched_prediction'] == 2
    assert res['objects']['2']['matched_prediction'] == 1
    assert res['J'] == 1.0 and res['F'] == 1.0 and res['JF'] == 1.0


def test_unmatched_gt_object_scores_zero():
    gt = square(x=10, value=1) + square(x=60, value=2)
    pred = square(x=10, value=5)   # only object 1 found
    res = M.match_objects([pred], [gt])
    assert res['objects']['1']['J'] == 1.0
    assert res['objects']['2']['matched_prediction'] is None
    assert res['objects']['2']['J'] == 0.0 and res['objects']['2']['F'] == 0.0
    assert res['J'] == pytest.approx(0.5)
    assert res['num_gt_objects'] == 2 and res['num_pred_objects'] == 1


def test_extra_predictions_do_not_cost_per_object_but_cost_mos():
    gt = square(x=10, value=1)
    pred = square(x=10, value=1) + square(x=60, value=2)
    res = M.match_objects([pred], [gt])
    assert res['J'] == 1.0
    j, _ = M.mos_frame(pred, gt)
    assert j == pytest.approx(0.5)   # 100 / 200 pixels


def test_hungarian_beats_greedy():
    # GT objects A (x 0..9) and B (x 10..19), rows 0..9 of a 10x40 image.
    # pred 1 covers A and half of B (x 0..14): J(A)=10/15, J(B)=5/20
    # pred 2 covers exactly A: J(A)=1, J(B)=0 -> optimal: pred2->A, pred1->B.
    gt = np.zeros((10, 40), np.uint8)
    gt[:, 0:10] = 1
    gt[:, 10:20] = 2
    p1 = np.zeros_like(gt)
    p1[:, 0:15] = 1
    p2 = np.zeros_like(gt)
    p2[:, 0:10] = 2
    res = M.match_objects([p1, p2], [gt, gt])   # pred 1 in frame 1, pred 2 in frame 2
    # frame-averaged J: (gt1, pred1) = (10/15 + 0) / 2, (gt1, pred2) = (0 + 1) / 2,
    # (gt2, pred1) = (5/20 + 0) / 2, (gt2, pred2) = (0 + 0) / 2; F adds 1/2 to (gt1, pred2)
    assert res['objects']['1']['matched_prediction'] == 2
    assert res['objects']['2']['matched_prediction'] == 1
    assert res['objects']['2']['J'] == pytest.approx((5 / 20 + 0.0) / 2)
    assert res['objects']['1']['J'] == pytest.approx(0.5)


def test_full_image_mask_has_no_boundary():
    # DAVIS seg2bmap does not count the image border as a boundary
    full = np.ones((8, 8), bool)
    assert not M.seg2bmap(full).any()
    assert M.f_measure(np.zeros_like(full), full) == 1.0
    assert M.jaccard(np.zeros_like(full), full) == 0.0


def test_sequence_and_dataset_aggregation():
    ones = square(20, 20, 5, 5, 6)
    zeros = np.zeros_like(ones)
    a = M.score_sequence_mos('a', ['0', '1'], [ones, ones], [ones, ones])
    b = M.score_sequence_mos('b', ['0'], [zeros], [ones])
    assert a.j_mean == 1.0 and b.j_mean == 0.0
    summary = M.aggregate([a, b])
    # mean over sequences (0.5), not over the 3 frames (0.667)
    assert summary['J'] == pytest.approx(0.5)
    assert summary['JF'] == pytest.approx(0.5)
    assert summary['num_frames'] == 3
    back = M.SequenceScore.from_dict(a.to_dict())
    assert back.j == a.j and back.name == 'a'


def test_recall_and_decay():
    assert M.j_recall([0.9, 0.4, 0.6, 0.5]) == 0.5
    assert M.decay([1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0]) == pytest.approx(1.0)
    assert math.isnan(M.j_recall([]))


def test_runtime_stats():
    rt = M.runtime_stats([10, 20, 30, 40], frames_sent=5, wall_s=2.0)
    assert rt['dropped'] == 1 and rt['drop_rate'] == pytest.approx(0.2)
    assert rt['latency_p50_ms'] == pytest.approx(25.0)
    assert rt['latency_p95_ms'] == pytest.approx(38.5)
    assert rt['fps'] == pytest.approx(2.0)
    assert M.runtime_stats([100, 100])['fps'] == pytest.approx(10.0)
    with pytest.raises(ValueError):
        M.runtime_stats([1, 2, 3], frames_sent=2)


def test_size_mismatch_is_an_error():
    with pytest.raises(ValueError):
        M.jaccard(np.zeros((4, 4)), np.zeros((4, 5)))
