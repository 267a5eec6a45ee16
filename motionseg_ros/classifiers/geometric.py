"""Moving-vs-static per track from multi-frame, multi-baseline geometric residuals.

For the newest frame t and several earlier frames t-k of the window, a background model is
fitted by MAGSAC on the tracks visible in both: a homography (rotation-only camera or planar
scene) and, when the scene shows parallax, a fundamental matrix (an essential matrix when
intrinsics are given). The model with the better fit (a GRIC-like comparison of inlier counts)
gives each track a residual, in pixels, divided by a robust noise scale of the inliers. Residual
scores of all baselines are averaged, mapped to a probability by a logistic, and smoothed over
time per track id.

Robustness: models are fitted preferring tracks that were static in the previous frame, so an
object covering most of the frame or a camera following the object keeps the background's
identity; a fresh fit on all tracks is used when that set is too small.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

from motionseg_ros.registry import register
from motionseg_ros.runtime_params import THRESHOLD, table
from motionseg_ros.stages import Classifier, StageContext
from motionseg_ros.types import TrackWindow


def transfer_error(h: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """|H src - dst| in pixels for (N, 2) point arrays."""
    p = np.concatenate([src, np.ones((src.shape[0], 1))], axis=1) @ h.T
    w = p[:, 2:3]
    w = np.where(np.abs(w) < 1e-9, 1e-9, w)
    return np.linalg.norm(p[:, :2] / w - dst, axis=1)


def sampson_distance(f: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """First-order geometric (Sampson) distance in pixels of correspondences to F.

    ``sqrt((x2' F x1)^2 / (|F x1|_12^2 + |F' x2|_12^2))``: the pixel distance the pair must
    move to satisfy the epipolar constraint, comparable with a homography transfer error.
    """
    x1 = np.concatenate([src, np.ones((src.shape[0], 1))], axis=1)
    x2 = np.concatenate([dst, np.ones((dst.shape[0], 1))], axis=1)
    fx1 = x1 @ f.T
    ftx2 = x2 @ f
    num = np.sum(x2 * fx1, axis=1) ** 2
    den = fx1[:, 0] ** 2 + fx1[:, 1] ** 2 + ftx2[:, 0] ** 2 + ftx2[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


def magsac_params(threshold: float) -> cv2.UsacParams:
    """MAGSAC++ settings for the fundamental matrix, without local optimisation.

    Same as ``cv2.USAC_MAGSAC`` (uniform sampling, MAGSAC score, MAGSAC polisher) but with
    ``LOCAL_OPTIM_NULL``: about a third cheaper, with the same inliers on DAVIS tracks; F fits
    dominate the classifier's time in scenes without a dominant plane.
    """
    p = cv2.UsacParams()
    p.threshold = float(threshold)
    p.confidence = 0.99
    p.maxIterations = 500
    p.score = cv2.SCORE_METHOD_MAGSAC
    p.sampler = cv2.SAMPLING_UNIFORM
    p.final_polisher = cv2.MAGSAC
    p.loMethod = cv2.LOCAL_OPTIM_NULL
    return p


def evidence_channels(num_tracks: int, num_frames: int,
                      scores: Dict[int, Tuple[np.ndarray, np.ndarray]],
                      epipolar: Optional[Dict[int, Tuple[np.ndarray, np.ndarray]]] = None
                      ) -> np.ndarray:
    """Per-frame channels (N, T, 2 or 3) of a classifier's baseline scores, for a learned model.

    At frame ``T-1-k`` of every baseline k: ``log(1 + score)`` and 1 (the baseline was fitted
    and the track seen at both ends); zeros elsewhere. The log keeps the long tail of residuals
    of fast objects in a range a network handles. With ``epipolar`` (the scores to a
    fundamental matrix, see ``epipolar_scores``) a third channel holds ``log(1 + score)`` of
    those, or the first channel's value where no fundamental matrix could be fitted.
    """
    out = np.zeros((num_tracks, num_frames, 2 if epipolar is None else 3), np.float32)
    for k, (idx, score) in scores.items():
        if 0 < k < num_frames:
            out[idx, num_frames - 1 - k, 0] = np.log1p(np.maximum(score, 0.0))
            out[idx, num_frames - 1 - k, 1] = 1.0
            if epipolar is not None:
                e_idx, e_score = epipolar.get(k, (idx, score))
                out[e_idx, num_frames - 1 - k, 2] = np.log1p(np.maximum(e_score, 0.0))
    return out


@register('classifier', 'geometric')
class GeometricClassifier(Classifier):
    """Background-model residuals over several baselines, calibrated to a probability."""

    # not run-time: baselines (history kept), threads (pool size), epipolar_scores (read by
    # a model built for them)
    runtime_params = (THRESHOLD,) + table("""
