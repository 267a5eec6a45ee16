"""Generator 1.1 hard negatives: static tracks that look a little like moving ones.

Real KLT tracks on asphalt, walls or sky jitter several times more than on texture, static
tracks at an occlusion boundary get dragged along with the moving object, and water or
foliage moves non-rigidly; benchmarks label all of these static.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np


def noise_scale(rng: np.random.Generator, txy: np.ndarray, start: np.ndarray, t: int,
                size: Tuple[int, int]) -> np.ndarray:
    """(N,) noise multipliers: log-normal per track, much larger in a textureless patch.

    The 1.0 generator gave every track of a window the same noise. ``start``: (N,) frame
    each track starts at; ``size``: image (height, width).
    """
    h, w = size
    n = txy.shape[0]
    scale = np.exp(rng.normal(0.0, 0.4, n))
    if n and rng.random() < 0.6:
        pos = txy[np.arange(n), np.minimum(start, t - 1)]
        centre = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        radius = rng.uniform(0.15, 0.4) * max(w, h)
        inside = np.linalg.norm(pos - centre, axis=1) < radius
        scale[inside] *= rng.uniform(2.0, 6.0)
    return scale


def drag_and_wave(rng: np.random.Generator, txy: np.ndarray, visible: np.ndarray,
                  labels: np.ndarray, t: int, size: Tuple[int, int]) -> np.ndarray:
    """Make some static tracks move a little like something else; labels stay static."""
    h, w = size
    txy = txy.copy()
    static = np.flatnonzero(labels < 0.5)
    moving = np.flatnonzero(labels >= 0.5)
    last = np.where(visible.any(axis=1), t - 1 - np.argmax(visible[:, ::-1], axis=1), 0)
    pos = txy[np.arange(txy.shape[0]), last]                   # last visible position
    if moving.size and static.size and rng.random() < 0.7:
        # boundary drag: static tracks within reach of a moving one follow it part-way
        reach = rng.uniform(0.02, 0.06) * max(w, h)
        dist = np.linalg.norm(pos[static, None] - pos[None, moving], axis=2)
        near = dist.min(axis=1) < reach
        chosen = np.flatnonzero(near & (rng.random(static.size) < rng.uniform(0.2, 0.6)))
        for row in chosen:
            i, j = static[row], moving[int(np.argmin(dist[row]))]
            both = np.flatnonzero(visible[i] & visible[j])
            if both.size < 2:
                continue
            t0 = both[0]
            alpha = rng.uniform(0.2, 0.8)
            own = txy[i, both] - txy[i, t0]
            other = txy[j, both] - txy[j, t0]
            txy[i, both] = txy[i, t0] + (1 - alpha) * own + alpha * other
    if static.size and rng.random() < 0.3:
        # a patch of non-rigid background: smooth waves of a few pixels
        centre = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        radius = rng.uniform(0.1, 0.3) * max(w, h)
        inside = static[np.linalg.norm(pos[static] - centre, axis=1) < radius]
        amp = rng.uniform(0.5, 3.0)
        wave = rng.normal(0, 1, 2) / max(w, h) * rng.uniform(5, 30)
        omega = rng.uniform(0.3, 1.5)
        steps = np.arange(t)
        for i in inside:
            phase = float(pos[i] @ wave) + rng.normal(0, 0.3)
            direction = rng.normal(0, 1, 2)
            direction /= max(np.linalg.norm(direction), 1e-9)
            txy[i] += amp * np.sin(omega * steps + phase)[:, None] * direction[None]
    return txy
