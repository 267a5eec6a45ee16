"""A learned densifier: a small U-Net predicts the moving foreground, the tracks name objects.

Per frame, at quarter resolution: the inputs of :mod:`.mask_head_inputs` (colour, residual
flow against the background homography, forward-backward error, the classifier's track
probabilities splatted, the previous mask warped by the flow), the net's foreground
probability, bilinearly upsampled to the input size and thresholded. Connected components
become objects: the grouping id most of the dynamic tracks inside carry, else the id the
previous frame's label map (warped by the flow) has there, else the nearest dynamic track's id,
else a new id (>= 2**30, never one of grouping's). The warped previous mask is an input, so an
object pausing for a few frames keeps its mask. Weights: ``builtin:mask_head``, trained on
DAVIS-2016 train (see ``motionseg_ros/weights/mask_head.md``; DAVIS is CC BY-NC 4.0).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from motionseg_ros.densifiers.mask_head_inputs import (CHANNELS, InputBuilder, Motion,
                                                       warp_previous)
from motionseg_ros.registry import BackendError, register
from motionseg_ros.runtime_params import table
from motionseg_ros.stages import Densifier, StageContext
from motionseg_ros.types import Frame, ObjectMask, TrackWindow, mask_box

#: ids of objects no grouping id explains start here (grouping's ids stay far below)
NEW_ID_BASE = 2 ** 30
#: a component with no track inside takes the nearest dynamic track's id within this
#: fraction of the image diagonal
NEAREST_TRACK_FRAC = 0.05


@register('densifier', 'mask_head')
class MaskHeadDensifier(Densifier):
    """Foreground from a learned mask head, split into objects by the grouping ids."""

    runtime_params = table("""
