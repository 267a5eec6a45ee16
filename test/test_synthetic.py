"""Synthetic generator: determinism, geometry, labels, TrackWindow layout."""

import numpy as np
import pytest

from motionseg_ros.synthetic import GENERATOR_VERSION, SceneSpec, generate_window, generate_windows
from motionseg_ros.synthetic.geometry import project, rotation, unproject


def test_seeded_and_deterministic():
    a = generate_windows(7, 3)
    b = generate_windows(7, 3)
    c = generate_windows(8, 1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.window.xy, y.window.xy)
        np.testing.assert_array_equal(x.window.visible, y.window.visible)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.meta == y.meta
    assert a[0].window.xy.shape != c[0].window.xy.shape or \
        not np.array_equal(a[0].window.xy, c[0].window.xy)
    assert a[0].meta['generator_version'] == GENERATOR_VERSION


def test_projection_of_known_points():
    k = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    # on the optical axis of an identity camera -> principal point
    px, z = project(np.array([[0.0, 0.0, 5.0], [1.0, -0.5, 2.0]]), np.eye(3), np.zeros(3), k)
    np.testing.assert_allclose(px[0], [320, 240])
    np.testing.assert_allclose(px[1], [320 + 250, 240 - 125])
    np.testing.assert_allclose(z, [5.0, 2.0])
    # a rotated, translated camera: unproject then project returns the pixels and depths
    rot = rotation(0.2, -0.1, 0.05)
    centre = np.array([1.0, 0.3, -2.0])
    pix = np.array([[10.0, 20.0], [320.0, 240.0], [600.0, 400.0]])
    depth = np.array([1.0, 7.5, 30.0])
    pts = unproject(pix, depth, rot, centre, k)
    back, zb = project(pts, rot, centre, k)
    np.testing.assert_allclose(back, pix, atol=1e-9)
    np.testing.assert_allclose(zb, depth, atol=1e-9)


def test_labels_of_a_known_scene():
    # static camera, one rigid moving object, no noise: exactly the object's tracks move
    spec = SceneSpec(num_frames=10, image_size=(240, 320), camera='static', num_moving=1,
                     object_kinds=['rigid'], num_static_objects=2, depth='sensor',
                     num_tracks=400, noise=False)
    found = 0
    for seed in range(6):
        s = generate_window(seed, spec)
        w = s.window
        both = w.visible[:, 1:] & w.visible[:, :-1]
        step = np.linalg.norm(np.diff(w.xy, axis=1), axis=2)
        moved = np.where(both, step, 0).max(axis=1)
        static = s.labels == 0
        # without noise, static points do not move in the image of a static camera
        assert np.all(moved[static] < 1e-3)
        if s.labels.sum() > 0:
            found += 1
            assert np.median(moved[s.labels > 0]) > 0.0
    assert found > 0


def test_no_moving_objects_means_no_positive_labels():
    spec = SceneSpec(camera='forward', num_moving=0)
    for seed in range(3):
        assert generate_window(seed, spec).labels.sum() == 0


def test_object_moving_with_the_camera_is_moving_in_the_world():
    spec = SceneSpec(num_frames=12, camera='sideways', num_moving=1,
                     object_kinds=['with_camera'], num_static_objects=0, noise=False,
                     num_tracks=600)
    s = generate_window(3, spec)
    assert s.labels.sum() > 0
    w = s.window
    moving = s.labels > 0
    both = w.visible[:, 1:] & w.visible[:, :-1]
    step = np.where(both, np.linalg.norm(np.diff(w.xy, axis=1), axis=2), np.nan)
    # nearly still in the image, unlike the background (which shows parallax)
    assert np.nanmedian(step[moving]) < np.nanmedian(step[~moving])


@pytest.mark.parametrize('depth', ['none', 'monocular', 'sensor'])
def test_track_window_layout(depth):
    s = generate_window(11, SceneSpec(depth=depth))
    w = s.window
    n, t = w.num_tracks, w.num_frames
    assert w.xy.shape == (n, t, 2) and w.xy.dtype == np.float32
    assert w.visible.shape == (n, t) and w.visible.dtype == bool
    assert w.confidence.shape == (n, t) and np.all((w.confidence >= 0) & (w.confidence <= 1))
    assert s.labels.shape == (n,) and set(np.unique(s.labels)) <= {0.0, 1.0}
    assert w.visible.any(axis=1).all()
    assert np.all(w.xy[~w.visible] == 0)
    h, wd = w.image_size
    vis_xy = w.xy[w.visible]
    assert np.all((vis_xy >= 0) & (vis_xy < [wd, h]))
    assert len(np.unique(w.ids)) == n and w.stamps_ns.shape == (t,)
    if depth == 'none':
        assert w.depth is None
    else:
        assert w.depth.shape == (n, t)
        assert np.all(np.isnan(w.depth[~w.visible]))
        assert np.nanmin(w.depth) > 0


def test_hard_negatives_keep_labels_and_noisy_tracks_say_so():
    lo_conf, hi_conf, changed = [], [], 0
    for seed in range(12):
        spec = SceneSpec(camera='static', num_moving=2, depth='none')
        plain = generate_window(np.random.default_rng(seed), spec)
        spec.hard_negatives = True
        hard = generate_window(np.random.default_rng(seed), spec)
        assert np.array_equal(plain.labels, hard.labels)
        assert plain.window.xy.shape == hard.window.xy.shape
        assert hard.meta['generator_version'] == GENERATOR_VERSION
        win = hard.window
        static = (hard.labels < 0.5) & (win.visible.sum(axis=1) >= 6)
        # a static camera: a static track's spread over time is its tracking noise
        spread = np.array([win.xy[i, win.visible[i]].std(axis=0).sum() for i in
                           np.flatnonzero(static)])
        conf = np.array([win.confidence[i, win.visible[i]][1:].mean() for i in
                         np.flatnonzero(static)])
        if spread.size < 10:
            continue
        order = np.argsort(spread)
        k = len(order) // 5
        lo_conf.append(conf[order[-k:]].mean())      # the noisiest fifth
        hi_conf.append(conf[order[:k]].mean())       # the steadiest fifth
        vis = plain.window.visible & win.visible
        diff = np.abs(plain.window.xy - win.xy).max(axis=2) * vis
        changed += int(np.count_nonzero(diff.max(axis=1)[hard.labels < 0.5] > 3.0))
    assert np.mean(lo_conf) < np.mean(hi_conf) - 0.05   # noisier tracks: lower confidence
    assert changed > 0       # some static tracks were dragged, made to wave or made noisier
