"""Geometric classifier on rendered scenes with known camera motion and a moving patch."""

import cv2
import numpy as np
import pytest

from motionseg_ros.classifiers.geometric import GeometricClassifier, sampson_distance
from motionseg_ros.stages import StageContext
from motionseg_ros.trackers.klt import KLTTracker
from motionseg_ros.types import Frame

H, W = 240, 320


def texture(h, w, seed):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for scale, amp in ((32, 1.0), (8, 0.6), (2, 0.3)):
        small = rng.random((max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
        img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return ((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)


def offset(h, dx, dy):
    """Compose a homography with a translation of the source (big texture -> view)."""
    return h @ np.array([[1, 0, -dx], [0, 1, -dy], [0, 0, 1.0]])


def planar_motion(t):
    """Pan, roll and a little perspective: a general plane homography."""
    a = np.deg2rad(0.6 * t)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, -3.0 * t], [s, c, -1.2 * t], [2e-5 * t, 1e-5 * t, 1.0]])


def rotation_motion(t):
    """Pure camera rotation (pan + tilt + roll): H = K R K^-1."""
    k = np.array([[300.0, 0, W / 2], [0, 300.0, H / 2], [0, 0, 1]])
    rvec = np.array([0.004 * t, -0.008 * t, 0.003 * t])
    r, _ = cv2.Rodrigues(rvec)
    return k @ r @ np.linalg.inv(k)


def run_scene(motion, frames=10):
    bg = texture(H + 200, W + 200, seed=3)
    patch = texture(56, 56, seed=9)
    tracker = KLTTracker(window=16, max_tracks=400, scale=1.0)
    clf = GeometricClassifier()
    ctx = StageContext()
    for t in range(frames):
        hm = offset(motion(t), 100, 100)
        img = cv2.warpPerspective(bg, hm, (W, H), flags=cv2.INTER_LINEAR)
        px, py = 60 + 6.0 * t, 150 - 4.0 * t   # the patch's own motion in the image
        img[int(py):int(py) + 56, int(px):int(px) + 56] = patch
        frame = Frame(img, t * 33_000_000, index=t)
        ctx.new_frame(frame)
        window = tracker.update(frame, ctx)
        prob = clf.classify(window, ctx)
    dyn = clf.decide(prob)
    xy = window.xy[:, -1]
    vis = window.visible[:, -1]
    x0, y0 = int(px), int(py)
    inside = (xy[:, 0] > x0 + 4) & (xy[:, 0] < x0 + 52) & (xy[:, 1] > y0 + 4) & \
        (xy[:, 1] < y0 + 52)
    outside = (xy[:, 0] < x0 - 8) | (xy[:, 0] > x0 + 64) | (xy[:, 1] < y0 - 8) | \
        (xy[:, 1] > y0 + 64)
    pos = vis & inside
    neg = vis & outside
    tp = int(np.sum(dyn & pos))
    fp = int(np.sum(dyn & neg))
    recall = tp / max(pos.sum(), 1)
    precision = tp / max(tp + fp, 1)
    return precision, recall, int(pos.sum()), ctx


@pytest.mark.parametrize('motion', [planar_motion, rotation_motion])
def test_moving_patch_precision_recall(motion):
    precision, recall, n_pos, ctx = run_scene(motion)
    assert n_pos >= 10
    assert precision >= 0.9, precision
    assert recall >= 0.9, recall
    assert ctx.background_homography is not None


def test_static_scene_has_no_dynamic_tracks():
    bg = texture(H + 200, W + 200, seed=4)
    tracker = KLTTracker(window=16, max_tracks=300, scale=1.0)
    clf = GeometricClassifier()
    ctx = StageContext()
    for t in range(8):
        img = cv2.warpPerspective(bg, offset(planar_motion(t), 100, 100), (W, H))
        frame = Frame(img, t)
        ctx.new_frame(frame)
        prob = clf.classify(tracker.update(frame, ctx), ctx)
    assert np.mean(clf.decide(prob)) < 0.02


def test_threshold_is_adjustable_and_sampson_is_pixels():
    clf = GeometricClassifier()
    clf.set_params({'threshold': 0.8})
    assert clf.threshold == 0.8
    with pytest.raises(ValueError):
        clf.set_params({'nope': 1})
    # F of a pure x-translation: epipolar lines are rows; a 2 px vertical offset -> 2 px
    f = np.array([[0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    src = np.array([[10.0, 20.0], [50.0, 60.0]])
    dst = src + np.array([[5.0, 2.0], [3.0, 0.0]])
    d = sampson_distance(f, src, dst)
    assert np.allclose(d, [np.sqrt(2.0), 0.0], atol=1e-6)


def twin_contexts(bg, patch, tracker, frames):
    """Yield (window, ctx_a, ctx_b) of a planar scene with a moving patch, two contexts fed alike.

    The contexts outlive the loop (they are yielded, not recreated), so a test can read them
    after it.
    """
    ctx_a, ctx_b = StageContext(), StageContext()
    for t in range(frames):
        img = cv2.warpPerspective(bg, offset(planar_motion(t), 100, 100), (W, H))
        img[100:140, 40 + 7 * t:80 + 7 * t] = patch
        frame = Frame(img, t * 33_000_000, index=t)
        ctx_a.new_frame(frame)
        ctx_b.new_frame(frame)
        yield tracker.update(frame, ctx_a), ctx_a, ctx_b


def test_parallel_baselines_equal_serial():
    """Fitting the baselines on two threads changes nothing but the wall time."""
    bg = texture(H + 200, W + 200, seed=5)
    patch = texture(40, 40, seed=6)
    tracker = KLTTracker(window=16, max_tracks=300, scale=1.0)
    serial, parallel = GeometricClassifier(threads=1), GeometricClassifier(threads=2)
    for window, ctx_s, ctx_p in twin_contexts(bg, patch, tracker, 12):
        p_s, p_p = serial.classify(window, ctx_s), parallel.classify(window, ctx_p)
        np.testing.assert_array_equal(p_s, p_p)
        assert serial.last_models == parallel.last_models
    assert np.array_equal(ctx_s.background_homography, ctx_p.background_homography)
    assert parallel.decide(p_p).any()
    parallel.close()


def test_epipolar_scores_leave_the_probabilities_alone():
    """The fundamental-matrix scores kept for a learned model are extra output only."""
    bg = texture(H + 200, W + 200, seed=7)
    patch = texture(40, 40, seed=8)
    tracker = KLTTracker(window=16, max_tracks=300, scale=1.0)
    plain, extra = GeometricClassifier(threads=1), GeometricClassifier(
        threads=1, epipolar_scores=True)
    for window, ctx_a, ctx_b in twin_contexts(bg, patch, tracker, 10):
        np.testing.assert_array_equal(plain.classify(window, ctx_a), extra.classify(window, ctx_b))
    assert not plain.last_epipolar_scores
    assert set(extra.last_epipolar_scores) == set(extra.last_scores)   # every fitted baseline
    k = max(extra.last_scores)
    idx, score = extra.last_epipolar_scores[k]
    assert np.array_equal(idx, extra.last_scores[k][0]) and np.all(np.isfinite(score))
    from motionseg_ros.classifiers.geometric import evidence_channels
    ev = evidence_channels(window.num_tracks, window.num_frames, extra.last_scores,
                           extra.last_epipolar_scores)
    assert ev.shape == (window.num_tracks, window.num_frames, 3)
    np.testing.assert_allclose(ev[idx, -1 - k, 2], np.log1p(np.maximum(score, 0)), rtol=1e-6)
