"""Per-track depth and semantic features, kept across frames for the classifier.

Depth is sampled at each track's position in every frame that has a depth map, so the window
carries (N, T) depth even though depth maps are not kept (unless asked for: the classifier's
``reference_quirks`` samples whole maps, as the reference code did). Semantic features are
extracted once per track, at the first frame it is seen (the paper samples DINO at the query
frame), and cached by track id. Both stores are bounded by the window: nothing grows with
stream length.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Dict, Optional, Tuple

import numpy as np

from motionseg_ros.stages import FeatureExtractor, StageContext
from motionseg_ros.types import Frame, TrackWindow


def sample_map(values: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinearly sample an (H, W) map at (N, 2) pixel positions; NaN outside or near NaN."""
    h, w = values.shape[:2]
    out = np.full(xy.shape[0], np.nan, np.float32)
    if xy.shape[0] == 0:
        return out
    x, y = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    inside = (x >= 0) & (y >= 0) & (x <= w - 1) & (y <= h - 1)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(h - 2, 0))
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx, fy = x - x0, y - y0
    v = (values[y0, x0] * (1 - fx) * (1 - fy) + values[y0, x1] * fx * (1 - fy)
         + values[y1, x0] * (1 - fx) * fy + values[y1, x1] * fx * fy)
    out[inside] = v[inside]
    return out


class DepthHistory:
    """Depth at track positions (and, if asked, whole maps) for the last ``window`` frames."""

    def __init__(self, window: int, keep_maps: bool = False) -> None:
        """Keep at most ``window`` frames of samples; ``keep_maps``: also the maps themselves."""
        self._frames: Deque[Tuple[int, np.ndarray, np.ndarray]] = deque(maxlen=window)
        self.keep_maps = bool(keep_maps)
        self._maps: Deque[Tuple[int, np.ndarray]] = deque(maxlen=window)

    def reset(self) -> None:
        """Forget everything."""
        self._frames.clear()
        self._maps.clear()

    def add(self, stamp_ns: int, window: TrackWindow, depth: Optional[np.ndarray]) -> None:
        """Sample ``depth`` at the newest positions of the tracks visible now (keep the map)."""
        if depth is not None and self.keep_maps:
            self._maps.append((int(stamp_ns), np.asarray(depth, np.float32)))
        if depth is None or window.num_tracks == 0 or window.num_frames == 0:
            return
        alive = window.visible[:, -1]
        ids = window.ids[alive]
        values = sample_map(depth, window.xy[alive, -1])
        order = np.argsort(ids)
        self._frames.append((int(stamp_ns), ids[order], values[order]))

    def window_depth(self, window: TrackWindow) -> Optional[np.ndarray]:
        """Return (N, T) depth for ``window`` (NaN where unknown), or None without any depth."""
        if not self._frames:
            return None
        out = np.full((window.num_tracks, window.num_frames), np.nan, np.float32)
        by_stamp = {s: (ids, vals) for s, ids, vals in self._frames}
        for t, stamp in enumerate(window.stamps_ns.tolist()):
            entry = by_stamp.get(int(stamp))
            if entry is None or entry[0].size == 0:
                continue
            ids, vals = entry
            pos = np.clip(np.searchsorted(ids, window.ids), 0, ids.size - 1)
            hit = ids[pos] == window.ids
            out[hit, t] = vals[pos[hit]]
        return out

    def window_maps(self, window: TrackWindow) -> Optional[np.ndarray]:
        """Return the (T, H, W) depth maps of the window's frames, None unless all are kept."""
        by_stamp = dict(self._maps)
        stamps = [int(s) for s in window.stamps_ns.tolist()]
        if not stamps or any(s not in by_stamp for s in stamps):
            return None
        return np.stack([by_stamp[s] for s in stamps])


class FeatureCache:
    """Semantic features per track id, extracted once when the track first appears."""

    def __init__(self, extractor: FeatureExtractor) -> None:
        """Wrap ``extractor``."""
        self.extractor = extractor
        self._cache: Dict[int, np.ndarray] = {}

    def reset(self) -> None:
        """Forget everything."""
        self._cache.clear()

    def features(self, frame: Frame, window: TrackWindow, ctx: StageContext) -> np.ndarray:
        """Return (N, D) features for the window's tracks; new visible tracks are extracted now."""
        ids = window.ids.tolist()
        alive = window.visible[:, -1] if window.num_frames else np.zeros(len(ids), bool)
        new = [i for i, tid in enumerate(ids) if tid not in self._cache and alive[i]]
        if new:
            feats = np.asarray(self.extractor.extract(frame, window.xy[new, -1], ctx), np.float32)
            for row, i in enumerate(new):
                self._cache[ids[i]] = feats[row]
        dim = next(iter(self._cache.values())).shape[0] if self._cache else 0
        out = np.zeros((len(ids), dim), np.float32)
        for i, tid in enumerate(ids):
            f = self._cache.get(tid)
            if f is not None:
                out[i] = f
        keep = set(ids)  # bounded: only tracks of the current window stay cached
        for tid in [t for t in self._cache if t not in keep]:
            del self._cache[tid]
        return out
