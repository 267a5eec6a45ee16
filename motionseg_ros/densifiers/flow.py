"""Dense masks from optical flow against the background motion, seeded by dynamic tracks.

Per frame, at reduced resolution: DIS flow current->previous and previous->current; the
residual of that flow against the background homography (the classifier's, or one fitted here
on static tracks) in units of a robust noise scale (median / MAD); zero where the
forward-backward check fails (occlusion trails); smoothed over time with the previous score
warped by the flow; hysteresis thresholds give candidate regions. The tracks decide which
regions are objects: a region is kept when it holds dynamic tracks (it takes their object id)
or continues a previous object's mask. An object whose tracks are still dynamic but that no
longer produces residual (it stopped) keeps its previous mask, warped by the flow, for a while.
Masks are cleaned (closing, holes filled) and optionally refined by GrabCut in their box.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from motionseg_ros.registry import register
from motionseg_ros.stages import Densifier, StageContext
from motionseg_ros.types import Frame, ObjectMask, TrackWindow, mask_box

_PRESETS = {'ultrafast': cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            'fast': cv2.DISOPTICAL_FLOW_PRESET_FAST,
            'medium': cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def _fill_holes(mask: np.ndarray) -> np.ndarray:
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


@register('densifier', 'flow')
class FlowDensifier(Densifier):
    """DIS-flow residual masks selected by the dynamic tracks."""

    def __init__(self, scale: float = 0.5, preset: str = 'medium', noise_floor_px: float = 1.5,
                 high: float = 3.0, low: float = 1.5, temporal: float = 0.5,
                 fb_abs_px: float = 1.0, fb_rel: float = 0.1, z_cap: float = 10.0,
                 hold_frames: int = 20, min_area: float = 0.0005, static_ratio: float = 0.5,
                 continue_overlap: float = 0.3, grabcut: bool = True,
                 grabcut_side: int = 220, grabcut_iters: int = 1, close_px: int = 5,
                 relative_keep: float = 0.4, hold_lost: int = 10,
                 min_region_tracks: int = 2, dense_homography: bool = True,
                 bg_prob: float = 0.2, grow: float = 0.25, smooth_px: float = 1.0,
                 grabcut_reuse: bool = True, refine_iters: int = -1,
                 fb_refine_iters: int = -1, grabcut_pad: float = 0.25,
                 grabcut_split_px: int = 0, grabcut_overlap: int = 16) -> None:
        """Configure.

        ``scale``: flow resolution; ``preset``: DIS preset; ``noise_floor_px``: least noise
        scale (input px); ``high``/``low``: hysteresis on the score; ``temporal``: weight of
        the warped previous score; ``fb_abs_px``/``fb_rel``: forward-backward tolerance;
        ``hold_frames``: how long a silent object keeps its moved mask while its tracks are
        still dynamic (``hold_lost`` once they are gone); ``min_area``: least
        region area (fraction of the frame); ``static_ratio``: a region is rejected when its
        static tracks outnumber its dynamic ones by more than 1/ratio; ``continue_overlap``:
        overlap with a previous mask that keeps a region without dynamic tracks;
        ``grabcut``: refine each mask by GrabCut with its box scaled to ``grabcut_side`` px;
        ``relative_keep``: drop regions whose mean score is below this fraction of the best;
        ``min_region_tracks``: dynamic tracks a region needs to start an object (fewer: it
        must continue a previous mask); ``dense_homography``: fit the background on the
        dense flow (area-weighted) instead of taking the tracks' homography; ``bg_prob``: static
        tracks below this probability are certain background for GrabCut; ``grow``: how far
        (fraction of the box) GrabCut may extend a mask; ``smooth_px``: Gaussian smoothing of
        the mask contour (flow pixels) before upsampling; ``grabcut_reuse``: start GrabCut from
        the object's colour models of the previous frame instead of a k-means initialisation;
        ``refine_iters``/``fb_refine_iters``: DIS variational refinement iterations of the
        current->previous flow / of the previous->current flow (only used for the
        forward-backward check and to move held masks); -1 keeps the preset's;
        ``grabcut_pad``: margin around the mask's box given to GrabCut (fraction of the box);
        ``grabcut_split_px``: GrabCut crops of at least this many pixels run as two
        overlapping halves (``grabcut_overlap`` px) on two cores (0: never).
        """
        if preset not in _PRESETS:
            raise ValueError(f'flow: preset must be one of {sorted(_PRESETS)}')
        if not 0.1 <= float(scale) <= 1.0:
            raise ValueError('flow: scale must be in [0.1, 1]')
        self.scale = float(scale)
        self.preset = preset
        self.noise_floor_px = float(noise_floor_px)
        self.high = float(high)
        self.low = float(low)
        self.temporal = float(temporal)
        self.fb_abs_px = float(fb_abs_px)
        self.fb_rel = float(fb_rel)
        self.z_cap = float(z_cap)
        self.hold_frames = int(hold_frames)
        self.min_area = float(min_area)
        self.static_ratio = float(static_ratio)
        self.continue_overlap = float(continue_overlap)
        self.grabcut = bool(grabcut)
        self.grabcut_side = int(grabcut_side)
        self.grabcut_iters = int(grabcut_iters)
        self.close_px = int(close_px)
        self.relative_keep = float(relative_keep)
        self.hold_lost = int(hold_lost)
        self.min_region_tracks = int(min_region_tracks)
        self.dense_homography = bool(dense_homography)
        self.bg_prob = float(bg_prob)
        self.grow = float(grow)
        self.smooth_px = float(smooth_px)
        self.grabcut_reuse = bool(grabcut_reuse)
        self.grabcut_pad = float(grabcut_pad)
        self.grabcut_split_px = int(grabcut_split_px)
        self.grabcut_overlap = int(grabcut_overlap)
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[preset])
        self._dis_f = cv2.DISOpticalFlow_create(_PRESETS[preset])
        if int(refine_iters) >= 0:
            self._dis.setVariationalRefinementIterations(int(refine_iters))
            self._dis_f.setVariationalRefinementIterations(int(refine_iters))
        if int(fb_refine_iters) >= 0:
            self._dis_f.setVariationalRefinementIterations(int(fb_refine_iters))
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pending = None
        self.reset()

    def close(self) -> None:
        """Stop the helper threads (they restart on the next frame if there is one)."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def reset(self) -> None:
        """Forget the previous frame, score and masks."""
        self._drop_pending()
        self._prev_gray: Optional[np.ndarray] = None
        self._prev_score: Optional[np.ndarray] = None
        #: object id -> (small-resolution mask, frames since it was last supported, score)
        self._masks: Dict[int, Tuple[np.ndarray, int, float]] = {}
        self._size: Optional[Tuple[int, int]] = None
        self._grid: Optional[Tuple[np.ndarray, np.ndarray]] = None
        #: (object id, part) -> GrabCut colour models (background, foreground) of its last
        #: refinement; part 0 is the whole crop, 1 and 2 the halves of a split one
        self._gmm: Dict[Tuple[int, int], Tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ helpers
    def _small(self, image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if self.scale == 1.0:
            return gray
        h, w = gray.shape
        return cv2.resize(gray, (int(round(w * self.scale)), int(round(h * self.scale))),
                          interpolation=cv2.INTER_AREA)

    def _homography(self, window: TrackWindow, dynamic: np.ndarray, ctx: StageContext
                    ) -> Optional[np.ndarray]:
        """Background prev->cur homography in input px: the classifier's or a fit here."""
        if ctx.background_homography is not None:
            return np.asarray(ctx.background_homography, np.float64)
        if window.num_frames < 2:
            return None
        ok = window.visible[:, -1] & window.visible[:, -2] & ~np.asarray(dynamic, bool)
        if ok.sum() < 8:
            return None
        try:
            h, _ = cv2.findHomography(window.xy[ok, -2].astype(np.float64),
                                      window.xy[ok, -1].astype(np.float64), cv2.USAC_MAGSAC,
                                      2.0)
        except cv2.error:
            return None
        return h

    def _helper(self) -> ThreadPoolExecutor:
        # two workers: a prefetch job may itself hand one flow to the other worker
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix='dis')
        return self._pool

    def prepare(self, frame: Frame, ctx: Optional[StageContext] = None) -> None:
        """Start this frame's flows and score on the helper threads.

        They need only the image and the previous frame, so they run while the tracker and
        the classifier work on the main thread; ``densify`` picks the result up (or computes
        it itself when ``prepare`` was not called for that frame).
        """
        self._drop_pending()
        if self._prev_gray is None or (self._size is not None and frame.size != self._size):
            return
        self._pending = (frame, self._helper().submit(self._prefetch, frame.image))

    def _drop_pending(self) -> None:
        if self._pending is not None:
            self._pending[1].result()  # never leave a job touching the state behind
            self._pending = None

    def _prefetch(self, image: np.ndarray
                  ) -> Tuple[np.ndarray, Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]],
                             Tuple[np.ndarray, np.ndarray]]:
        gray = self._small(image)
        flow_b, flow_f = self._flows(gray)
        # the dense background fit needs no input from the tracks; when it fails the score
        # is redone on the main thread with the classifier's homography
        score = self._score(flow_b, flow_f, None) if self.dense_homography else None
        return gray, score, (flow_b, flow_f)

    def _flows(self, gray: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Return DIS flows current->previous and previous->current (on two threads)."""
        fut = self._helper().submit(self._dis_f.calc, self._prev_gray, gray, None)
        flow_b = self._dis.calc(gray, self._prev_gray, None)
        return flow_b, fut.result()

    def _score(self, flow_b: np.ndarray, flow_f: np.ndarray, h_in: Optional[np.ndarray],
               final: bool = False) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Return (smoothed score, backward map x, backward map y) at flow resolution.

        Not ``final`` (a prefetch, before the tracks' homography ``h_in`` is known): None when
        the dense fit fails, so that the caller retries with ``h_in``.
        """
        hs, ws = flow_b.shape[:2]
        if self._grid is None or self._grid[0].shape != (hs, ws):
            self._grid = np.meshgrid(np.arange(ws, dtype=np.float32),
                                     np.arange(hs, dtype=np.float32))
        gx, gy = self._grid
        map_x = gx + flow_b[..., 0]
        map_y = gy + flow_b[..., 1]
        # forward-backward consistency: where the previous pixel's forward flow comes back
        ff = cv2.remap(flow_f, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fb = np.hypot(flow_b[..., 0] + ff[..., 0], flow_b[..., 1] + ff[..., 1])
        mag = np.hypot(flow_b[..., 0], flow_b[..., 1])
        consistent = fb < (self.fb_abs_px * self.scale + self.fb_rel * mag)
        s = self.scale
        if h_in is not None:
            sm = np.diag([s, s, 1.0])
            try:
                h_inv = sm @ np.linalg.inv(h_in) @ np.linalg.inv(sm)
            except np.linalg.LinAlgError:
                h_inv = None
        else:
            h_inv = None
        if self.dense_homography:
            h_dense = self._dense_fit(gx, gy, map_x, map_y, consistent, None)
            if h_dense is None and h_in is None and not final:
                return None
            h_inv = h_dense if h_dense is not None else h_inv
        if h_inv is not None:
            den = h_inv[2, 0] * gx + h_inv[2, 1] * gy + h_inv[2, 2]
            den = np.where(np.abs(den) < 1e-9, 1e-9, den)
            px = (h_inv[0, 0] * gx + h_inv[0, 1] * gy + h_inv[0, 2]) / den
            py = (h_inv[1, 0] * gx + h_inv[1, 1] * gy + h_inv[1, 2]) / den
            res = np.hypot(map_x - px, map_y - py) / s
        else:  # no background model: residual against the median flow (translation)
            mx = np.median(flow_b[::4, ::4, 0])
            my = np.median(flow_b[::4, ::4, 1])
            res = np.hypot(flow_b[..., 0] - mx, flow_b[..., 1] - my) / s
        sample = res[::3, ::3]
        med = float(np.median(sample))
        mad = float(np.median(np.abs(sample - med)))
        sigma = max(self.noise_floor_px, 1.4826 * mad)
        z = np.clip((res - med) / sigma, 0.0, self.z_cap).astype(np.float32)
        z[~consistent] = 0.0
        inside = (map_x >= 0) & (map_x <= ws - 1) & (map_y >= 0) & (map_y <= hs - 1)
        if self._prev_score is not None and self.temporal > 0:
            prev = cv2.remap(self._prev_score, map_x, map_y, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            z = np.where(inside, (1 - self.temporal) * z + self.temporal * prev, z)
        return z.astype(np.float32), map_x, map_y

    def _dense_fit(self, gx: np.ndarray, gy: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
                   consistent: np.ndarray, fallback: Optional[np.ndarray]
                   ) -> Optional[np.ndarray]:
        """Fit the current->previous background homography on a grid of the dense flow.

        Sampling the image uniformly weights background surfaces by their area (a road, a
        wall), where tracks favour textured structures; pixels of the previous masks and
        inconsistent flow are left out.
        """
        hs, ws = gx.shape
        step = max(2, int(min(hs, ws) / 30))
        sel = consistent[::step, ::step].copy()
        for m, _, _ in self._masks.values():
            sel &= ~m[::step, ::step]
        if sel.sum() < 50:
            return fallback
        src = np.stack([gx[::step, ::step][sel], gy[::step, ::step][sel]], 1)
        dst = np.stack([map_x[::step, ::step][sel], map_y[::step, ::step][sel]], 1)
        try:
            h, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64),
                                      cv2.USAC_MAGSAC, 1.0, maxIters=300, confidence=0.99)
        except cv2.error:
            return fallback
        return h if h is not None else fallback

    def _refine(self, image_small: np.ndarray, mask: np.ndarray, fg_pts: np.ndarray,
                bg_pts: np.ndarray, oid: int = -1, may_split: bool = True) -> np.ndarray:
        """Refine by GrabCut in the mask's (padded) box at about ``grabcut_side`` px.

        The flow mask is only a probable prior; the object's dynamic tracks are certain
        foreground and static tracks inside the box certain background, which lets colour
        cut away what moves with the object but is not it (shadows, trails). ``may_split``
        is False on a helper thread (a split there could wait on a busy pool).
        """
        x0, y0, x1, y1 = mask_box(mask)
        h, w = mask.shape
        pw = max(4, int((x1 - x0) * self.grabcut_pad))
        ph = max(4, int((y1 - y0) * self.grabcut_pad))
        x0, y0 = max(0, x0 - pw), max(0, y0 - ph)
        x1, y1 = min(w, x1 + pw), min(h, y1 + ph)
        crop = image_small[y0:y1, x0:x1]
        m = mask[y0:y1, x0:x1]
        f = min(1.0, self.grabcut_side / max(crop.shape[:2]))
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

        grow = max(9, int(self.grow * min(ch, cw)) | 1)  # how far GrabCut may extend the mask
        far = cv2.dilate(m.astype(np.uint8), np.ones((grow, grow), np.uint8)) == 0
        gc[far] = cv2.GC_BGD
        n_fg = stamp(fg_pts, cv2.GC_FGD, m)
        stamp(bg_pts, cv2.GC_BGD, np.ones_like(m))
        if n_fg == 0:
            core = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            gc[core & (gc == cv2.GC_PR_FGD)] = cv2.GC_FGD
        if may_split and self.grabcut_split_px > 0 and ch * cw >= self.grabcut_split_px:
            gc = self._grabcut_split(crop, gc, oid)
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
        try:
            models = self._gmm.get(key) if self.grabcut_reuse else None
            if models is not None:  # last frame's colour models: no k-means initialisation
                bgd, fgd = models[0].copy(), models[1].copy()
                cv2.grabCut(crop, gc, None, bgd, fgd, self.grabcut_iters, cv2.GC_EVAL)
            else:
                cv2.setRNGSeed(0)  # k-means draws from the calling thread's RNG: reproducible
                bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
                cv2.grabCut(crop, gc, None, bgd, fgd, self.grabcut_iters,
                            cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            self._gmm.pop(key, None)
            return None
        self._gmm[key] = (bgd, fgd)
        return gc

    def _grabcut_split(self, crop: np.ndarray, gc: np.ndarray, oid: int
                       ) -> Optional[np.ndarray]:
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
        mid, ov = w // 2, min(self.grabcut_overlap, w // 4)

        def half(a: int, b: int) -> Tuple[np.ndarray, np.ndarray]:
            return np.ascontiguousarray(crop[:, a:b]), np.ascontiguousarray(gc[:, a:b])

        pending = self._helper().submit(self._grabcut, *half(mid - ov, w), (oid, 2))
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

    # ------------------------------------------------------------------ densify
    def densify(self, frame: Frame, window: TrackWindow, dynamic: np.ndarray,
                object_ids: np.ndarray, prob: np.ndarray, ctx: StageContext
                ) -> List[ObjectMask]:
        """Return one mask per object in ``frame``."""
        if self._size is not None and frame.size != self._size:
            self.reset()
        self._size = frame.size
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is frame:
            gray, scored, (flow_b, flow_f) = pending[1].result()
        else:
            if pending is not None:
                pending[1].result()
            gray = self._small(frame.image)
            if self._prev_gray is None:
                self._prev_gray = gray
                return []
            flow_b, flow_f = self._flows(gray)
            scored = None
        if scored is None:
            scored = self._score(flow_b, flow_f, self._homography(window, dynamic, ctx),
                                 final=True)
        score, map_x, map_y = scored
        self._flow_f = flow_f
        self._prev_gray = gray
        self._prev_score = score
        hs, ws = gray.shape
        s = self.scale

        # candidate regions by hysteresis
        cand = (score > self.low).astype(np.uint8)
        n_lab, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
        seeded = np.zeros(n_lab, bool)
        seeded[np.unique(labels[score > self.high])] = True
        seeded[0] = False
        seeded &= stats[:, cv2.CC_STAT_AREA] >= self.min_area * hs * ws

        # tracks in regions
        vis = window.visible[:, -1] if window.num_frames else np.zeros(0, bool)
        xy = window.xy[:, -1] * s if window.num_frames else np.zeros((0, 2))
        tx = np.clip(np.round(xy[:, 0]).astype(int), 0, ws - 1)
        ty = np.clip(np.round(xy[:, 1]).astype(int), 0, hs - 1)
        lab_at = labels[ty, tx]
        dyn = np.asarray(dynamic, bool) & vis
        obj = np.asarray(object_ids, np.int64)

        # previous masks warped into this frame
        warped: Dict[int, np.ndarray] = {}
        for oid, (m, age, sc) in self._masks.items():
            # move the mask rigidly by the object's own median flow: no disocclusion trails
            fx = self._flow_f[..., 0][m]
            fy = self._flow_f[..., 1][m]
            if fx.size == 0:
                continue
            shift = np.float32([[1, 0, np.median(fx)], [0, 1, np.median(fy)]])
            w_m = cv2.warpAffine(m.astype(np.uint8), shift, (ws, hs),
                                 flags=cv2.INTER_NEAREST) > 0
            warped[oid] = w_m

        assigned: Dict[int, np.ndarray] = {}
        scores: Dict[int, float] = {}
        picked = []  # (region, object ids, their track counts, region mean score)
        for lab in np.flatnonzero(seeded):
            in_lab = lab_at == lab
            d_ids = obj[in_lab & dyn & (obj >= 0)]
            n_dyn = int(np.count_nonzero(in_lab & dyn))
            n_stat = int(np.count_nonzero(in_lab & vis & ~dyn))
            if n_dyn < self.static_ratio * n_stat:
                continue
            region = labels == lab
            if d_ids.size >= self.min_region_tracks:
                vals, cnt = np.unique(d_ids, return_counts=True)
            elif warped:
                area = region.sum()
                best, best_ov = -1, 0.0
                for oid, w_m in warped.items():
                    ov = float(np.count_nonzero(w_m & region)) / max(area, 1)
                    if ov > best_ov:
                        best, best_ov = oid, ov
                if best_ov < self.continue_overlap:
                    continue
                vals, cnt = np.array([best]), np.array([1])
            else:
                continue
            picked.append((region, vals, cnt, float(score[region].mean())))
        top = max((p[3] for p in picked), default=0.0)
        for region, vals, cnt, rs in picked:
            if rs < self.relative_keep * top:
                continue  # much weaker than the strongest region: parallax, water, shadow
            if len(vals) > 1:  # several objects share the region: split by nearest track
                self._split(region, vals, obj, dyn, tx, ty, assigned)
            else:
                target = int(vals[0])
                assigned[target] = assigned.get(target, np.zeros((hs, ws), bool)) | region
            for v in vals:
                sel = dyn & (obj == v)
                scores[int(v)] = float(prob[sel].mean()) if sel.any() else \
                    self._masks.get(int(v), (None, 0, 0.5))[2]

        # hold silent objects (still dynamic, or recently seen) on their warped mask
        live = set(int(v) for v in np.unique(obj[dyn & (obj >= 0)]))
        new_masks: Dict[int, Tuple[np.ndarray, int, float]] = {}
        for oid, w_m in warped.items():
            if oid in assigned or not w_m.any():
                continue
            age = self._masks[oid][1] + 1
            if (oid in live and age <= self.hold_frames) or age <= self.hold_lost:
                assigned[oid] = w_m
                scores[oid] = self._masks[oid][2]
                new_masks[oid] = (w_m, age, scores[oid])

        out: List[ObjectMask] = []
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.close_px, self.close_px))
        cleaned: Dict[int, object] = {}
        image_small = None
        pts = np.stack([tx, ty], 1)
        bg_pts = pts[vis & ~dyn & (prob < self.bg_prob)]
        for n, (oid, m) in enumerate(assigned.items()):
            m8 = _fill_holes(cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_CLOSE, kernel))
            cleaned[oid] = m8 > 0
            if oid not in new_masks and self.grabcut:
                if image_small is None:
                    image_small = cv2.resize(frame.image, (ws, hs), interpolation=cv2.INTER_AREA)
                args = (image_small, cleaned[oid], pts[dyn & (obj == oid)], bg_pts, oid)
                if n % 2 == 1:  # objects are independent: every other one on the helper core
                    cleaned[oid] = self._helper().submit(self._refine, *args, False)
                else:
                    cleaned[oid] = self._refine(*args)
        for oid, m_small in cleaned.items():
            if not isinstance(m_small, np.ndarray):
                m_small = m_small.result()
            if oid not in new_masks:
                new_masks[oid] = (m_small, 0, scores.get(oid, 0.5))
            soft = m_small.astype(np.float32)
            if self.smooth_px > 0:  # smooth contour before upsampling: no staircase edges
                soft = cv2.GaussianBlur(soft, (0, 0), self.smooth_px)
            full = cv2.resize(soft, (frame.size[1], frame.size[0]),
                              interpolation=cv2.INTER_LINEAR) > 0.5
            if not full.any():
                continue
            n_dyn = int(np.count_nonzero(dyn & (obj == oid)))
            out.append(ObjectMask(id=int(oid), label=0, mask=full, score=scores.get(oid, 0.5),
                                  box=mask_box(full), num_dynamic_tracks=n_dyn))
        self._masks = new_masks  # only objects present now: bounded memory
        self._gmm = {k: v for k, v in self._gmm.items() if k[0] in new_masks}
        return out

    @staticmethod
    def _split(region: np.ndarray, vals: np.ndarray, obj: np.ndarray,
               sel: np.ndarray, tx: np.ndarray, ty: np.ndarray,
               assigned: Dict[int, np.ndarray]) -> None:
        """Share ``region`` between objects ``vals`` by the nearest of their tracks."""
        dists = []
        for v in vals:
            seeds = np.full(region.shape, 255, np.uint8)
            pick = sel & (obj == v)
            seeds[ty[pick], tx[pick]] = 0
            dists.append(cv2.distanceTransform(seeds, cv2.DIST_L2, 3))
        nearest = np.argmin(np.stack(dists), axis=0)
        for j, v in enumerate(vals):
            part = region & (nearest == j)
            key = int(v)
            assigned[key] = assigned.get(key, np.zeros(region.shape, bool)) | part
