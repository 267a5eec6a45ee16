"""Pinhole camera geometry of the synthetic scenes (camera frame: x right, y down, z forward)."""

from __future__ import annotations

from typing import Tuple

import numpy as np


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation matrix from yaw (about y), pitch (about x), roll (about z), radians."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def project(points_w: np.ndarray, rot: np.ndarray, centre: np.ndarray, k: np.ndarray
            ) -> Tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) -> pixels (..., 2) and camera depth z (...) for one camera.

    ``rot`` maps world to camera axes, ``centre`` is the camera centre in world coordinates:
    ``X_c = rot @ (X_w - centre)``.
    """
    pc = (points_w - centre) @ rot.T
    z = pc[..., 2]
    zs = np.where(np.abs(z) < 1e-6, 1e-6, z)
    u = k[0, 0] * pc[..., 0] / zs + k[0, 2]
    v = k[1, 1] * pc[..., 1] / zs + k[1, 2]
    return np.stack([u, v], axis=-1), z


def unproject(pixels: np.ndarray, depth: np.ndarray, rot: np.ndarray, centre: np.ndarray,
              k: np.ndarray) -> np.ndarray:
    """Pixels (M, 2) at camera depths (M,) -> world points (M, 3)."""
    x = (pixels[:, 0] - k[0, 2]) / k[0, 0] * depth
    y = (pixels[:, 1] - k[1, 2]) / k[1, 1] * depth
    pc = np.stack([x, y, depth], axis=1)
    return pc @ rot + centre
