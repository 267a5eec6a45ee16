"""Dense masks from optical flow against the background motion, seeded by dynamic tracks.

Per frame, at reduced resolution, in named steps: residual scoring of the dense flow
(:mod:`.flow_score`), region proposal by hysteresis and the tracks, holding silent objects on
their moved mask (:mod:`.flow_regions`), cleaning (closing, holes filled) and GrabCut
refinement in each mask's box (:mod:`.grabcut_refine`), upsampling. Parameters:
:class:`~motionseg_ros.densifiers.flow_params.FlowParams`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from motionseg_ros.densifiers.flow_params import RUNTIME, FlowParams
from motionseg_ros.densifiers.flow_regions import (HeldMasks, TracksAt, assign_regions,
                                                   candidate_regions, fill_holes, hold_silent,
                                                   warp_held)
from motionseg_ros.densifiers.flow_score import FlowScorer, Scored, track_homography
from motionseg_ros.densifiers.grabcut_refine import GrabCutRefiner
from motionseg_ros.registry import BackendError, register
from motionseg_ros.stages import Densifier, StageContext
from motionseg_ros.types import Frame, ObjectMask, TrackWindow, mask_box

#: what a prefetch leaves for ``densify``: grey image, score (None: redo), (flow_b, flow_f)
Prefetched = Tuple[np.ndarray, Optional[Scored], Tuple[np.ndarray, np.ndarray]]


@register('densifier', 'flow')
class FlowDensifier(Densifier):
    """DIS-flow residual masks selected by the dynamic tracks."""

    runtime_params = RUNTIME

    def __init__(self, params: Optional[FlowParams] = None, **overrides: Any) -> None:
        """Configure from ``params`` or from config keywords (the fields of FlowParams)."""
        try:
            if params is None:
                params = FlowParams.from_mapping(overrides)
            elif overrides:
                params = FlowParams.from_mapping({**params.as_dict(), **overrides})
        except ValueError as exc:  # a config error: the CLI and the node report it as such
            raise BackendError(str(exc)) from exc
        self.params = params
        self.scorer = FlowScorer(params)
        self.refiner = GrabCutRefiner(params, self._helper)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Tuple[Frame, Future]] = None
        self.reset()

    # ------------------------------------------------------------------ control
    def get_params(self) -> Dict[str, Any]:
        """Return the run-time parameters' current values."""
        return {s.name: getattr(self.params, s.name) for s in self.runtime_params}

    def apply_params(self, values: Dict[str, Any]) -> None:
        """Apply validated values; the scorer and the refiner read them on the next frame."""
        self._drop_pending()  # a prefetch in flight keeps the values it started with
        for key, value in values.items():
            setattr(self.params, key, value)

    def close(self) -> None:
        """Stop the helper threads (they restart on the next frame if there is one)."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def reset(self) -> None:
        """Forget the previous frame, score and masks."""
        self._drop_pending()
        self.scorer.reset()
        self._masks: HeldMasks = {}
        self._size: Optional[Tuple[int, int]] = None
        self.refiner.gmm = {}

    def _helper(self) -> ThreadPoolExecutor:
        # two workers: a prefetch job may itself hand one flow to the other worker
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix='dis')
        return self._pool

    # ------------------------------------------------------------------ step 1: flow and score
    def prepare(self, frame: Frame, ctx: Optional[StageContext] = None) -> None:
        """Start this frame's flows and score on the helper threads.

        They need only the image and the previous frame, so they run while the tracker and
        the classifier work on the main thread; ``densify`` picks the result up (or computes
        it itself when ``prepare`` was not called for that frame).
        """
        self._drop_pending()
        if self.scorer.prev_gray is None or (self._size is not None
                                             and frame.size != self._size):
            return
        self._pending = (frame, self._helper().submit(self._prefetch, frame.image))

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[1].result()  # never leave a job touching the state behind
            self._pending = None

    def _prefetch(self, image: np.ndarray) -> Prefetched:
        gray = self.scorer.small(image)
        flow_b, flow_f = self.scorer.flows(gray, self._helper())
        # the dense background fit needs no input from the tracks; when it fails the score
        # is redone on the main thread with the classifier's homography
        score = self.scorer.score(flow_b, flow_f, None, self._held()) \
            if self.params.dense_homography else None
        return gray, score, (flow_b, flow_f)

    def _held(self) -> List[np.ndarray]:
        return [m for m, _, _ in self._masks.values()]

    def _flow_and_score(self, frame: Frame, window: TrackWindow, dynamic: np.ndarray,
                        ctx: StageContext) -> Optional[Tuple[np.ndarray, Scored, np.ndarray]]:
        """Return (grey image, scored, forward flow) of ``frame``; None on a first frame."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is frame:
            gray, scored, (flow_b, flow_f) = pending[1].result()
        else:
            if pending is not None:
                pending[1].result()
            if self.scorer.prev_gray is None:
                self.scorer.prev_gray = self.scorer.small(frame.image)
                return None
            gray, scored, (flow_b, flow_f) = self._prefetch(frame.image)
        if scored is None:  # the tracks' homography only when the dense fit gave none
            scored = self.scorer.score(flow_b, flow_f, track_homography(window, dynamic, ctx),
                                       self._held(), final=True)
        self.scorer.prev_gray = gray
        self.scorer.prev_score = scored[0]
        return gray, scored, flow_f

    # ------------------------------------------------------------------ densify
    def densify(self, frame: Frame, window: TrackWindow, dynamic: np.ndarray,
                object_ids: np.ndarray, prob: np.ndarray, ctx: StageContext
                ) -> List[ObjectMask]:
        """Return one mask per object in ``frame``."""
        if self._size is not None and frame.size != self._size:
            self.reset()
        self._size = frame.size
        step = self._flow_and_score(frame, window, dynamic, ctx)
        if step is None:
            return []
        gray, (score, _, _), flow_f = step
        p = self.params
        tracks = TracksAt.of(window, dynamic, object_ids, p.scale, gray.shape)
        labels, seeded = candidate_regions(score, p)
        warped = warp_held(self._masks, flow_f)
        assigned, scores = assign_regions(labels, seeded, score, tracks, warped, prob,
                                          self._masks, p)
        new_masks = hold_silent(warped, self._masks, tracks.live_objects(), assigned, scores, p)
        cleaned = self._clean_and_refine(frame, gray.shape, assigned, new_masks, tracks, prob)
        out = self._upsample(frame, cleaned, new_masks, scores, tracks)
        self._masks = new_masks  # only objects present now: bounded memory
        self.refiner.keep_only(new_masks)
        return out

    def _clean_and_refine(self, frame: Frame, shape: Tuple[int, int],
                          assigned: Dict[int, np.ndarray], held: HeldMasks, t: TracksAt,
                          prob: np.ndarray) -> Dict[int, Union[np.ndarray, Future]]:
        """Close and fill each mask; refine the new ones by GrabCut (every other on a helper)."""
        p = self.params
        hs, ws = shape
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (p.close_px, p.close_px))
        cleaned: Dict[int, Union[np.ndarray, Future]] = {}
        image_small = None
        pts = np.stack([t.tx, t.ty], 1)
        bg_pts = pts[t.vis & ~t.dyn & (prob < p.bg_prob)]
        for n, (oid, m) in enumerate(assigned.items()):
            m8 = fill_holes(cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, kernel))
            cleaned[oid] = m8 > 0
            if oid not in held and p.grabcut:
                if image_small is None:
                    image_small = cv2.resize(frame.image, (ws, hs), interpolation=cv2.INTER_AREA)
                args = (image_small, cleaned[oid], pts[t.dyn & (t.obj == oid)], bg_pts, oid)
                if n % 2 == 1:  # objects are independent: every other one on the helper core
                    cleaned[oid] = self._helper().submit(self.refiner.refine, *args, False)
                else:
                    cleaned[oid] = self.refiner.refine(*args)
        return cleaned

    def _upsample(self, frame: Frame, cleaned: Dict[int, Union[np.ndarray, Future]],
                  new_masks: HeldMasks, scores: Dict[int, float], t: TracksAt
                  ) -> List[ObjectMask]:
        """Return full-resolution masks; record the refined ones in ``new_masks``."""
        out: List[ObjectMask] = []
        for oid, m_small in cleaned.items():
            if not isinstance(m_small, np.ndarray):
                m_small = m_small.result()
            if oid not in new_masks:
                new_masks[oid] = (m_small, 0, scores.get(oid, 0.5))
            soft = m_small.astype(np.float32)
            if self.params.smooth_px > 0:  # smooth contour before upsampling: no staircases
                soft = cv2.GaussianBlur(soft, (0, 0), self.params.smooth_px)
            full = cv2.resize(soft, (frame.size[1], frame.size[0]),
                              interpolation=cv2.INTER_LINEAR) > 0.5
            if not full.any():
                continue
            n_dyn = int(np.count_nonzero(t.dyn & (t.obj == oid)))
            out.append(ObjectMask(id=int(oid), label=0, mask=full, score=scores.get(oid, 0.5),
                                  box=mask_box(full), num_dynamic_tracks=n_dyn))
        return out
