"""The depth channel of synthetic tracks, as a sensor or a monocular network would give it."""

from __future__ import annotations

from typing import Optional

import numpy as np


def simulated_depth(rng: np.random.Generator, z: np.ndarray, visible: np.ndarray, kind: str
                    ) -> Optional[np.ndarray]:
    """(N, T) float32 depth of tracks at true camera depths ``z``, NaN unknown; None: 'none'.

    'sensor': metric, noise growing with range, holes, limited range; 'monocular':
    affine-invariant disparity with a per-frame scale wobble and noise.
    """
    if kind == 'none':
        return None
    z = np.maximum(z, 0.1)
    n, t = z.shape
    if n == 0:
        return np.zeros((0, t), np.float32)
    if kind == 'sensor':
        rng_max = rng.uniform(5.0, 40.0)
        d = z * (1 + rng.normal(0, 1, z.shape) * rng.uniform(0.001, 0.004) * z)
        holes = rng.random(z.shape) < rng.uniform(0.0, 0.3)
        d = np.where(holes | (z > rng_max), np.nan, d)
    else:
        # affine-invariant disparity, inconsistent scale from frame to frame, noisy
        disp = 1.0 / z
        scale = rng.uniform(0.5, 5.0) * (1 + rng.normal(0, 0.03, (1, t)))
        shift = rng.uniform(0.0, 0.3) * disp.max() * (1 + rng.normal(0, 0.05, (1, t)))
        disp = (disp * scale + shift * scale) * (1 + rng.normal(0, 0.05, (n, t)))
        d = 1.0 / np.maximum(disp, 1e-6)
    return np.where(visible, d, np.nan).astype(np.float32)
