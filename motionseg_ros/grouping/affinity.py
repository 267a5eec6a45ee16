"""Dynamic tracks -> objects by spatial and motion affinity, ids kept by track membership.

Dynamic tracks visible in the newest frame are linked to their k nearest neighbours when they
are close (relative to the typical spacing of dynamic tracks) and move alike (velocity over the
last few frames); connected components of that graph are objects. A component inherits the
object id most of its member tracks had in the previous frame, unless a larger component took
it; otherwise it gets a fresh id. Ids are never reused; memory holds only the window's tracks.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from motionseg_ros.registry import register
from motionseg_ros.runtime_params import table
from motionseg_ros.stages import Grouper, StageContext
from motionseg_ros.types import TrackWindow


@register('grouping', 'affinity')
class AffinityGrouper(Grouper):
    """Connected components of a kNN graph gated by distance and velocity."""

    runtime_params = table("""
k               int   1..64         Nearest neighbours linked per track.
distance_px     float 0.001..10000  Link distance: px, or a fraction of the image diagonal
  when < 1.
velocity_px     float 0..1000       Velocity gate (px/frame) between linked tracks.
velocity_rel    float 0..10         Velocity gate added per unit of the faster track's speed.
velocity_frames int   1..100        Frames the velocity is measured over.
min_tracks      int   1..10000      Fewest dynamic tracks that make a new object.
""")

    def __init__(self, k: int = 8, distance_px: float = 0.12, velocity_px: float = 3.0,
                 velocity_rel: float = 0.6, velocity_frames: int = 3, min_tracks: int = 3
                 ) -> None:
        """Configure.

        ``distance_px`` < 1 is a fraction of the image diagonal; two tracks are linked when
        closer than that and their velocities (px/frame over ``velocity_frames``) differ by
        less than ``velocity_px + velocity_rel * max speed``. Components with fewer than
        ``min_tracks`` tracks stay ungrouped (-1) unless they continue a previous object.
        """
        self.k = int(k)
        self.distance_px = float(distance_px)
        self.velocity_px = float(velocity_px)
        self.velocity_rel = float(velocity_rel)
        self.velocity_frames = int(velocity_frames)
        self.min_tracks = int(min_tracks)
        self._next_id = 1
        self.reset()

    def reset(self) -> None:
        """Forget the previous assignment (ids stay unique: the counter is not rewound)."""
        self._prev: Dict[int, int] = {}

    def _velocity(self, window: TrackWindow, idx: np.ndarray) -> np.ndarray:
        """Mean image velocity (px/frame) of tracks ``idx`` over the last few frames."""
        t = window.num_frames
        vel = np.zeros((idx.size, 2), np.float32)
        done = np.zeros(idx.size, bool)
        for k in range(min(self.velocity_frames, t - 1), 0, -1):
            ok = window.visible[idx, -1 - k] & ~done
            vel[ok] = (window.xy[idx[ok], -1] - window.xy[idx[ok], -1 - k]) / k
            done |= ok
        return vel

    def group(self, window: TrackWindow, dynamic: np.ndarray, prob: np.ndarray,
              ctx: StageContext) -> np.ndarray:
        """Return (N,) persistent object ids, -1 for static or ungrouped tracks."""
        n = window.num_tracks
        out = -np.ones(n, np.int64)
        if n == 0 or window.num_frames == 0:
            self._prev = {}
            return out
        idx = np.flatnonzero(np.asarray(dynamic, bool) & window.visible[:, -1])
        if idx.size == 0:
            self._prev = {}
            return out
        pts = window.xy[idx, -1].astype(np.float64)
        vel = self._velocity(window, idx)
        h, w = window.image_size
        gate = self.distance_px * float(np.hypot(h, w)) if self.distance_px < 1 else \
            self.distance_px
        m = idx.size
        if m > 1:
            tree = cKDTree(pts)
            kk = min(self.k + 1, m)
            dist, nb = tree.query(pts, k=kk, distance_upper_bound=gate)
            rows = np.repeat(np.arange(m), kk)
            cols = nb.ravel()
            ok = np.isfinite(dist.ravel()) & (cols < m) & (cols != rows)
            rows, cols = rows[ok], cols[ok]
            dv = np.linalg.norm(vel[rows] - vel[cols], axis=1)
            speed = np.maximum(np.linalg.norm(vel[rows], axis=1),
                               np.linalg.norm(vel[cols], axis=1))
            ok = dv < self.velocity_px + self.velocity_rel * speed
            graph = coo_matrix((np.ones(int(ok.sum())), (rows[ok], cols[ok])), shape=(m, m))
            _, comp = connected_components(graph, directed=False)
        else:
            comp = np.zeros(1, np.int64)
        ids = window.ids[idx]
        prev_obj = np.array([self._prev.get(int(i), -1) for i in ids], np.int64)
        sizes = np.bincount(comp)
        taken = set()
        for c in np.argsort(-sizes):
            members = comp == c
            votes = prev_obj[members]
            votes = votes[votes >= 0]
            obj = -1
            if votes.size:
                vals, cnt = np.unique(votes, return_counts=True)
                for j in np.argsort(-cnt):
                    if int(vals[j]) not in taken:
                        obj = int(vals[j])
                        break
            if obj < 0:
                if sizes[c] < self.min_tracks:
                    continue
                obj = self._next_id
                self._next_id += 1
            taken.add(obj)
            out[idx[members]] = obj
        self._prev = {int(i): int(o) for i, o in zip(window.ids, out) if o >= 0}
        return out
