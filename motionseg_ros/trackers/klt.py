"""Pyramidal Lucas-Kanade point tracker with a forward-backward check and grid re-seeding.

Tracks live as long as LK keeps them (longer than the window); the window handed downstream is
the last ``window`` frames of every track seen in them. Tracking may run at reduced resolution
for speed; coordinates are always returned in input pixels. Memory is bounded: at most
``max_tracks`` live tracks, and dead tracks leave once they fall out of the window.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

import cv2
import numpy as np

from motionseg_ros.registry import register
from motionseg_ros.runtime_params import table
from motionseg_ros.stages import StageContext, Tracker
from motionseg_ros.types import Frame, TrackWindow


@register('tracker', 'klt')
class KLTTracker(Tracker):
    """Keep about ``max_tracks`` KLT tracks spread over a grid of cells."""

    # not run-time: window, scale, grid, win_size, max_level (the stored tracks and images
    # depend on them), max_tracks (sizes max_stored)
    runtime_params = table("""
fb_threshold  float 0.05..100  Forward-backward error (tracking px) above which a track drops.
min_distance  float 1..100     Least distance (tracking px) between a new track and any other.
quality       float 1e-6..1    Corner quality (fraction of the best corner) a new track needs.
""")

    def __init__(self, window: int = 16, max_tracks: int = 600, scale: float = 0.5,
                 grid: Tuple[int, int] = (8, 12), win_size: int = 15, max_level: int = 3,
                 fb_threshold: float = 1.0, min_distance: float = 6.0,
                 quality: float = 0.001, max_stored: int = 0) -> None:
        """Configure; ``scale`` is the tracking resolution, ``fb_threshold`` in tracking px.

        ``grid`` is (rows, cols) of re-seeding cells; each keeps about its share of
        ``max_tracks``. ``max_stored`` caps live + recently dead tracks (0: 3 x max_tracks).
        """
        if int(window) < 2:
            raise ValueError('klt: window must be >= 2')
        if not 0.1 <= float(scale) <= 1.0:
            raise ValueError('klt: scale must be in [0.1, 1]')
        self.window = int(window)
        self.max_tracks = int(max_tracks)
        self.scale = float(scale)
        self.grid = (int(grid[0]), int(grid[1]))
        self.win_size = int(win_size)
        self.max_level = int(max_level)
        self.fb_threshold = float(fb_threshold)
        self.min_distance = float(min_distance)
        self.quality = float(quality)
        self.max_stored = int(max_stored) if max_stored else 3 * self.max_tracks
        self._next_id = 0
        self.reset()

    def reset(self) -> None:
        """Forget every track (ids keep increasing: they are never reused)."""
        self._prev: Optional[np.ndarray] = None
        self._ids = np.zeros(0, np.int64)
        self._xy = np.zeros((0, self.window, 2), np.float32)    # tracking-resolution px
        self._vis = np.zeros((0, self.window), bool)
        self._conf = np.zeros((0, self.window), np.float32)
        self._stamps: Deque[int] = deque(maxlen=self.window)
        self._size: Optional[Tuple[int, int]] = None

    # ------------------------------------------------------------------ helpers
    def _gray(self, image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if self.scale != 1.0:
            h, w = gray.shape[:2]
            size = (max(1, int(round(w * self.scale))), max(1, int(round(h * self.scale))))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        return gray

    def _to_input(self, xy: np.ndarray) -> np.ndarray:
        """Tracking-resolution pixel coordinates -> input pixel coordinates (centre aligned)."""
        if self.scale == 1.0:
            return xy.astype(np.float32, copy=True)
        sx = self._size[1] / self._prev.shape[1]
        sy = self._size[0] / self._prev.shape[0]
        out = np.empty_like(xy, dtype=np.float32)
        out[..., 0] = (xy[..., 0] + 0.5) * sx - 0.5
        out[..., 1] = (xy[..., 1] + 0.5) * sy - 0.5
        return out

    def _track(self, prev: np.ndarray, cur: np.ndarray, pts: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LK forward and backward; return new points, validity and confidence."""
        n = pts.shape[0]
        if n == 0:
            return pts, np.zeros(0, bool), np.zeros(0, np.float32)
        p0 = pts.reshape(-1, 1, 2).astype(np.float32)
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
        win = (self.win_size, self.win_size)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, winSize=win,
                                              maxLevel=self.max_level, criteria=crit)
        p0b, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, winSize=win,
                                               maxLevel=self.max_level, criteria=crit)
        p1 = p1.reshape(-1, 2)
        fb = np.linalg.norm(p0b.reshape(-1, 2) - pts, axis=1)
        h, w = cur.shape[:2]
        inside = ((p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0)
                  & (p1[:, 1] <= h - 1))
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < self.fb_threshold) & inside
        ok &= np.isfinite(p1).all(axis=1)
        conf = np.clip(1.0 - fb / max(self.fb_threshold, 1e-6), 0.0, 1.0).astype(np.float32)
        return p1, ok, conf

    def _seed(self, gray: np.ndarray, alive_xy: np.ndarray) -> np.ndarray:
        """Return new corners in grid cells holding fewer than their share of live tracks."""
        need_total = self.max_tracks - alive_xy.shape[0]
        if need_total <= 0:
            return np.zeros((0, 2), np.float32)
        h, w = gray.shape[:2]
        rows, cols = self.grid
        per_cell = max(1, self.max_tracks // (rows * cols))
        cy = np.clip((alive_xy[:, 1] * rows / h).astype(int), 0, rows - 1)
        cx = np.clip((alive_xy[:, 0] * cols / w).astype(int), 0, cols - 1)
        counts = np.bincount(cy * cols + cx, minlength=rows * cols)
        deficit = np.maximum(per_cell - counts, 0)
        if deficit.sum() == 0:
            return np.zeros((0, 2), np.float32)
        mask = np.full((h, w), 255, np.uint8)
        r = max(1, int(round(self.min_distance)))
        for x, y in alive_xy:
            cv2.circle(mask, (int(x), int(y)), r, 0, -1)
        border = max(2, self.win_size // 4)
        mask[:border] = 0
        mask[-border:] = 0
        mask[:, :border] = 0
        mask[:, -border:] = 0
        corners = cv2.goodFeaturesToTrack(gray, maxCorners=max(2000, int(deficit.sum()) * 4),
                                          qualityLevel=self.quality,
                                          minDistance=self.min_distance, mask=mask,
                                          blockSize=5)
        if corners is None:
            return np.zeros((0, 2), np.float32)
        corners = corners.reshape(-1, 2)
        ccy = np.clip((corners[:, 1] * rows / h).astype(int), 0, rows - 1)
        ccx = np.clip((corners[:, 0] * cols / w).astype(int), 0, cols - 1)
        cell = ccy * cols + ccx
        keep = np.zeros(corners.shape[0], bool)
        taken = np.zeros(rows * cols, int)
        for i, c in enumerate(cell):  # corners come strongest first
            if taken[c] < deficit[c]:
                taken[c] += 1
                keep[i] = True
        seeds = corners[keep]
        return seeds[:need_total].astype(np.float32)

    # ------------------------------------------------------------------ update
    def update(self, frame: Frame, ctx: StageContext) -> TrackWindow:
        """Track the live points into ``frame``, re-seed, and return the window."""
        if self._size is not None and frame.size != self._size:
            self.reset()
        self._size = frame.size
        gray = self._gray(frame.image)
        # shift the history one frame left
        self._xy = np.roll(self._xy, -1, axis=1)
        self._vis = np.roll(self._vis, -1, axis=1)
        self._conf = np.roll(self._conf, -1, axis=1)
        self._vis[:, -1] = False
        self._conf[:, -1] = 0.0
        self._stamps.append(int(frame.stamp_ns))
        if self._prev is not None and self._ids.size:
            alive = self._vis[:, -2]
            idx = np.flatnonzero(alive)
            p1, ok, conf = self._track(self._prev, gray, self._xy[idx, -2])
            good = idx[ok]
            self._xy[good, -1] = p1[ok]
            self._vis[good, -1] = True
            self._conf[good, -1] = conf[ok]
        alive_xy = self._xy[self._vis[:, -1], -1]
        if not np.isfinite(gray).all() or gray.std() < 1.0:  # flat / black frame: nothing
            seeds = np.zeros((0, 2), np.float32)
        else:
            seeds = self._seed(gray, alive_xy)
        if seeds.shape[0]:
            n = seeds.shape[0]
            new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            self._next_id += n
            xy = np.zeros((n, self.window, 2), np.float32)
            xy[:, -1] = seeds
            vis = np.zeros((n, self.window), bool)
            vis[:, -1] = True
            conf = np.zeros((n, self.window), np.float32)
            conf[:, -1] = 1.0
            self._ids = np.concatenate([self._ids, new_ids])
            self._xy = np.concatenate([self._xy, xy])
            self._vis = np.concatenate([self._vis, vis])
            self._conf = np.concatenate([self._conf, conf])
        # drop tracks with no visible frame left in the window, then cap storage (oldest dead)
        t = len(self._stamps)
        keep = self._vis[:, -t:].any(axis=1)
        if keep.sum() > self.max_stored:
            dead = np.flatnonzero(keep & ~self._vis[:, -1])
            excess = int(keep.sum()) - self.max_stored
            keep[dead[:excess]] = False
        if not keep.all():
            self._ids, self._xy = self._ids[keep], self._xy[keep]
            self._vis, self._conf = self._vis[keep], self._conf[keep]
        self._prev = gray
        vis = self._vis[:, -t:].copy()
        xy = self._to_input(self._xy[:, -t:])
        xy[~vis] = 0.0
        return TrackWindow(ids=self._ids.copy(), xy=xy, visible=vis,
                           confidence=self._conf[:, -t:].copy(),
                           stamps_ns=np.asarray(self._stamps, np.int64),
                           image_size=frame.size)