ransac_px       float 0.1..20    MAGSAC threshold (px) of the background model.
noise_floor_px  float 0.01..20   Least noise scale (px) residuals are divided by.
z0              float 0..50      Residual (noise units) whose probability is 0.5.
z_scale         float 0.01..20   Width (noise units) of the residual-to-probability sigmoid.
smoothing       float 0..0.99    Weight of a track's previous probability (0: none).
parallax_ratio  float 1..10      Inlier ratio fundamental/homography above which epipolar
  residuals are used.
planar_fraction float 0..1       Homography inlier fraction below which the scene counts as
  non-planar.
min_points      int   8..10000   Fewest tracks a background fit needs.
use_epipolar    bool  -          Use the fundamental/essential model when the scene shows
  parallax.
mad_scale       bool  -          Noise scale from the MAD of all residuals instead of the inliers.
""")

    def __init__(self, threshold: float = 0.5, baselines: Tuple[int, ...] = (1, 2, 4, 8, 15),
                 ransac_px: float = 1.5, noise_floor_px: float = 0.75, z0: float = 3.5,
                 z_scale: float = 0.75, smoothing: float = 0.5, parallax_ratio: float = 1.5,
                 min_points: int = 12, use_epipolar: bool = True,
                 planar_fraction: float = 0.6, mad_scale: bool = False,
                 threads: int = 2, epipolar_scores: bool = False) -> None:
        """Configure.

        ``baselines`` are frame offsets k (newest vs t-k); ``ransac_px`` the MAGSAC threshold;
        a track's score is its residual over ``max(noise_floor_px, robust sigma)``; the
        probability is ``sigmoid((score - z0) / z_scale)``, then blended with the track's
        previous probability by ``smoothing`` (0 = none). Epipolar residuals replace the
        homography's when the fundamental matrix has ``parallax_ratio`` times its inliers and
        the homography explains less than ``planar_fraction`` of the fitted tracks.
        ``mad_scale`` takes the noise scale from the MAD of all residuals instead of the
        spread of the inliers. ``threads``: baselines fitted in parallel (1: on the calling
        thread only). ``epipolar_scores``: also fit the fundamental matrix where the
        homography wins and keep its residual scores in ``last_epipolar_scores`` (evidence for
        a learned model; the probabilities do not change).
        """
        self.threshold = float(threshold)
        self.baselines = tuple(int(b) for b in baselines)
        if not self.baselines or min(self.baselines) < 1:
            raise ValueError('geometric: baselines must be positive frame offsets')
        self.ransac_px = float(ransac_px)
        self.noise_floor_px = float(noise_floor_px)
        self.z0 = float(z0)
        self.z_scale = float(z_scale)
        self.smoothing = float(smoothing)
        self.parallax_ratio = float(parallax_ratio)
        self.min_points = int(min_points)
        self.use_epipolar = bool(use_epipolar)
        self.planar_fraction = float(planar_fraction)
        self.mad_scale = bool(mad_scale)
        self.threads = max(1, int(threads))
        self.epipolar_scores = bool(epipolar_scores)
        self._pool: Optional[ThreadPoolExecutor] = None
        self.reset()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads,
                                            thread_name_prefix='geometric')
        return self._pool

    def close(self) -> None:
        """Stop the fitting threads (they restart on the next call if there is one)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def reset(self) -> None:
        """Forget per-track probabilities."""
        self._prob: Dict[int, float] = {}
        self.last_models: Dict[int, str] = {}
        #: baseline k -> (indices of the tracks visible at t-k and t, their residual scores)
        self.last_scores: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        #: the same for the fundamental matrix's residuals (``epipolar_scores`` only)
        self.last_epipolar_scores: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ fitting
    def _fit(self, src: np.ndarray, dst: np.ndarray, prior_static: np.ndarray,
             k_matrix: Optional[np.ndarray]
             ) -> Optional[Tuple[str, np.ndarray, np.ndarray, Optional[np.ndarray]]]:
        """Fit the background between two frames.

        Return (model, matrix, residual px, epipolar residual px or None).
        """
        fit_idx = np.flatnonzero(prior_static)
        if fit_idx.size < max(self.min_points, int(0.2 * src.shape[0])):
            fit_idx = np.arange(src.shape[0])
        if fit_idx.size < self.min_points:
            return None
        s, d = src[fit_idx], dst[fit_idx]
        try:
            h, h_in = cv2.findHomography(s, d, cv2.USAC_MAGSAC, self.ransac_px,
                                         maxIters=500, confidence=0.99)
        except cv2.error:
            h = None
        if h is None:
            return None
        res_h = transfer_error(h, src, dst)
        model, mat, res = 'homography', h, res_h
        res_f = None
        n_h = int(np.count_nonzero(res_h[fit_idx] < self.ransac_px))
        enough = fit_idx.size >= 2 * self.min_points
        may_win = self.use_epipolar and n_h < self.planar_fraction * fit_idx.size
        if enough and (may_win or self.epipolar_scores):  # F can win, or is asked for
            f = self._fundamental(s, d, k_matrix)
            if f is not None:
                res_f = sampson_distance(f, src, dst)
                n_f = int(np.count_nonzero(res_f[fit_idx] < self.ransac_px))
                # parallax: F explains clearly more of the background than H does
                if may_win and n_f > self.parallax_ratio * n_h + 4:
                    model, mat, res = 'epipolar', f, res_f
        return model, mat, res, res_f

    def _fundamental(self, s: np.ndarray, d: np.ndarray, k_matrix: Optional[np.ndarray]
                     ) -> Optional[np.ndarray]:
        """F from MAGSAC (via E when intrinsics are known); None when degenerate."""
        try:
            if k_matrix is not None:
                e, _ = cv2.findEssentialMat(s, d, k_matrix, cv2.USAC_MAGSAC, 0.999,
                                            self.ransac_px)
                if e is None or e.shape != (3, 3):
                    return None
                k_inv = np.linalg.inv(k_matrix)
                return k_inv.T @ e @ k_inv
            f, _ = cv2.findFundamentalMat(s, d, magsac_params(self.ransac_px))
        except cv2.error:
            return None
        if f is None or f.shape != (3, 3):
            return None
        return f

    def evidence(self, window: TrackWindow, ctx: StageContext, epipolar: bool = False
                 ) -> np.ndarray:
        """Classify ``window`` (updating the state) and return its :func:`evidence_channels`.

        ``epipolar``: add the fundamental-matrix channel (needs ``epipolar_scores``).
        """
        self.classify(window, ctx)
        return evidence_channels(window.num_tracks, window.num_frames, self.last_scores,
                                 self.last_epipolar_scores if epipolar else None)

    def _spread(self, res: np.ndarray) -> float:
        """Robust noise scale of a model's inliers (all residuals when too few)."""
        inl = res < 2.0 * self.ransac_px
        return 1.4826 * float(np.median(res[inl] if inl.sum() >= self.min_points else res))

    # ------------------------------------------------------------------ classify
    def classify(self, window: TrackWindow, ctx: StageContext) -> np.ndarray:
        """Return (N,) probabilities that each track moves in the world."""
        n, t = window.num_tracks, window.num_frames
        prev = np.array([self._prob.get(int(i), -1.0) for i in window.ids], np.float64)
        prior_static = prev < 0.5  # unknown (new) tracks count as background candidates
        k_matrix = None
        if ctx.history and ctx.history[-1].intrinsics is not None:
            k_matrix = ctx.history[-1].intrinsics.matrix()
        score_sum = np.zeros(n)
        score_cnt = np.zeros(n)
        self.last_models = {}
        self.last_scores = {}
        self.last_epipolar_scores = {}
        vis_now = window.visible[:, -1]

        def fit_baseline(k: int):
            both = np.flatnonzero(vis_now & window.visible[:, -1 - k])
            if both.size < self.min_points:
                return None
            src = window.xy[both, -1 - k].astype(np.float64)
            dst = window.xy[both, -1].astype(np.float64)
            fit = self._fit(src, dst, prior_static[both], k_matrix)
            return None if fit is None else (k, both, src, dst) + fit

        # the baselines are independent robust fits (OpenCV frees the GIL): two cores
        ks = [k for k in self.baselines if k < t]
        run = self._executor().map if self.threads > 1 and len(ks) > 1 else map
        for fit in list(run(fit_baseline, ks)):
            if fit is None:
                continue
            k, both, src, dst, model, mat, res, res_f = fit
            self.last_models[k] = model
            if k == 1 and model == 'homography':
                ctx.background_homography = mat
            elif k == 1:
                h, _ = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, 3.0 * self.ransac_px)
                ctx.background_homography = h
            if self.mad_scale:  # MAD of all residuals: parallax widens it (fewer detections)
                med = float(np.median(res))
                sigma = 1.4826 * float(np.median(np.abs(res - med))) + med
            else:  # spread of the model's inliers: the tracking noise of this baseline
                sigma = self._spread(res)
            floor = self.noise_floor_px * k ** 0.25
            sigma = max(floor, sigma)
            self.last_scores[k] = (both, res / sigma)
            if self.epipolar_scores and res_f is not None:
                self.last_epipolar_scores[k] = (both, res_f / max(floor, self._spread(res_f)))
            score_sum[both] += res / sigma
            score_cnt[both] += 1
        score = np.where(score_cnt > 0, score_sum / np.maximum(score_cnt, 1), 0.0)
        prob = 1.0 / (1.0 + np.exp(-(score - self.z0) / max(self.z_scale, 1e-6)))
        prob[score_cnt == 0] = np.where(prev[score_cnt == 0] >= 0, prev[score_cnt == 0], 0.0)
        known = (prev >= 0) & (score_cnt > 0)
        prob[known] = self.smoothing * prev[known] + (1 - self.smoothing) * prob[known]
        self._prob = {int(i): float(p) for i, p in zip(window.ids, prob)}  # evicts old ids
        ctx.scratch['geometric_score'] = score.astype(np.float32)
        return prob.astype(np.float32)
