"""Camera paths of the synthetic scenes: static, rotating, moving, shaking, following."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from motionseg_ros.synthetic.geometry import rotation


def smooth_noise(rng: np.random.Generator, t: int, sigma: float, dims: int) -> np.ndarray:
    """AR(1) noise (t, dims), cumulated: a shaky but continuous path."""
    out = np.zeros((t, dims))
    vel = np.zeros(dims)
    for i in range(1, t):
        vel = 0.6 * vel + rng.normal(0, sigma, dims)
        out[i] = out[i - 1] + vel
    return out


def camera_path(rng: np.random.Generator, t: int, kind: str, noise: bool,
                follow_target: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(T, 3, 3) world->camera rotations and (T, 3) camera centres of a ``kind`` camera.

    ``noise``: a static camera may vibrate; ``follow_target`` (T, 3): the world path a
    'follow' camera keeps near the image centre (None: it stays put).
    """
    ang = np.zeros((t, 3))      # yaw, pitch, roll
    pos = np.zeros((t, 3))
    steps = np.arange(t)[:, None]
    if kind == 'rotation':
        rate = rng.uniform(-1.0, 1.0, 3) * np.radians([2.0, 0.7, 0.3])
        ang = steps * rate
    elif kind == 'forward':
        pos = steps * np.array([rng.normal(0, 0.02), 0, rng.uniform(0.03, 0.5)])
    elif kind == 'sideways':
        pos = steps * np.array([rng.choice([-1, 1]) * rng.uniform(0.03, 0.4),
                                rng.normal(0, 0.01), rng.normal(0, 0.03)])
        if rng.random() < 0.4:    # orbiting: look back towards the scene
            ang[:, 0] = steps[:, 0] * -np.sign(pos[-1, 0] + 1e-9) * np.radians(
                rng.uniform(0.2, 1.5))
    elif kind == 'vehicle':
        speed = rng.uniform(0.2, 1.5)
        yaw_rate = np.radians(rng.normal(0, 0.8))
        yaw = steps[:, 0] * yaw_rate
        ang[:, 0] = yaw
        pos[1:, 0] = np.cumsum(speed * np.sin(yaw[:-1]))
        pos[1:, 2] = np.cumsum(speed * np.cos(yaw[:-1]))
    elif kind == 'handheld':
        ang = smooth_noise(rng, t, np.radians(rng.uniform(0.1, 0.6)), 3)
        pos = smooth_noise(rng, t, rng.uniform(0.003, 0.03), 3)
    elif kind == 'static':
        if rng.random() < 0.3 and noise:    # tripod vibration
            ang = rng.normal(0, np.radians(0.03), (t, 3))
    if kind in ('handheld', 'forward', 'sideways', 'rotation') and rng.random() < 0.4:
        ang = ang + smooth_noise(rng, t, np.radians(rng.uniform(0.05, 0.3)), 3)
    rots = np.stack([rotation(*a) for a in ang])        # camera->world orientation
    if kind == 'follow' and follow_target is not None:
        # pan and tilt so that the target stays near the image centre, with some lag
        lag = rng.uniform(0.5, 1.0)
        shake = smooth_noise(rng, t, np.radians(0.15), 2)
        trans = rng.random() < 0.5
        for i in range(t):
            d = follow_target[i] - (pos[i] if trans else 0)
            yaw = np.arctan2(d[0], d[2]) * lag + shake[i, 0]
            pitch = -np.arctan2(d[1], np.hypot(d[0], d[2])) * lag + shake[i, 1]
            rots[i] = rotation(yaw, pitch, 0.0)
            if trans and i > 0:
                pos[i] = pos[i - 1] + (follow_target[i] - follow_target[i - 1]) * \
                    rng.uniform(0.3, 0.9)
    # world->camera: transpose of the camera's orientation
    return np.transpose(rots, (0, 2, 1)), pos
