"""KLT tracker: sub-pixel accuracy on a known translation, persistent ids, bounded memory."""

import cv2
import numpy as np
import pytest

from motionseg_ros.stages import StageContext
from motionseg_ros.trackers.klt import KLTTracker
from motionseg_ros.types import Frame


def textured(h=240, w=320, seed=0):
    """Multi-scale noise texture: corners everywhere."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for scale, amp in ((32, 1.0), (8, 0.6), (2, 0.3)):
        small = rng.random((h // scale, w // scale)).astype(np.float32)
        img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2BGR)


def shifted(img, dx, dy):
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize('scale', [1.0, 0.5])
def test_known_translation_subpixel(scale):
    img = textured()
    dx, dy = 3.3, -2.1
    tr = KLTTracker(window=8, max_tracks=300, scale=scale)
    ctx = StageContext()
    w0 = tr.update(Frame(img, 0), ctx)
    w1 = tr.update(Frame(shifted(img, dx, dy), 33_000_000), ctx)
    assert w0.num_tracks > 100
    both = w1.visible[:, 0] & w1.visible[:, 1]
    xy0 = w1.xy[both, 0]
    inner = ((xy0[:, 0] > 20) & (xy0[:, 0] < 300) & (xy0[:, 1] > 20) & (xy0[:, 1] < 220))
    assert inner.sum() > 80
    d = w1.xy[both, 1][inner] - xy0[inner]
    err = np.hypot(d[:, 0] - dx, d[:, 1] - dy)
    assert np.median(err) < 0.5
    assert np.mean(err < 0.5) > 0.9
    # positions of frame 0 in the window are the same as what the first call returned
    first = dict(zip(w0.ids.tolist(), w0.xy[:, 0].tolist()))
    for tid, p in zip(w1.ids[both], w1.xy[both, 0]):
        assert np.allclose(first[int(tid)], p, atol=1e-4)


def test_ids_persistent_and_window_bounded():
    img = textured(seed=1)
    tr = KLTTracker(window=4, max_tracks=200, scale=1.0)
    ctx = StageContext()
    seen_ids = None
    total = 0
    for i in range(12):
        w = tr.update(Frame(shifted(img, 1.0 * i, 0.5 * i), i * 10**8), ctx)
        assert w.num_frames == min(i + 1, 4)
        assert w.xy.shape == (w.num_tracks, w.num_frames, 2)
        assert w.ids.dtype == np.int64 and len(set(w.ids.tolist())) == w.num_tracks
        alive = set(w.ids[w.alive()].tolist())
        if seen_ids is not None:
            assert len(alive & seen_ids) > 0.7 * len(seen_ids)  # most tracks live on
        seen_ids = alive
        total = max(total, w.num_tracks)
        assert w.alive().sum() <= 200
    assert total <= 3 * 200
    # the ids of tracks that lived through all 12 frames never changed
    assert int(w.visible.all(axis=1).sum()) > 50


def test_flat_frame_gives_no_tracks_and_reset():
    tr = KLTTracker(window=4)
    ctx = StageContext()
    w = tr.update(Frame(np.zeros((64, 64, 3), np.uint8), 0), ctx)
    assert w.num_tracks == 0
    w = tr.update(Frame(textured(64, 64), 1), ctx)
    ids_before = w.ids.copy()
    tr.reset()
    w = tr.update(Frame(textured(64, 64), 2), ctx)
    assert w.num_frames == 1
    assert not set(w.ids.tolist()) & set(ids_before.tolist())  # ids never reused