threshold  float 0..1    Foreground probability above which a pixel is part of an object.
min_area   float 0..0.5  Smallest object, as a fraction of the image.
""")  # the weights, the scale and the threads are fixed once built

    def __init__(self, weights: str = 'builtin:mask_head', threshold: Optional[float] = None,
                 min_area: float = 0.0005, threads: int = 2, scale: float = 0.25) -> None:
        """Load the weights strictly (WeightsError naming the file when they do not fit).

        ``threshold``: None takes the one stored in the checkpoint (chosen on DAVIS-2016
        train); ``threads``: 1 or 2, the two flows in parallel and torch's threads (never more
        than torch already uses); ``scale``: input resolution (the net was trained at 0.25).
        """
        if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
            raise BackendError(f'densifier mask_head: threshold must be in [0, 1], got '
                               f'{threshold!r}')
        if not 0.0 <= float(min_area) <= 0.5:
            raise BackendError(f'densifier mask_head: min_area must be in [0, 0.5], got '
                               f'{min_area!r}')
        if int(threads) not in (1, 2):
            raise BackendError(f'densifier mask_head: threads must be 1 or 2, got {threads!r}')
        if not 0.05 <= float(scale) <= 1.0:
            raise BackendError(f'densifier mask_head: scale must be in [0.05, 1], got {scale!r}')
        self.weights = str(weights)
        self.min_area = float(min_area)
        self.threads = int(threads)
        self.builder = InputBuilder(float(scale))
        self.model, stored, self.meta = self._load(self.weights)
        self.threshold = float(stored if threshold is None else threshold)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending: Optional[Tuple[Frame, Future]] = None
        self.reset()

    def _load(self, weights: str) -> Tuple[Any, float, Dict[str, Any]]:
        """Resolve and load the net; torch is imported only by this backend."""
        import torch

        from motionseg_ros.models.mask_head import load_mask_head
        from motionseg_ros.weights import resolve_weights
        self._torch = torch
        if torch.get_num_threads() > self.threads:
            torch.set_num_threads(self.threads)
        path = resolve_weights(weights, 'densifier mask_head', kind='file')
        return load_mask_head(path, CHANNELS)

    # ------------------------------------------------------------------ control
    def reset(self) -> None:
        """Forget the previous frame, its label map and the new-id counter."""
        self._drop_pending()
        self.builder.reset()
        self._prev_labels: Optional[np.ndarray] = None   # (h, w) int64 object ids, 0 = none
        self._size: Optional[Tuple[int, int]] = None
        self._next_id = NEW_ID_BASE

    def close(self) -> None:
        """Stop the helper threads (restarted on the next frame if there is one)."""
        self._drop_pending()
        self.builder.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _drop_pending(self) -> None:
        pending = getattr(self, '_pending', None)
        if pending is not None:
            pending[1].result()  # never leave a job touching the state behind
        self._pending = None

    def _held(self) -> List[np.ndarray]:
        return [] if self._prev_labels is None else [self._prev_labels > 0]

    # ------------------------------------------------------------------ step 1: flow
    def prepare(self, frame: Frame, ctx: Optional[StageContext] = None) -> None:
        """Start this frame's flows, background fit and residual on a helper thread."""
        self._drop_pending()
        if self.builder.prev_gray is None or (self._size is not None
                                              and frame.size != self._size):
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix='mask-head')
        self._pending = (frame, self._pool.submit(self.builder.motion, frame.image,
                                                  self._held(), self.threads))

    def _motion(self, frame: Frame) -> Optional[Motion]:
        """Return this frame's motion channels (None on a first frame); commit the frame."""
        if self._size is not None and frame.size != self._size:
            self.reset()
        self._size = frame.size
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is frame:
            motion = pending[1].result()
        else:
            if pending is not None:
                pending[1].result()
            motion = self.builder.motion(frame.image, self._held(), self.threads)
        if motion is None:
            self.builder.commit(frame.image)
            self._prev_labels = None
        else:
            self.builder.commit(motion)
        return motion

    def inputs(self, frame: Frame, window: TrackWindow, prob: np.ndarray
               ) -> Optional[Tuple[np.ndarray, Motion]]:
        """Return (the CHANNELS x h x w input, motion) of ``frame``; None on a first frame."""
        motion = self._motion(frame)
        if motion is None:
            return None
        tracks = self.builder.track_channels(window, prob, motion.gray.shape)
        prev = None if self._prev_labels is None else (self._prev_labels > 0)
        return self.builder.assemble(motion, tracks, warp_previous(prev, motion)), motion

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return the (h, w) foreground probability of input ``x``."""
        torch = self._torch
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(x))[None])
        return torch.sigmoid(logits)[0, 0].numpy()

    # ------------------------------------------------------------------ densify
    def densify(self, frame: Frame, window: TrackWindow, dynamic: np.ndarray,
                object_ids: np.ndarray, prob: np.ndarray, ctx: StageContext
                ) -> List[ObjectMask]:
        """Return one mask per object in ``frame``."""
        step = self.inputs(frame, window, prob)
        if step is None:
            return []
        x, motion = step
        p_small = self.predict(x)
        h, w = frame.size
        full = cv2.resize(p_small, (w, h), interpolation=cv2.INTER_LINEAR)
        return self.objects(full, motion, window, dynamic, object_ids)

    def objects(self, full: np.ndarray, motion: Motion, window: TrackWindow,
                dynamic: np.ndarray, object_ids: np.ndarray) -> List[ObjectMask]:
        """Split the full-resolution probability into objects; remember their label map."""
        h, w = full.shape
        fg = (full >= self.threshold).astype(np.uint8)
        n, comp, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        min_px = self.min_area * h * w
        keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= max(1.0, min_px)]
        hs, ws = motion.gray.shape
        rows = np.minimum(((np.arange(hs) + 0.5) * h / hs).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(ws) + 0.5) * w / ws).astype(np.int64), w - 1)
        if not keep:
            self._prev_labels = np.zeros((hs, ws), np.int64)
            return []
        # the dynamic tracks with an object id, in the newest frame
        sel = np.zeros(window.num_tracks, bool)
        if window.num_tracks and window.num_frames:
            sel = window.visible[:, -1] & np.asarray(dynamic, bool) & \
                (np.asarray(object_ids) >= 0)
        txy = window.xy[sel, -1] if sel.any() else np.zeros((0, 2), np.float32)
        tid = np.asarray(object_ids, np.int64)[sel]
        tx = np.clip(np.round(txy[:, 0]).astype(np.int64), 0, w - 1)
        ty = np.clip(np.round(txy[:, 1]).astype(np.int64), 0, h - 1)
        t_comp = comp[ty, tx]
        prev_full = None
        if self._prev_labels is not None and self._prev_labels.any():
            # ids can exceed float32's exact integers: warp compact indices, map them back
            uniq, compact = np.unique(self._prev_labels, return_inverse=True)
            warped = cv2.remap(compact.reshape(hs, ws).astype(np.float32), motion.map_x,
                               motion.map_y, cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            idx = cv2.resize(warped, (w, h), interpolation=cv2.INTER_NEAREST)
            prev_full = uniq[idx.astype(np.int64)]  # uniq[0] is 0 (background) when present
            if uniq[0] != 0:
                prev_full[idx == 0] = 0
        reach = NEAREST_TRACK_FRAC * float(np.hypot(h, w))
        owner: Dict[int, int] = {}
        for k in keep:
            inside = tid[t_comp == k]
            if inside.size:
                owner[k] = Counter(inside.tolist()).most_common(1)[0][0]
                continue
            x0, y0, bw, bh = stats[k, :4]
            box = comp[y0:y0 + bh, x0:x0 + bw] == k
            if prev_full is not None:
                prev_ids = prev_full[y0:y0 + bh, x0:x0 + bw][box]
                prev_ids = prev_ids[prev_ids > 0]
                if prev_ids.size:
                    owner[k] = int(Counter(prev_ids.tolist()).most_common(1)[0][0])
                    continue
            if tid.size:
                cy, cx = np.nonzero(box)
                step = max(1, cy.size // 256)  # a few hundred of its pixels are enough
                cy, cx = cy[::step], cx[::step]
                d = np.hypot(txy[:, 0, None] - (cx + x0)[None], txy[:, 1, None] - (cy + y0)[None])
                nearest = d.min(axis=1)
                j = int(np.argmin(nearest))
                if nearest[j] <= reach:
                    owner[k] = int(tid[j])
                    continue
            owner[k] = self._next_id
            self._next_id += 1
        lut = np.zeros(n, np.int64)
        for k, oid in owner.items():
            lut[k] = oid
        ids_full = lut[comp]
        self._prev_labels = ids_full[rows[:, None], cols[None, :]]
        out: List[ObjectMask] = []
        for oid in sorted(set(owner.values())):
            mask = ids_full == oid
            n_dyn = int(np.count_nonzero(tid == oid))
            out.append(ObjectMask(id=int(oid), label=0, mask=mask, score=float(full[mask].mean()),
                                  box=mask_box(mask), num_dynamic_tracks=n_dyn))
        return out
