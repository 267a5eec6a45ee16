"""The mask head's input channels, built causally at quarter resolution.

Ten channels (``CHANNELS``), 214x120 for a 854x480 input at the default scale 0.25:

0-2  BGR, normalised;
3-4  residual flow x, y: DIS MEDIUM backward flow (current -> previous) minus the flow of one
     background homography (MAGSAC 1 px on a grid of flow vectors, the flow densifier's dense
     fit), divided by the median + MAD of its magnitude, so that the net sees motion relative
     to the frame's own residual noise;
5    residual level: log1p(clip(z, 0, 200)) / 3 with z the magnitude in robust noise units;
6    forward-backward flow error, capped at 5 flow px (divided by 5): occlusion trails;
7    the classifier's per-track dynamic probability, splatted by normalised convolution;
8    track cover: where there are tracks at all (a probability of 0 means "no track" there);
9    the previous frame's foreground mask warped by the flow (keeps objects through pauses).

The same code builds them at inference (``mask_head`` densifier) and when recording the
training data (:mod:`motionseg_ros.training.mask_head_data`), so the two cannot drift.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from motionseg_ros.densifiers.flow_params import FlowParams
from motionseg_ros.densifiers.flow_score import (FlowScorer, background_map, backward_check,
                                                 pixel_grid)
from motionseg_ros.types import TrackWindow

#: channel count and the index of each channel group
CHANNELS = 10
BGR = slice(0, 3)
RESIDUAL_X, RESIDUAL_Y, LEVEL, FB_ERROR, TRACK_PROB, TRACK_COVER, PREV_MASK = range(3, 10)
#: bumped whenever a channel changes meaning: it keys the training cache
INPUTS_VERSION = 1
#: BGR normalisation (plain, the net is trained from scratch)
MEAN, STD = 0.45, 0.25
FB_CAP_PX = 5.0
LEVEL_CAP = 200.0
#: Gaussian sigma (input-resolution px) of the track splatting
SPLAT_SIGMA_PX = 12.0


@dataclass
class Motion:
    """The frame-only part of the inputs (flows and what follows from them)."""

    gray: np.ndarray        # (h, w) uint8 at input scale, kept as the next frame's previous
    channels: np.ndarray    # (7, h, w) float32: BGR, residual x, y, level, fb error
    map_x: np.ndarray       # (h, w) float32: where each pixel was in the previous frame
    map_y: np.ndarray


def small_size(size: Tuple[int, int], scale: float) -> Tuple[int, int]:
    """Return the (h, w) of the inputs for an image of (H, W) (the flow scorer's rounding)."""
    h, w = size
    return int(round(h * scale)), int(round(w * scale))


def warp_previous(prev: Optional[np.ndarray], motion: Motion) -> np.ndarray:
    """Warp a previous-frame map (h, w) to the current frame; 0 outside or when None."""
    if prev is None:
        return np.zeros(motion.gray.shape, np.float32)
    return cv2.remap(prev.astype(np.float32), motion.map_x, motion.map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


class InputBuilder:
    """Builds the inputs frame by frame; remembers only the previous grey image."""

    def __init__(self, scale: float = 0.25) -> None:
        """Create the two DIS MEDIUM flows (no variational refinement, as the flow densifier)."""
        self.scale = float(scale)
        self.scorer = FlowScorer(FlowParams(scale=self.scale, preset='medium', refine_iters=0))
        self._grid: Optional[Tuple[np.ndarray, np.ndarray]] = None
        self._pool: Optional[ThreadPoolExecutor] = None

    def reset(self) -> None:
        """Forget the previous frame."""
        self.scorer.reset()

    def close(self) -> None:
        """Stop the helper thread of the forward flow."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def prev_gray(self) -> Optional[np.ndarray]:
        """Return the previous frame's grey image (None before the first frame)."""
        return self.scorer.prev_gray

    def commit(self, motion_or_image) -> None:
        """Make this frame the previous one (its Motion, or its image on a first frame)."""
        if isinstance(motion_or_image, Motion):
            self.scorer.prev_gray = motion_or_image.gray
        else:
            self.scorer.prev_gray = self.scorer.small(motion_or_image)

    def motion(self, image: np.ndarray, held: Sequence[np.ndarray] = (),
               threads: int = 2) -> Optional[Motion]:
        """Return the frame-only channels of ``image``, or None on a first frame.

        ``held``: masks (input scale) of the previous frame's objects, left out of the
        background fit. Does not commit the frame (see :meth:`commit`).
        """
        if self.scorer.prev_gray is None:
            return None
        gray = self.scorer.small(image)
        if gray.shape != self.scorer.prev_gray.shape:
            return None
        if threads > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix='mh-dis')
            flow_b, flow_f = self.scorer.flows(gray, self._pool)
        else:
            flow_b = self.scorer._dis.calc(gray, self.scorer.prev_gray, None)
            flow_f = self.scorer._dis_f.calc(self.scorer.prev_gray, gray, None)
        hs, ws = gray.shape
        self._grid = pixel_grid(self._grid, hs, ws)
        gx, gy = self._grid
        map_x, map_y, fb, mag = backward_check(flow_b, flow_f, self._grid)
        consistent = fb < (self.scale + 0.1 * mag)
        h_inv = FlowScorer._dense_fit(gx, gy, map_x, map_y, consistent,
                                      [m.astype(bool) for m in held])
        if h_inv is not None:
            px, py = background_map(h_inv, self._grid)
            rx = map_x - px
            ry = map_y - py
        else:  # no background model: the median flow (a translation)
            rx = flow_b[..., 0] - np.median(flow_b[::4, ::4, 0])
            ry = flow_b[..., 1] - np.median(flow_b[::4, ::4, 1])
        res = np.hypot(rx, ry)
        sample = res[::3, ::3]
        med = float(np.median(sample))
        mad = float(np.median(np.abs(sample - med)))
        unit = max(med + mad, 0.02)
        sigma = max(1.4826 * mad, 0.01)
        z = np.clip((res - med) / sigma, 0.0, LEVEL_CAP)
        small = cv2.resize(image, (ws, hs), interpolation=cv2.INTER_AREA)
        channels = np.empty((7, hs, ws), np.float32)
        channels[BGR] = (small.transpose(2, 0, 1).astype(np.float32) / 255.0 - MEAN) / STD
        channels[RESIDUAL_X] = np.clip(rx / unit, -50, 50)
        channels[RESIDUAL_Y] = np.clip(ry / unit, -50, 50)
        channels[LEVEL] = np.log1p(z) / 3.0
        channels[FB_ERROR] = np.minimum(fb, FB_CAP_PX) / FB_CAP_PX
        return Motion(gray=gray, channels=channels, map_x=map_x, map_y=map_y)

    def track_channels(self, window: TrackWindow, prob: np.ndarray,
                       shape: Tuple[int, int]) -> np.ndarray:
        """Return (2, h, w): splatted dynamic probability and track cover at input scale.

        Normalised convolution: the Gaussian-weighted mean probability of the tracks near each
        pixel, and how many tracks are near (1 = at least about one within a sigma).
        """
        hs, ws = shape
        out = np.zeros((2, hs, ws), np.float32)
        if window.num_tracks == 0 or window.num_frames == 0 or prob.size == 0:
            return out
        vis = window.visible[:, -1]
        xy = window.xy[vis, -1] * self.scale
        p = np.asarray(prob, np.float32)[vis]
        col = np.clip(np.round(xy[:, 0]).astype(np.int64), 0, ws - 1)
        row = np.clip(np.round(xy[:, 1]).astype(np.int64), 0, hs - 1)
        count = np.zeros((hs, ws), np.float32)
        psum = np.zeros((hs, ws), np.float32)
        np.add.at(count, (row, col), 1.0)
        np.add.at(psum, (row, col), p)
        sigma = max(0.5, SPLAT_SIGMA_PX * self.scale)
        count = cv2.GaussianBlur(count, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        psum = cv2.GaussianBlur(psum, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        density = count * (2.0 * np.pi * sigma * sigma)
        out[0] = np.where(density > 0.05, psum / np.maximum(count, 1e-12), 0.0)
        out[1] = np.minimum(density, 1.0)
        return out

    @staticmethod
    def assemble(motion: Motion, tracks: np.ndarray, prev_warped: np.ndarray) -> np.ndarray:
        """Return the (CHANNELS, h, w) float32 input."""
        return np.concatenate([motion.channels, tracks, prev_warped[None].astype(np.float32)])
