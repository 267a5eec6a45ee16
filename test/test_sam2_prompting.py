"""Stream-adapted iterative prompting (paper section 10) with hand-made masks and tracks."""

from __future__ import annotations

import numpy as np
import pytest

from motionseg_ros.densifiers.prompting import (PromptPlanner, central_point_index,
                                                dilate_masks, duplicate_pairs,
                                                points_in_masks, three_point_indices)

H, W = 60, 80


def box_mask(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_points_in_masks_rounds_and_rejects_outside():
    masks = np.stack([box_mask(10, 10, 20, 20), box_mask(0, 0, 5, 5)])
    xy = np.array([[10.0, 10.0], [19.4, 19.4], [19.6, 10], [2, 2], [-1, 2], [np.nan, 3],
                   [200, 3]], np.float32)
    inside = points_in_masks(masks, xy)
    assert inside[0].tolist() == [True, True, False, False, False, False, False]
    assert inside[1].tolist() == [False, False, False, True, False, False, False]
    assert not points_in_masks(masks, xy, np.zeros(7, bool)).any()


def test_central_point_is_the_medoid():
    pts = np.array([[0, 0], [10, 0], [11, 0], [12, 0], [100, 0]], np.float32)
    assert central_point_index(pts) == 2
    with pytest.raises(ValueError):
        central_point_index(np.zeros((0, 2)))


def test_three_points_nearest_centroid_and_two_farthest():
    pts = np.array([[50, 50], [49, 50], [51, 51], [0, 0], [100, 100], [60, 40]], np.float32)
    idx = three_point_indices(pts)
    centroid = pts.mean(axis=0)
    assert idx[0] == int(np.argmin(np.linalg.norm(pts - centroid, axis=1)))
    assert set(idx[1:].tolist()) == {3, 4}
    assert three_point_indices(pts[:1]).tolist() == [0]


def test_uncovered_cluster_prompts_new_object_at_expected_point():
    planner = PromptPlanner(min_uncovered=4, dilation=0)
    # object 1 covers the left cluster; the right cluster of 5 dynamic tracks is uncovered
    left = np.array([[12, 12], [14, 12], [12, 14], [14, 14], [13, 13]], np.float32)
    right = np.array([[60, 30], [62, 30], [61, 31], [70, 40], [61, 29]], np.float32)
    static = np.array([[40, 50]], np.float32)
    xy = np.concatenate([left, right, static])
    ids = np.arange(100, 100 + xy.shape[0])
    dynamic = np.array([True] * 10 + [False])
    vis = np.ones(11, bool)
    masks = box_mask(5, 5, 20, 20)[None]
    planner.update(0, ids, xy, vis, dynamic, [1], masks)  # left tracks now owned by object 1
    shifted = xy + np.float32([1, 0])                      # everything moved 1 px right
    plan = planner.plan(1, ids, shifted, vis, dynamic, [1], masks_prev=masks, xy_prev=xy,
                        visible_prev=vis)
    assert len(plan.new) == 1 and not plan.reprompt
    prompt = plan.new[0]
    # the medoid of the uncovered right cluster is (61, 30) -> prompted at its current spot
    expected = central_point_index(right)
    assert np.allclose(prompt.points[0], right[expected] + [1, 0])
    assert sorted(prompt.track_ids.tolist()) == list(range(105, 110))
    assert prompt.labels.tolist() == [1]


def test_too_few_uncovered_or_no_room_prompts_nothing():
    planner = PromptPlanner(min_uncovered=6, max_objects=2)
    xy = np.array([[60, 30], [62, 30], [61, 31], [70, 40], [61, 29]], np.float32)
    ids = np.arange(5)
    on = np.ones(5, bool)
    assert not planner.plan(0, ids, xy, on, on, []).new             # 5 < 6
    planner.min_uncovered = 3
    assert len(planner.plan(0, ids, xy, on, on, []).new) == 1       # first frame: no masks
    assert not planner.plan(0, ids, xy, on, on, [1, 2], masks_prev=np.zeros((2, H, W), bool),
                            xy_prev=xy, visible_prev=on).new          # max_objects reached


def test_low_coverage_triggers_three_point_reprompt():
    planner = PromptPlanner(min_tracks=3, min_coverage=0.7, reprompt_interval=0, dilation=0)
    xy = np.array([[10, 10], [12, 10], [11, 12], [30, 30], [34, 31], [50, 40]], np.float32)
    ids = np.arange(6)
    dyn = np.ones(6, bool)
    vis = np.ones(6, bool)
    big = box_mask(0, 0, 60, 50)[None]
    planner.update(0, ids, xy, vis, dyn, [7], big)                  # object 7 owns all six
    small = box_mask(5, 5, 15, 15)[None]                              # now covers only 3/6
    plan = planner.plan(1, ids, xy, vis, dyn, [7], masks_prev=small, xy_prev=xy,
                        visible_prev=vis)
    assert not plan.new and len(plan.reprompt) == 1
    rp = plan.reprompt[0]
    assert rp.object_id == 7 and rp.points.shape == (3, 2) and rp.labels.tolist() == [1, 1, 1]
    expected = xy[three_point_indices(xy)]
    assert np.allclose(rp.points, expected)
    # good coverage: no re-prompt; and a recent prompt blocks it for reprompt_interval frames
    assert not planner.plan(1, ids, xy, vis, dyn, [7], masks_prev=big, xy_prev=xy,
                            visible_prev=vis).reprompt
    planner.reprompt_interval = 5
    planner.register(7, 1)
    assert not planner.plan(2, ids, xy, vis, dyn, [7], masks_prev=small, xy_prev=xy,
                            visible_prev=vis).reprompt


def test_duplicates_merge_after_consecutive_frames_and_tracks_move_over():
    a = box_mask(10, 10, 30, 30)
    b = box_mask(11, 10, 30, 30)        # IoU 0.95 with a
    c = box_mask(12, 12, 20, 20)        # inside a: containment 1.0
    d = box_mask(50, 40, 70, 55)        # separate
    pairs = duplicate_pairs(np.stack([a, b, c, d]), [1, 2, 3, 4], 0.9, 0.9)
    assert set(pairs) == {(1, 2), (1, 3), (2, 3)}
    assert duplicate_pairs(np.stack([a, d]), [1, 4], 0.9, 0.9) == []

    planner = PromptPlanner(merge_frames=2, min_tracks=0)
    xy = np.array([[15, 15], [25, 25], [60, 45]], np.float32)
    ids = np.arange(3)
    on = np.ones(3, bool)
    masks = np.stack([a, b, d])
    first = planner.update(0, ids, xy, on, on, [1, 2, 4], masks)
    assert first.merges == []                                        # needs 2 frames
    second = planner.update(1, ids, xy, on, on, [1, 2, 4], masks)
    assert second.merges == [(1, 2)]
    planner.forget([2], into=1)
    assert set(planner.owner.values()) <= {1, 4}


def test_objects_without_tracks_are_dropped_after_grace():
    planner = PromptPlanner(min_tracks=2, grace_frames=2)
    xy = np.array([[15, 15], [16, 16]], np.float32)
    ids = np.arange(2)
    on = np.ones(2, bool)
    empty = np.zeros((1, H, W), bool)
    drops = [planner.update(t, ids, xy, on, on, [5], empty).drop for t in range(4)]
    assert drops == [[], [], [5], [5]]
    full = box_mask(0, 0, W, H)[None]
    planner.reset()
    assert planner.update(0, ids, xy, on, on, [5], full).counts == {5: 2}


def test_dilation_and_validation():
    m = box_mask(10, 10, 12, 12)[None]
    assert dilate_masks(m, 2)[0].sum() == 36
    with pytest.raises(ValueError):
        PromptPlanner(min_coverage=1.5)
    with pytest.raises(ValueError):
        PromptPlanner(max_objects=0)
