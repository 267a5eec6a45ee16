"""Region proposal and mask holding for the flow densifier (all at flow resolution).

Hysteresis on the residual score gives candidate regions. The tracks decide which regions are
objects: a region is kept when it holds dynamic tracks (it takes their object id) or continues
a previous object's mask. An object whose tracks are still dynamic but that no longer produces
residual (it stopped) keeps its previous mask, moved by the flow, for a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Set, Tuple

import cv2
import numpy as np

from motionseg_ros.densifiers.flow_params import FlowParams
from motionseg_ros.types import TrackWindow

#: object id -> (flow-resolution mask, frames since it was last supported, score)
HeldMasks = Dict[int, Tuple[np.ndarray, int, float]]


@dataclass
class TracksAt:
    """The newest frame's tracks at flow resolution."""

    tx: np.ndarray      # (N,) int column, clipped to the image
    ty: np.ndarray      # (N,) int row
    vis: np.ndarray     # (N,) visible in the newest frame
    dyn: np.ndarray     # (N,) dynamic and visible
    obj: np.ndarray     # (N,) int64 object id (-1: none)

    @classmethod
    def of(cls, window: TrackWindow, dynamic: np.ndarray, object_ids: np.ndarray,
           scale: float, shape: Tuple[int, int]) -> 'TracksAt':
        """Place ``window``'s newest positions on a ``shape`` grid at ``scale``."""
        hs, ws = shape
        vis = window.visible[:, -1] if window.num_frames else np.zeros(0, bool)
        xy = window.xy[:, -1] * scale if window.num_frames else np.zeros((0, 2))
        tx = np.clip(np.round(xy[:, 0]).astype(int), 0, ws - 1)
        ty = np.clip(np.round(xy[:, 1]).astype(int), 0, hs - 1)
        return cls(tx, ty, vis, np.asarray(dynamic, bool) & vis,
                   np.asarray(object_ids, np.int64))

    def live_objects(self) -> Set[int]:
        """Return the ids of objects with a visible dynamic track."""
        return set(int(v) for v in np.unique(self.obj[self.dyn & (self.obj >= 0)]))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes of a uint8 0/1 mask (background reachable from the border stays)."""
    h, w = mask.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = mask
    ff = pad.copy()
    cv2.floodFill(ff, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1)
    holes = ff[1:-1, 1:-1] == 0
    out = mask.copy()
    out[holes] = 1
    return out


def candidate_regions(score: np.ndarray, p: FlowParams) -> Tuple[np.ndarray, np.ndarray]:
    """Return (component labels, ids of the components seeded above ``high``)."""
    hs, ws = score.shape
    cand = (score > p.low).astype(np.uint8)
    n_lab, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    seeded = np.zeros(n_lab, bool)
    seeded[np.unique(labels[score > p.high])] = True
    seeded[0] = False
    seeded &= stats[:, cv2.CC_STAT_AREA] >= p.min_area * hs * ws
    return labels, np.flatnonzero(seeded)


def warp_held(held: HeldMasks, flow_f: np.ndarray) -> Dict[int, np.ndarray]:
    """Move each previous mask rigidly by its object's median flow (no disocclusion trails)."""
    hs, ws = flow_f.shape[:2]
    warped: Dict[int, np.ndarray] = {}
    for oid, (m, _, _) in held.items():
        fx = flow_f[..., 0][m]
        fy = flow_f[..., 1][m]
        if fx.size == 0:
            continue
        shift = np.float32([[1, 0, np.median(fx)], [0, 1, np.median(fy)]])
        warped[oid] = cv2.warpAffine(m.astype(np.uint8), shift, (ws, hs),
                                     flags=cv2.INTER_NEAREST) > 0
    return warped


def assign_regions(labels: np.ndarray, seeded: np.ndarray, score: np.ndarray, t: TracksAt,
                   warped: Dict[int, np.ndarray], prob: np.ndarray, held: HeldMasks,
                   p: FlowParams) -> Tuple[Dict[int, np.ndarray], Dict[int, float]]:
    """Return object id -> region mask and object id -> score for the regions kept.

    A region is kept when it holds ``min_region_tracks`` dynamic tracks (their objects) or
    overlaps a moved previous mask by ``continue_overlap``, unless static tracks dominate it
    or its mean score is far below the strongest region's.
    """
    lab_at = labels[t.ty, t.tx]
    picked = []  # (region, object ids, their track counts, region mean score)
    for lab in seeded:
        in_lab = lab_at == lab
        d_ids = t.obj[in_lab & t.dyn & (t.obj >= 0)]
        n_dyn = int(np.count_nonzero(in_lab & t.dyn))
        n_stat = int(np.count_nonzero(in_lab & t.vis & ~t.dyn))
        if n_dyn < p.static_ratio * n_stat:
            continue
        region = labels == lab
        if d_ids.size >= p.min_region_tracks:
            vals, cnt = np.unique(d_ids, return_counts=True)
        elif warped:
            area = region.sum()
            best, best_ov = -1, 0.0
            for oid, w_m in warped.items():
                ov = float(np.count_nonzero(w_m & region)) / max(area, 1)
                if ov > best_ov:
                    best, best_ov = oid, ov
            if best_ov < p.continue_overlap:
                continue
            vals, cnt = np.array([best]), np.array([1])
        else:
            continue
        picked.append((region, vals, cnt, float(score[region].mean())))
    top = max((q[3] for q in picked), default=0.0)
    assigned: Dict[int, np.ndarray] = {}
    scores: Dict[int, float] = {}
    for region, vals, cnt, rs in picked:
        if rs < p.relative_keep * top:
            continue  # much weaker than the strongest region: parallax, water, shadow
        if len(vals) > 1:  # several objects share the region: split by nearest track
            split_region(region, vals, t, assigned)
        else:
            target = int(vals[0])
            assigned[target] = assigned.get(target, np.zeros(score.shape, bool)) | region
        for v in vals:
            sel = t.dyn & (t.obj == v)
            scores[int(v)] = float(prob[sel].mean()) if sel.any() else \
                held.get(int(v), (None, 0, 0.5))[2]
    return assigned, scores


def hold_silent(warped: Dict[int, np.ndarray], held: HeldMasks, live: Set[int],
                assigned: Dict[int, np.ndarray], scores: Dict[int, float], p: FlowParams
                ) -> HeldMasks:
    """Keep silent objects (still dynamic, or recently seen) on their moved mask.

    Adds them to ``assigned`` and ``scores``; returns their entries of the next held masks.
    """
    kept: HeldMasks = {}
    for oid, w_m in warped.items():
        if oid in assigned or not w_m.any():
            continue
        age = held[oid][1] + 1
        if (oid in live and age <= p.hold_frames) or age <= p.hold_lost:
            assigned[oid] = w_m
            scores[oid] = held[oid][2]
            kept[oid] = (w_m, age, scores[oid])
    return kept


def split_region(region: np.ndarray, vals: np.ndarray, t: TracksAt,
                 assigned: Dict[int, np.ndarray]) -> None:
    """Share ``region`` between objects ``vals`` by the nearest of their dynamic tracks."""
    dists: List[np.ndarray] = []
    for v in vals:
        seeds = np.full(region.shape, 255, np.uint8)
        pick = t.dyn & (t.obj == v)
        seeds[t.ty[pick], t.tx[pick]] = 0
        dists.append(cv2.distanceTransform(seeds, cv2.DIST_L2, 3))
    nearest = np.argmin(np.stack(dists), axis=0)
    for j, v in enumerate(vals):
        part = region & (nearest == j)
        key = int(v)
        assigned[key] = assigned.get(key, np.zeros(region.shape, bool)) | part
