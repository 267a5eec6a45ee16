"""A simulated point tracker over the rendered candidate points of a synthetic scene.

Picks the tracked points, starts some of them mid-window, lets KLT-like tracks die at their
first occlusion (or TAP-like ones come back), and adds jitter, drift, spikes, persistent
jumps and a forward-backward confidence; with hard negatives, the 1.1 distortions too.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import numpy as np

from motionseg_ros.synthetic.hard_negatives import drag_and_wave, noise_scale
from motionseg_ros.synthetic.spec import SceneSpec


class SimulatedTracks(NamedTuple):
    """Tracks kept (seen at least once), each (N, T, ...) except ``labels`` (N,)."""

    xy: np.ndarray           # float32 pixels, 0 where not visible
    z: np.ndarray            # true camera depth
    visible: np.ndarray      # bool
    confidence: np.ndarray   # float32, 0 where not visible
    labels: np.ndarray       # float32, 1 = moving in the world


def simulate_tracks(rng: np.random.Generator, spec: SceneSpec, size: Tuple[int, int],
                    xy: np.ndarray, z: np.ndarray, vis: np.ndarray, label: np.ndarray
                    ) -> SimulatedTracks:
    """Track a subset of the candidate points: ``xy`` (T, P, 2), ``z``/``vis`` (T, P).

    ``label``: (P,) 1 = moving; ``size``: image (height, width).
    """
    h, w = size
    t = xy.shape[0]
    seen = vis.any(axis=0)
    cand = np.flatnonzero(seen)
    n_target = int(spec.num_tracks or rng.integers(80, 600))
    # oversample objects a little less than area would (trackers seed on a grid)
    if cand.size == 0:
        cand = np.zeros(0, int)
    pick = rng.choice(cand, size=min(n_target, cand.size), replace=False) \
        if cand.size else cand
    n = pick.size
    txy = np.transpose(xy[:, pick], (1, 0, 2)).astype(np.float64)   # (N, T, 2)
    tz = z[:, pick].T
    tvis_true = vis[:, pick].T
    tlab = label[pick].astype(np.float32)
    # start frame: first visible frame, or later (seeded mid-window)
    first = np.argmax(tvis_true, axis=1)
    late = rng.random(n) < 0.35
    start = first.copy()
    for i in np.flatnonzero(late):
        frames = np.flatnonzero(tvis_true[i, first[i]:]) + first[i]
        start[i] = int(rng.choice(frames))
    steps = np.arange(t)[None]
    tap_like = spec.noise and rng.random() < 0.2          # occlusion gaps allowed
    visible = tvis_true & (steps >= start[:, None])
    if not tap_like:
        # KLT: a track dies at its first invisible frame after it starts
        lost = ~tvis_true & (steps > start[:, None])
        lost_at = np.where(lost.any(axis=1), np.argmax(lost, axis=1), t)
        visible &= steps < lost_at[:, None]
    conf = np.zeros((n, t), np.float32)
    if spec.noise:
        hazard = rng.uniform(0.0, 0.05)
        death = rng.random((n, t)) < hazard
        death &= steps > start[:, None]
        died = np.where(death.any(axis=1), np.argmax(death, axis=1), t)
        visible &= steps < died[:, None]
        jitter = rng.uniform(0.05, 0.8)
        noise = rng.normal(0, jitter, (n, t, 2))
        scale = None
        if spec.hard_negatives:   # per-track noise level; conf reflects it (below)
            scale = noise_scale(rng, txy, start, t, size)
            noise *= scale[:, None, None]
        drifting = rng.random(n) < rng.uniform(0, 0.4)
        drift = np.cumsum(rng.normal(0, rng.uniform(0.05, 0.4), (n, t, 2)), axis=1)
        noise += drift * drifting[:, None, None]
        spikes = rng.random((n, t)) < rng.uniform(0, 0.01)
        noise += spikes[..., None] * rng.normal(0, 15.0, (n, t, 2))
        # a few tracks jump to another surface and stay there (persistent outliers)
        jumpers = rng.random(n) < rng.uniform(0, 0.02)
        jump_t = rng.integers(0, t, n)
        noise += (jumpers[:, None] & (steps >= jump_t[:, None]))[..., None] * \
            rng.normal(0, 8.0, (n, 1, 2))
        txy = txy + noise
        if spec.hard_negatives:
            txy = drag_and_wave(rng, txy, tvis_true & visible, tlab, t, size)
        fb = np.abs(rng.normal(0, rng.uniform(0.05, 0.3), (n, t)))
        if scale is not None:   # KLT's forward-backward error grows with the noise
            fb = fb * scale[:, None] + np.abs(rng.normal(0, 0.5 * jitter, (n, t))) * (
                scale[:, None] - 1.0).clip(0.0)
        fb += spikes * rng.uniform(0.3, 1.0, (n, t))
        conf = np.clip(1.0 - fb, 0.0, 1.0).astype(np.float32)
    else:
        conf[:] = 1.0
    conf[np.arange(n), np.minimum(start, t - 1)] = 1.0
    # leaving the image after noise counts as lost
    inside = (txy[..., 0] >= 0) & (txy[..., 0] < w) & (txy[..., 1] >= 0) & (txy[..., 1] < h)
    visible &= inside
    conf = np.where(visible, conf, 0.0).astype(np.float32)
    keep = visible.any(axis=1)
    txy, tz, visible, conf, tlab = txy[keep], tz[keep], visible[keep], conf[keep], tlab[keep]
    txy = np.where(visible[..., None], txy, 0.0).astype(np.float32)
    return SimulatedTracks(xy=txy, z=tz, visible=visible, confidence=conf, labels=tlab)
