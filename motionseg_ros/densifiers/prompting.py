"""Iterative SAM2 prompting adapted to a stream (paper.md section 10), in plain numpy.

The reference prompts SAM2 offline: it groups dynamic tracks into objects by clicking the most
central uncovered point, re-prompts with three clicks when a mask misses its tracks, and merges
duplicates over the whole clip. Online, the same decisions are taken frame by frame:

* :meth:`PromptPlanner.plan` runs *before* the model sees frame t. It compares the dynamic
  tracks with the masks of frame t-1 (where both exist) and returns prompts to add at frame t:
  a new object at the uncovered dynamic point with the smallest sum of distances to the other
  uncovered points, and three-point re-prompts (nearest to the centroid + the two farthest) for
  objects whose mask covers too few of their own dynamic tracks.
* :meth:`PromptPlanner.update` runs *after* the model produced the masks of frame t. It assigns
  dynamic tracks to the objects whose masks hold them, and says which objects to drop (too few
  dynamic tracks for longer than a grace period) and which to merge (duplicates for several
  consecutive frames).

Keeping this free of torch makes every decision testable with hand-made masks and points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class Prompt:
    """Clicks to add for one object at the current frame (``object_id`` None = a new object)."""

    object_id: Optional[int]
    points: np.ndarray          # (P, 2) float32 (x, y) in input pixels
    labels: np.ndarray          # (P,) int32, 1 = positive click
    track_ids: np.ndarray       # (M,) int64: the tracks that motivated the prompt


@dataclass
class Plan:
    """What to prompt at the current frame before running the model."""

    new: List[Prompt] = field(default_factory=list)
    reprompt: List[Prompt] = field(default_factory=list)


@dataclass
class Update:
    """What the masks of the current frame say about the objects."""

    counts: Dict[int, int]                    # object id -> dynamic tracks inside its mask
    drop: List[int]                           # objects to forget (too few tracks for too long)
    merges: List[Tuple[int, int]]             # (kept id, absorbed id) duplicate pairs


def points_in_masks(masks: np.ndarray, xy: np.ndarray, valid: Optional[np.ndarray] = None
                    ) -> np.ndarray:
    """Return (K, N) bool: point n lies inside mask k (nearest pixel; outside the image = no)."""
    masks = np.asarray(masks, bool)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    k = masks.shape[0] if masks.ndim == 3 else 0
    n = xy.shape[0]
    out = np.zeros((k, n), bool)
    if k == 0 or n == 0:
        return out
    h, w = masks.shape[1:]
    finite = np.isfinite(xy).all(axis=1)
    cols = np.full(n, -1, np.int64)
    rows = np.full(n, -1, np.int64)
    cols[finite] = np.floor(xy[finite, 0] + 0.5).astype(np.int64)
    rows[finite] = np.floor(xy[finite, 1] + 0.5).astype(np.int64)
    inside = finite & (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    if valid is not None:
        inside &= np.asarray(valid, bool)
    idx = np.flatnonzero(inside)
    out[:, idx] = masks[:, rows[idx], cols[idx]]
    return out


def dilate_masks(masks: np.ndarray, radius: int) -> np.ndarray:
    """Return ``masks`` (K, H, W) dilated by a square of half-size ``radius`` pixels."""
    masks = np.asarray(masks, bool)
    if radius <= 0 or masks.size == 0:
        return masks
    import cv2
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    return np.stack([cv2.dilate(m.astype(np.uint8), kernel) > 0 for m in masks])


def central_point_index(points: np.ndarray) -> int:
    """Index of the point with the smallest sum of distances to the others (a medoid)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if points.shape[0] == 0:
        raise ValueError('central_point_index needs at least one point')
    dist = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=2)
    return int(np.argmin(dist.sum(axis=1)))


