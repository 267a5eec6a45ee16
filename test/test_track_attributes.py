"""Per-track depth history and feature cache: values follow track ids, memory stays bounded."""

from __future__ import annotations

import numpy as np

from motionseg_ros.stages import FeatureExtractor, StageContext
from motionseg_ros.track_attributes import DepthHistory, FeatureCache, sample_map
from motionseg_ros.types import Frame, TrackWindow


def _window(ids, xy_last, stamps, visible_last=None):
    n, t = len(ids), len(stamps)
    xy = np.zeros((n, t, 2), np.float32)
    xy[:, -1] = xy_last
    vis = np.ones((n, t), bool)
    if visible_last is not None:
        vis[:, -1] = visible_last
    return TrackWindow(ids=np.asarray(ids, np.int64), xy=xy, visible=vis,
                       confidence=np.ones((n, t), np.float32),
                       stamps_ns=np.asarray(stamps, np.int64), image_size=(10, 20))


def test_sample_map_bilinear_and_outside():
    depth = np.arange(200, dtype=np.float32).reshape(10, 20)
    xy = np.array([[0, 0], [1.5, 0], [0, 2.5], [19, 9], [-1, 0], [20.5, 3]], np.float32)
    out = sample_map(depth, xy)
    np.testing.assert_allclose(out[:4], [0, 1.5, 50, 199])
    assert np.isnan(out[4]) and np.isnan(out[5])


def test_depth_history_aligns_by_id_and_stamp():
    depth1 = np.full((10, 20), 2.0, np.float32)
    depth2 = np.full((10, 20), 3.0, np.float32)
    depth2[:, 10:] = np.nan
    hist = DepthHistory(window=3)
    w1 = _window([5, 7], [[1, 1], [15, 5]], [100])
    hist.add(100, w1, depth1)
    w2 = _window([7, 9, 5], [[15, 5], [2, 2], [1, 1]], [100, 200])
    hist.add(200, w2, depth2)
    d = hist.window_depth(w2)
    assert d.shape == (3, 2)
    np.testing.assert_allclose(d[0], [2.0, np.nan])      # id 7: nan in frame 2 (right half)
    np.testing.assert_allclose(d[1], [np.nan, 3.0])      # id 9: new in frame 2
    np.testing.assert_allclose(d[2], [2.0, 3.0])         # id 5
    for s in range(300, 1000, 100):                      # bounded by the window
        hist.add(s, _window([1], [[1, 1]], [s]), depth1)
    assert len(hist._frames) == 3
    assert hist.window_depth(_window([1], [[1, 1]], [100])) is not None


def test_depth_history_none_without_depth():
    hist = DepthHistory(window=4)
    hist.add(1, _window([1], [[1, 1]], [1]), None)
    assert hist.window_depth(_window([1], [[1, 1]], [1])) is None


def test_depth_history_keeps_whole_maps_only_when_asked():
    plain, maps = DepthHistory(window=2), DepthHistory(window=2, keep_maps=True)
    empty = TrackWindow.empty((10, 20), np.array([100]))
    for s in (100, 200, 300):                            # kept even for a frame without tracks
        depth = np.full((10, 20), s, np.float32)
        for hist in (plain, maps):
            hist.add(s, empty if s == 100 else _window([1], [[1, 1]], [s]), depth)
    assert plain.window_maps(_window([1], [[1, 1]], [200, 300])) is None
    got = maps.window_maps(_window([1], [[1, 1]], [200, 300]))
    assert got.shape == (2, 10, 20) and got[0, 0, 0] == 200 and got[1, 0, 0] == 300
    assert maps.window_maps(_window([1], [[1, 1]], [100, 200, 300])) is None  # 100 dropped
    maps.reset()
    assert maps.window_maps(_window([1], [[1, 1]], [300])) is None


class _PositionFeatures(FeatureExtractor):
    """Real extractor computing features from the image at each position (not a mock)."""

    def __init__(self):
        self.calls = 0

    def extract(self, frame, xy, ctx):
        self.calls += 1
        xi = np.clip(xy[:, 0].astype(int), 0, frame.image.shape[1] - 1)
        yi = np.clip(xy[:, 1].astype(int), 0, frame.image.shape[0] - 1)
        return frame.image[yi, xi].astype(np.float32)


def test_feature_cache_extracts_once_per_track_and_evicts():
    img = np.random.default_rng(0).integers(0, 255, (10, 20, 3), dtype=np.uint8)
    frame = Frame(image=img, stamp_ns=0)
    ext = _PositionFeatures()
    cache = FeatureCache(ext)
    ctx = StageContext()
    w1 = _window([1, 2], [[3, 4], [5, 6]], [0])
    f1 = cache.features(frame, w1, ctx)
    np.testing.assert_array_equal(f1[0], img[4, 3])
    # track 1 moves: its feature stays the one of its first frame; track 3 is new
    w2 = _window([1, 3], [[10, 8], [0, 0]], [0, 1])
    f2 = cache.features(frame, w2, ctx)
    np.testing.assert_array_equal(f2[0], img[4, 3])
    np.testing.assert_array_equal(f2[1], img[0, 0])
    assert ext.calls == 2
    assert set(cache._cache) == {1, 3}                   # track 2 left the window: evicted
