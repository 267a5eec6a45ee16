"""GrabCut refinement of a flow mask, seeded by the object's tracks.

The flow mask is only a probable prior; the object's dynamic tracks are certain foreground and
static tracks inside the box certain background, which lets colour cut away what moves with
the object but is not it (shadows, trails). Each object's colour models are kept for the next
frame, so GrabCut need not start from a k-means initialisation every time.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Container, Dict, Optional, Tuple

import cv2
import numpy as np

from motionseg_ros.densifiers.flow_params import FlowParams
from motionseg_ros.types import mask_box


class GrabCutRefiner:
    """Refine masks by GrabCut in their padded box at about ``grabcut_side`` px."""

    def __init__(self, p: FlowParams, pool: Callable[[], ThreadPoolExecutor]) -> None:
        """``pool`` returns the helper threads a large crop's second half runs on."""
        self.p = p
        self._pool = pool
        #: (object id, part) -> GrabCut colour models (background, foreground) of its last
        #: refinement; part 0 is the whole crop, 1 and 2 the halves of a split one
        self.gmm: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    def keep_only(self, object_ids: Container[int]) -> None:
        """Forget the colour models of objects no longer present (bounded memory)."""
        self.gmm = {k: v for k, v in self.gmm.items() if k[0] in object_ids}

    def refine(self, image_small: np.ndarray, mask: np.ndarray, fg_pts: np.ndarray,
               bg_pts: np.ndarray, oid: int = -1, may_split: bool = True) -> np.ndarray:
        """Return ``mask`` refined in its box; ``may_split`` is False on a helper thread.

        (A split there could wait on a busy pool.)
        """
        p = self.p
        x0, y0, x1, y1 = mask_box(mask)
        h, w = mask.shape
        pw = max(4, int((x1 - x0) * p.grabcut_pad))
        ph = max(4, int((y1 - y0) * p.grabcut_pad))
        x0, y0 = max(0, x0 - pw), max(0, y0 - ph)
        x1, y1 = min(w, x1 + pw), min(h, y1 + ph)
        crop = image_small[y0:y1, x0:x1]
        m = mask[y0:y1, x0:x1]
        f = min(1.0, p.grabcut_side / max(crop.shape[:2]))
        if f < 1.0:
            size = (max(8, int(crop.shape[1] * f)), max(8, int(crop.shape[0] * f)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            m = cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        if m.sum() < 20 or (~m).sum() < 20:
            return mask
        gc = np.where(m, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        ch, cw = gc.shape

        def stamp(pts: np.ndarray, value: int, only: np.ndarray) -> int:
            q = np.round((pts - (x0, y0)) * f).astype(int)
            ok = (q[:, 0] >= 0) & (q[:, 0] < cw) & (q[:, 1] >= 0) & (q[:, 1] < ch)
            q = q[ok]
            q = q[only[q[:, 1], q[:, 0]]]
            for x, y in q:
                cv2.circle(gc, (int(x), int(y)), 1, value, -1)
            return len(q)

        grow = max(9, int(p.grow * min(ch, cw)) | 1)  # how far GrabCut may extend the mask
        far = cv2.dilate(m.astype(np.uint8), np.ones((grow, grow), np.uint8)) == 0
        gc[far] = cv2.GC_BGD
        n_fg = stamp(fg_pts, cv2.GC_FGD, m)
        stamp(bg_pts, cv2.GC_BGD, np.ones_like(m))
        if n_fg == 0:
            core = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            gc[core & (gc == cv2.GC_PR_FGD)] = cv2.GC_FGD
        if may_split and p.grabcut_split_px > 0 and ch * cw >= p.grabcut_split_px:
            gc = self._split(crop, gc, oid)
        else:
            gc = self._grabcut(crop, gc, (oid, 0))
        if gc is None:
            return mask
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.uint8)
        if f < 1.0:
            fg = cv2.resize(fg.astype(np.float32), (x1 - x0, y1 - y0),
                            interpolation=cv2.INTER_LINEAR) > 0.5  # smooth, not blocky
        out = mask.copy()
        out[y0:y1, x0:x1] = fg > 0
        return out

    def _grabcut(self, crop: np.ndarray, gc: np.ndarray, key: Tuple[int, int]
                 ) -> Optional[np.ndarray]:
        """One GrabCut on ``crop`` from labels ``gc`` (modified); None when it fails.

        With ``grabcut_reuse`` it starts from ``key``'s colour models of the last frame.
        """
        iters = self.p.grabcut_iters
        try:
            models = self.gmm.get(key) if self.p.grabcut_reuse else None
            if models is not None:  # last frame's colour models: no k-means initialisation
                bgd, fgd = models[0].copy(), models[1].copy()
                cv2.grabCut(crop, gc, None, bgd, fgd, iters, cv2.GC_EVAL)
            else:
                cv2.setRNGSeed(0)  # k-means draws from the calling thread's RNG: reproducible
                bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
                cv2.grabCut(crop, gc, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            self.gmm.pop(key, None)
            return None
        self.gmm[key] = (bgd, fgd)
        return gc

    def _split(self, crop: np.ndarray, gc: np.ndarray, oid: int) -> Optional[np.ndarray]:
        """Run GrabCut on a large crop as two overlapping halves on two cores.

        OpenCV's GrabCut is single-threaded and, for a large object, the longest step of a
        frame; the graph cut's decisions are local, so halves that overlap by
        ``grabcut_overlap`` px and keep their own colour models give nearly the same mask in
        half the wall time. A half that fails keeps its prior labels.
        """
        vertical = gc.shape[1] >= gc.shape[0]  # cut across the longer side
        if not vertical:
            crop, gc = crop.transpose(1, 0, 2), gc.T
        w = gc.shape[1]
        mid, ov = w // 2, min(self.p.grabcut_overlap, w // 4)

        def half(a: int, b: int) -> Tuple[np.ndarray, np.ndarray]:
            return np.ascontiguousarray(crop[:, a:b]), np.ascontiguousarray(gc[:, a:b])

        pending = self._pool().submit(self._grabcut, *half(mid - ov, w), (oid, 2))
        first = self._grabcut(*half(0, mid + ov), (oid, 1))
        second = pending.result()
        out = gc.copy()
        if first is not None:
            out[:, :mid] = first[:, :mid]
        if second is not None:
            out[:, mid:] = second[:, ov:]
        if first is None and second is None:
            return None
        return out if vertical else out.T