def three_point_indices(points: np.ndarray) -> np.ndarray:
    """Return the indices of the point nearest the centroid and the two farthest from it."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if points.shape[0] == 0:
        raise ValueError('three_point_indices needs at least one point')
    dist = np.linalg.norm(points - points.mean(axis=0), axis=1)
    order = [int(np.argmin(dist))]
    for idx in np.argsort(-dist, kind='stable'):
        if len(order) == 3:
            break
        if int(idx) not in order:
            order.append(int(idx))
    return np.asarray(order, np.int64)


def duplicate_pairs(masks: np.ndarray, ids: Sequence[int], iou_threshold: float,
                    containment_threshold: float) -> List[Tuple[int, int]]:
    """Pairs (older id, newer id) whose masks overlap with IoU > or containment >= a threshold.

    Containment is the intersection over the smaller mask, so a mask swallowed by another
    counts as a duplicate (the reference merges when one covers >= 90 % of the other).
    """
    masks = np.asarray(masks, bool)
    k = len(ids)
    if k < 2:
        return []
    flat = masks.reshape(k, -1).astype(np.float32)
    inter = flat @ flat.T
    area = flat.sum(axis=1)
    union = area[:, None] + area[None, :] - inter
    pairs = []
    for i in range(k):
        for j in range(i + 1, k):
            if area[i] == 0 or area[j] == 0:
                continue
            iou = inter[i, j] / union[i, j]
            contain = inter[i, j] / min(area[i], area[j])
            if iou > iou_threshold or contain >= containment_threshold:
                a, b = int(ids[i]), int(ids[j])
                pairs.append((min(a, b), max(a, b)))
    return pairs


class PromptPlanner:
    """Stateful prompting decisions for a streaming SAM2 densifier (no model inside)."""

    def __init__(self, min_uncovered: int = 6, min_coverage: float = 0.7, min_tracks: int = 6,
                 grace_frames: int = 8, merge_iou: float = 0.9, merge_containment: float = 0.9,
                 merge_frames: int = 3, max_objects: int = 8, reprompt_interval: int = 8,
                 dilation: int = 4) -> None:
        """Every threshold of the reference's iterative prompting, adapted to a stream.

        ``min_uncovered``: uncovered dynamic tracks that trigger a new object (paper: 6).
        ``min_coverage``: re-prompt when a mask holds less than this fraction of its object's
        visible dynamic tracks (paper: 0.7). ``min_tracks``: dynamic tracks an object's mask
        must hold to be kept (paper: 6); below it for more than ``grace_frames`` frames drops it.
        ``merge_iou`` / ``merge_containment``: duplicate tests (paper: 0.9 / 0.9), which must
        hold for ``merge_frames`` consecutive frames. ``reprompt_interval``: frames between two
        prompts of the same object. ``dilation``: pixels by which masks are grown before
        deciding that a track is uncovered (the reference dilates before removing tracks).
        """
        self.min_uncovered = int(min_uncovered)
        self.min_coverage = float(min_coverage)
        self.min_tracks = int(min_tracks)
        self.grace_frames = int(grace_frames)
        self.merge_iou = float(merge_iou)
        self.merge_containment = float(merge_containment)
        self.merge_frames = int(merge_frames)
        self.max_objects = int(max_objects)
        self.reprompt_interval = int(reprompt_interval)
        self.dilation = int(dilation)
        self.validate()
        self.reset()

    def validate(self) -> None:
        """Raise ValueError for thresholds outside their meaningful ranges."""
        if self.min_uncovered < 1:
            raise ValueError('min_uncovered must be >= 1')
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError('min_coverage must be in [0, 1]')
        if self.min_tracks < 0 or self.grace_frames < 0 or self.merge_frames < 1:
            raise ValueError('min_tracks, grace_frames must be >= 0 and merge_frames >= 1')
        if not (0.0 < self.merge_iou <= 1.0 and 0.0 < self.merge_containment <= 1.0):
            raise ValueError('merge_iou and merge_containment must be in (0, 1]')
        if self.max_objects < 1 or self.reprompt_interval < 0 or self.dilation < 0:
            raise ValueError('max_objects must be >= 1; reprompt_interval, dilation >= 0')

    def reset(self) -> None:
        """Forget every object and track assignment."""
        self.owner: Dict[int, int] = {}           # track id -> object id
        self.low_streak: Dict[int, int] = {}      # object id -> frames below min_tracks
        self.dup_streak: Dict[Tuple[int, int], int] = {}
        self.last_prompt: Dict[int, int] = {}     # object id -> frame index of its last prompt

    def forget(self, object_ids: Sequence[int], into: Optional[int] = None) -> None:
        """Remove objects; their tracks go to ``into`` (a merge) or become unowned."""
        gone = {int(i) for i in object_ids}
        for tid, oid in list(self.owner.items()):
            if oid in gone:
                if into is None:
                    del self.owner[tid]
                else:
                    self.owner[tid] = int(into)
        for oid in gone:
            self.low_streak.pop(oid, None)
            self.last_prompt.pop(oid, None)
        self.dup_streak = {k: v for k, v in self.dup_streak.items()
                           if k[0] not in gone and k[1] not in gone}

    def register(self, object_id: int, frame_idx: int) -> None:
        """Note that ``object_id`` was prompted at ``frame_idx`` (new object or re-prompt)."""
        self.last_prompt[int(object_id)] = int(frame_idx)
        self.low_streak.setdefault(int(object_id), 0)

    # ------------------------------------------------------------------ before the model
    def plan(self, frame_idx: int, track_ids: np.ndarray, xy_now: np.ndarray,
             visible_now: np.ndarray, dynamic: np.ndarray, object_ids: Sequence[int],
             masks_prev: Optional[np.ndarray] = None, xy_prev: Optional[np.ndarray] = None,
             visible_prev: Optional[np.ndarray] = None, room: Optional[int] = None) -> Plan:
        """Decide the prompts for frame ``frame_idx`` from the previous frame's masks.

        ``masks_prev`` (K, H, W) are the masks of ``object_ids`` at the previous frame, where
        the tracks were at ``xy_prev``; without them (no objects yet) every visible dynamic
        track counts as uncovered. Prompt points are the tracks' current positions. ``room``
        caps new objects (default: ``max_objects - len(object_ids)``).
        """
        track_ids = np.asarray(track_ids, np.int64)
        xy_now = np.asarray(xy_now, np.float32).reshape(-1, 2)
        dyn_now = np.asarray(dynamic, bool) & np.asarray(visible_now, bool)
        dyn_now &= np.isfinite(xy_now).all(axis=1)
        object_ids = [int(i) for i in object_ids]
        plan = Plan()
        have_prev = (masks_prev is not None and len(object_ids) > 0 and xy_prev is not None)
        if have_prev:
            usable = dyn_now & np.asarray(visible_prev, bool)
            grown = dilate_masks(masks_prev, self.dilation)
            inside = points_in_masks(grown, xy_prev, usable)
        else:
            usable = dyn_now
            inside = np.zeros((0, track_ids.shape[0]), bool)
        live = set(object_ids)
        owners = np.array([self.owner.get(int(t), -1) for t in track_ids], np.int64)
        owned_live = np.isin(owners, list(live)) if live else np.zeros_like(usable)

        # re-prompts: an object's own visible dynamic tracks mostly outside its mask
        for k, oid in enumerate(object_ids if have_prev else []):
            mine = usable & (owners == oid)
            n_mine = int(mine.sum())
            if n_mine < max(self.min_tracks, 1):
                continue
            coverage = float((inside[k] & mine).sum()) / n_mine
            since = frame_idx - self.last_prompt.get(oid, -10**9)
            if coverage < self.min_coverage and since >= self.reprompt_interval:
                sel = np.flatnonzero(mine)
                pts = xy_now[sel]
                pick = sel[three_point_indices(pts)]
                plan.reprompt.append(Prompt(
                    object_id=oid, points=xy_now[pick].astype(np.float32),
                    labels=np.ones(pick.shape[0], np.int32), track_ids=track_ids[sel]))

        # a new object: enough dynamic tracks that no live object holds or owns
        room = self.max_objects - len(object_ids) if room is None else int(room)
        covered = inside.any(axis=0) if inside.shape[0] else np.zeros_like(usable)
        uncovered = usable & ~covered & ~owned_live
        if room > 0 and int(uncovered.sum()) >= self.min_uncovered:
            sel = np.flatnonzero(uncovered)
            pick = sel[central_point_index(xy_now[sel])]
            plan.new.append(Prompt(
                object_id=None, points=xy_now[pick][None].astype(np.float32),
                labels=np.ones(1, np.int32), track_ids=track_ids[sel]))
        return plan

    # ------------------------------------------------------------------ after the model
    def update(self, frame_idx: int, track_ids: np.ndarray, xy: np.ndarray,
               visible: np.ndarray, dynamic: np.ndarray, object_ids: Sequence[int],
               masks: np.ndarray) -> Update:
        """Assign tracks to the masks of frame ``frame_idx``; return counts, drops, merges."""
        track_ids = np.asarray(track_ids, np.int64)
        object_ids = [int(i) for i in object_ids]
        dyn = np.asarray(dynamic, bool) & np.asarray(visible, bool)
        inside = points_in_masks(masks, xy, dyn) if object_ids else np.zeros((0, len(dyn)), bool)
        present = set(int(t) for t in track_ids)
        self.owner = {t: o for t, o in self.owner.items() if t in present}
        # a dynamic track inside a mask belongs to the oldest object holding it
        for n in np.flatnonzero(inside.any(axis=0)):
            k = int(np.argmax(inside[:, n]))
            self.owner[int(track_ids[n])] = object_ids[k]
        counts = {oid: int(inside[k].sum()) for k, oid in enumerate(object_ids)}

        drop = []
        for oid in object_ids:
            if counts[oid] < self.min_tracks:
                self.low_streak[oid] = self.low_streak.get(oid, 0) + 1
            else:
                self.low_streak[oid] = 0
            if self.low_streak[oid] > self.grace_frames:
                drop.append(oid)

        merges = []
        pairs = set(duplicate_pairs(masks, object_ids, self.merge_iou, self.merge_containment)
                    ) if object_ids else set()
        self.dup_streak = {p: self.dup_streak.get(p, 0) + 1 for p in pairs}
        absorbed = set(drop)
        for (a, b), streak in sorted(self.dup_streak.items()):
            if streak >= self.merge_frames and a not in absorbed and b not in absorbed:
                merges.append((a, b))
                absorbed.add(b)
        return Update(counts=counts, drop=drop, merges=merges)
