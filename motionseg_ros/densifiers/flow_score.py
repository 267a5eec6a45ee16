"""Residual scoring: how much each pixel's flow disagrees with the background motion.

At flow resolution: DIS flow current->previous and previous->current; the residual of that
flow against the background homography (fitted on the dense flow, or the tracks') in units of
a robust noise scale (median / MAD); zero where the forward-backward check fails (occlusion
trails); smoothed over time with the previous score warped by the flow.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional, Tuple

import cv2
import numpy as np

from motionseg_ros.densifiers.flow_params import FlowParams
from motionseg_ros.stages import StageContext
from motionseg_ros.types import TrackWindow

_PRESETS = {'ultrafast': cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
            'fast': cv2.DISOPTICAL_FLOW_PRESET_FAST,
            'medium': cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

#: (smoothed score, backward map x, backward map y) at flow resolution
Scored = Tuple[np.ndarray, np.ndarray, np.ndarray]


Grid = Tuple[np.ndarray, np.ndarray]


def pixel_grid(cached: Optional[Grid], hs: int, ws: int) -> Grid:
    """Return float32 pixel coordinates (gx, gy) of an (hs, ws) image, reusing ``cached``."""
    if cached is None or cached[0].shape != (hs, ws):
        cached = tuple(np.meshgrid(np.arange(ws, dtype=np.float32),
                                   np.arange(hs, dtype=np.float32)))
    return cached


def backward_check(flow_b: np.ndarray, flow_f: np.ndarray, grid: Grid
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (map_x, map_y, fb, mag) of a backward flow current -> previous.

    map: where each pixel was in the previous frame; fb: forward-backward error there (where
    the previous pixel's forward flow comes back; large in occlusion trails); mag: flow length.
    """
    gx, gy = grid
    map_x = gx + flow_b[..., 0]
    map_y = gy + flow_b[..., 1]
    ff = cv2.remap(flow_f, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fb = np.hypot(flow_b[..., 0] + ff[..., 0], flow_b[..., 1] + ff[..., 1])
    mag = np.hypot(flow_b[..., 0], flow_b[..., 1])
    return map_x, map_y, fb, mag


def background_map(h_inv: np.ndarray, grid: Grid) -> Grid:
    """Return where the background homography ``h_inv`` (current -> previous) sends each pixel."""
    gx, gy = grid
    den = h_inv[2, 0] * gx + h_inv[2, 1] * gy + h_inv[2, 2]
    den = np.where(np.abs(den) < 1e-9, 1e-9, den)
    return ((h_inv[0, 0] * gx + h_inv[0, 1] * gy + h_inv[0, 2]) / den,
            (h_inv[1, 0] * gx + h_inv[1, 1] * gy + h_inv[1, 2]) / den)


def track_homography(window: TrackWindow, dynamic: np.ndarray, ctx: StageContext
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
                                  window.xy[ok, -1].astype(np.float64), cv2.USAC_MAGSAC, 2.0)
    except cv2.error:
        return None
    return h


class FlowScorer:
    """The flows between consecutive frames and their residual score; keeps the last of each."""

    def __init__(self, p: FlowParams) -> None:
        """Create the two DIS objects (their preset and refinement are fixed from here on)."""
        self.p = p
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[p.preset])
        self._dis_f = cv2.DISOpticalFlow_create(_PRESETS[p.preset])
        if p.refine_iters >= 0:
            self._dis.setVariationalRefinementIterations(p.refine_iters)
            self._dis_f.setVariationalRefinementIterations(p.refine_iters)
        if p.fb_refine_iters >= 0:
            self._dis_f.setVariationalRefinementIterations(p.fb_refine_iters)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame and score."""
        self.prev_gray: Optional[np.ndarray] = None
        self.prev_score: Optional[np.ndarray] = None
        self._grid: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def small(self, image: np.ndarray) -> np.ndarray:
        """Return the grey image at flow resolution."""
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if self.p.scale == 1.0:
            return gray
        h, w = gray.shape
        return cv2.resize(gray, (int(round(w * self.p.scale)), int(round(h * self.p.scale))),
                          interpolation=cv2.INTER_AREA)

    def flows(self, gray: np.ndarray, pool: ThreadPoolExecutor
              ) -> Tuple[np.ndarray, np.ndarray]:
        """Return DIS flows current->previous and previous->current (on two threads)."""
        fut = pool.submit(self._dis_f.calc, self.prev_gray, gray, None)
        flow_b = self._dis.calc(gray, self.prev_gray, None)
        return flow_b, fut.result()

    def score(self, flow_b: np.ndarray, flow_f: np.ndarray, h_in: Optional[np.ndarray],
              held: Iterable[np.ndarray], final: bool = False) -> Optional[Scored]:
        """Return (smoothed score, backward map x, backward map y) at flow resolution.

        ``held``: the objects' previous masks, left out of the dense background fit. Not
        ``final`` (a prefetch, before the tracks' homography ``h_in`` is known): None when
        the dense fit fails, so that the caller retries with ``h_in``.
        """
        p = self.p
        hs, ws = flow_b.shape[:2]
        self._grid = pixel_grid(self._grid, hs, ws)
        gx, gy = self._grid
        map_x, map_y, fb, mag = backward_check(flow_b, flow_f, self._grid)
        consistent = fb < (p.fb_abs_px * p.scale + p.fb_rel * mag)
        s = p.scale
        if h_in is not None:
            sm = np.diag([s, s, 1.0])
            try:
                h_inv = sm @ np.linalg.inv(h_in) @ np.linalg.inv(sm)
            except np.linalg.LinAlgError:
                h_inv = None
        else:
            h_inv = None
        if p.dense_homography:
            h_dense = self._dense_fit(gx, gy, map_x, map_y, consistent, held)
            if h_dense is None and h_in is None and not final:
                return None
            h_inv = h_dense if h_dense is not None else h_inv
        if h_inv is not None:
            px, py = background_map(h_inv, self._grid)
            res = np.hypot(map_x - px, map_y - py) / s
        else:  # no background model: residual against the median flow (translation)
            mx = np.median(flow_b[::4, ::4, 0])
            my = np.median(flow_b[::4, ::4, 1])
            res = np.hypot(flow_b[..., 0] - mx, flow_b[..., 1] - my) / s
        sample = res[::3, ::3]
        med = float(np.median(sample))
        mad = float(np.median(np.abs(sample - med)))
        sigma = max(p.noise_floor_px, 1.4826 * mad)
        z = np.clip((res - med) / sigma, 0.0, p.z_cap).astype(np.float32)
        z[~consistent] = 0.0
        if self.prev_score is not None and p.temporal > 0:
            inside = (map_x >= 0) & (map_x <= ws - 1) & (map_y >= 0) & (map_y <= hs - 1)
            prev = cv2.remap(self.prev_score, map_x, map_y, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            z = np.where(inside, (1 - p.temporal) * z + p.temporal * prev, z)
        return z.astype(np.float32), map_x, map_y

    @staticmethod
    def _dense_fit(gx: np.ndarray, gy: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
                   consistent: np.ndarray, held: Iterable[np.ndarray]) -> Optional[np.ndarray]:
        """Fit the current->previous background homography on a grid of the dense flow.

        Sampling the image uniformly weights background surfaces by their area (a road, a
        wall), where tracks favour textured structures; pixels of the previous masks and
        inconsistent flow are left out.
        """
        hs, ws = gx.shape
        step = max(2, int(min(hs, ws) / 30))
        sel = consistent[::step, ::step].copy()
        for m in held:
            sel &= ~m[::step, ::step]
        if sel.sum() < 50:
            return None
        src = np.stack([gx[::step, ::step][sel], gy[::step, ::step][sel]], 1)
        dst = np.stack([map_x[::step, ::step][sel], map_y[::step, ::step][sel]], 1)
        try:
            h, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64),
                                      cv2.USAC_MAGSAC, 1.0, maxIters=300, confidence=0.99)
        except cv2.error:
            return None
        return h
