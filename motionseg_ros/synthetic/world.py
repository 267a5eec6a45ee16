"""What the synthetic camera looks at: layered static background, ground plane, objects."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from motionseg_ros.synthetic.geometry import rotation, unproject


def background_depth(pixels: np.ndarray, rot: np.ndarray, centre: np.ndarray,
                     layers: np.ndarray, k: np.ndarray, height: int, cam_height: float
                     ) -> np.ndarray:
    """Camera depth at pixels of a frame: the ground plane where nearer, else the layers.

    ``layers``: depths of the background bands; ``height``: image height in pixels;
    ``cam_height``: height of the frame-0 camera above the ground plane, metres.
    """
    ray = np.stack([(pixels[:, 0] - k[0, 2]) / k[0, 0], (pixels[:, 1] - k[1, 2]) / k[1, 1],
                    np.ones(len(pixels))], axis=1)
    ray_w = ray @ rot                      # world direction of each ray (camera z = 1)
    # layered background: bands of random depth by the ray's horizontal angle
    azim = np.arctan2(ray_w[:, 0], ray_w[:, 2])
    idx = np.clip(((azim + np.pi) / (2 * np.pi) * 24).astype(int) % len(layers), 0,
                  len(layers) - 1)
    depth = layers[idx] * (1 + 0.15 * np.sin(3 * pixels[:, 1] / height + idx))
    drop = cam_height - centre[1]
    with np.errstate(divide='ignore', invalid='ignore'):
        ground = np.where(ray_w[:, 1] > 1e-3, drop / ray_w[:, 1], np.inf)
    return np.minimum(depth, np.where(ground > 0, ground, np.inf))


def make_object(rng: np.random.Generator, t: int, k: np.ndarray, size: Tuple[int, int],
                point_density: float, kind: str, moving: bool, cam_pos: np.ndarray,
                cam_rot: np.ndarray) -> Dict[str, np.ndarray]:
    """Points (T, M, 3) of one object over the window, normals, radius, label.

    ``size``: image (height, width); ``point_density``: background points per pixel, so that
    objects get as many tracks per image area; the object is placed in view of the camera
    ``cam_rot``/``cam_pos`` (T, ...) at frame 0 and, for 'with_camera', moves along with it.
    """
    h, w = size
    z = float(np.exp(rng.uniform(np.log(2.0), np.log(30.0))))
    f = k[0, 0]
    r_px = w * float(np.exp(rng.uniform(np.log(0.03), np.log(0.3))))
    radius = r_px * z / f
    px = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.25, 0.85) * h])
    centre0 = unproject(px[None], np.array([z]), cam_rot[0], cam_pos[0], k)[0]
    # as many points per image area as the background (half the surface faces away)
    m = int(np.clip(2.0 * point_density * np.pi * r_px ** 2, 12, 2500))
    # points on an ellipsoid surface
    d = rng.normal(size=(m, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    axes = radius * rng.uniform(0.5, 1.0, 3)
    local = d * axes
    normals = d / axes
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    centres = np.repeat(centre0[None], t, axis=0)
    spins = np.zeros(t)
    offsets = np.zeros((t, m, 3))
    if moving:
        if kind == 'with_camera':
            centres = centre0 + (cam_pos - cam_pos[0])
        else:
            px_speed = rng.uniform(0.15, 1.0) if kind == 'slow' else \
                float(np.exp(rng.uniform(np.log(0.8), np.log(20.0))))
            speed = px_speed * z / f
            heading = rng.uniform(0, 2 * np.pi)
            vel = speed * np.array([np.cos(heading), rng.normal(0, 0.15), np.sin(heading)])
            accel = rng.normal(0, 0.05, 3) * speed
            steps = np.arange(t)[:, None]
            centres = centre0 + steps * vel + 0.5 * steps ** 2 * accel
            spins = np.arange(t) * np.radians(rng.normal(0, 2.0))
            if kind == 'articulated':
                if rng.random() < 0.3:        # in place: only the limbs move
                    centres = centre0 + 0.1 * (centres - centre0)
                offsets = _limb_offsets(rng, t, d, radius)
    pts = np.empty((t, m, 3))
    nrm = np.empty((t, m, 3))
    for i in range(t):
        r = rotation(spins[i], 0.0, 0.0)
        pts[i] = centres[i] + local @ r.T + offsets[i]
        nrm[i] = normals @ r.T
    return {'points': pts, 'normals': nrm, 'centres': centres,
            'radius': np.full(t, float(np.max(axes))), 'label': float(moving)}


def _limb_offsets(rng: np.random.Generator, t: int, d: np.ndarray, radius: float
                  ) -> np.ndarray:
    """(T, M, 3) swings of an articulated object's parts; ``d``: unit directions (M, 3)."""
    parts = int(rng.integers(2, 6))
    part_dir = rng.normal(size=(parts, 3))
    part_dir /= np.linalg.norm(part_dir, axis=1, keepdims=True)
    angle = np.arctan2(d[:, 1], d[:, 0])
    part = np.clip(((angle + np.pi) / (2 * np.pi) * parts).astype(int), 0, parts - 1)
    amp = radius * rng.uniform(0.1, 0.4, parts)
    omega = rng.uniform(0.2, 0.8, parts)
    phase = rng.uniform(0, 2 * np.pi, parts)
    swing = amp[None] * np.sin(omega[None] * np.arange(t)[:, None] + phase[None])
    offsets = swing[:, part, None] * part_dir[part][None]
    # limbs further from the centre swing more
    offsets *= np.clip(np.linalg.norm(d[:, :2], axis=1), 0.2, 1.0)[None, :, None]
    return offsets
