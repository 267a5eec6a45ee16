"""Procedural 3D scenes seen by a moving camera, tracked by a simulated point tracker.

Each sample is one window of T frames in the :class:`~motionseg_ros.types.TrackWindow` layout
(pixels, visibility, confidence, optional depth) with a per-track label: 1 if the 3D point the
track follows moves in the world during the window, else 0. Everything is drawn from a
``numpy.random.Generator`` seeded by the caller, so a (seed, GENERATOR_VERSION) pair always
gives the same windows.

Scene model (camera frame: x right, y down, z forward; world = camera at frame 0):

* camera motion kinds: static, rotation only, forward, sideways, handheld shake, vehicle-like
  (forward + yaw over a ground plane), following an object (pan that keeps it centred);
* static structure: a ground plane and background layers at depths from 3 to 120 m, plus
  static objects (parked-car-like blobs) that must not be called moving;
* 0-5 independently moving objects: rigid (translation + spin), articulated (parts swinging
  around the body), slow, and moving with the camera (still in the image, moving in the world);
* occlusion by nearer objects, back-facing object points, leaving the frame;
* tracker-like noise: jitter, drift, tracks that die (KLT) or come back (TAP-like), tracks
  seeded after the window's start, outliers (jumps);
* depth as a monocular estimate (affine-invariant disparity, per-frame scale wobble, noise) or a
  sensor (metric, noise growing with range, holes, limited range), or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from motionseg_ros.types import TrackWindow

#: bump whenever the distribution of generated windows changes (model cards record it)
GENERATOR_VERSION = '1.1'

CAMERA_KINDS = ('static', 'rotation', 'forward', 'sideways', 'handheld', 'vehicle', 'follow')
OBJECT_KINDS = ('rigid', 'articulated', 'slow', 'with_camera')
DEPTH_KINDS = ('none', 'monocular', 'sensor')


@dataclass
class SceneSpec:
    """Knobs of one window; fields left None are drawn at random."""

    num_frames: Optional[int] = None
    image_size: Optional[Tuple[int, int]] = None       # (height, width)
    camera: Optional[str] = None
    num_moving: Optional[int] = None
    object_kinds: Optional[Sequence[str]] = None
    num_static_objects: Optional[int] = None
    depth: Optional[str] = None
    num_tracks: Optional[int] = None
    noise: bool = True
    #: hard negatives (version 1.1, off by default = the 1.0 distribution): static tracks
    #: near a moving object dragged part-way along with it (KLT at occlusion boundaries,
    #: shadows), patches of background with small coherent non-rigid motion (water,
    #: foliage), both keeping label 0 as real benchmarks label them, and per-track noise
    #: levels with a much noisier textureless patch, visible in the confidence
    hard_negatives: bool = False


@dataclass
class SyntheticWindow:
    """One generated window, its labels and what was drawn."""

    window: TrackWindow
    labels: np.ndarray                    # (N,) float32, 1 = moving in the world
    meta: Dict[str, object] = field(default_factory=dict)


# ---------------------------------------------------------------------------- geometry helpers
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


def _smooth_noise(rng: np.random.Generator, t: int, sigma: float, dims: int) -> np.ndarray:
    """AR(1) noise (t, dims), cumulated: a shaky but continuous path."""
    out = np.zeros((t, dims))
    vel = np.zeros(dims)
    for i in range(1, t):
        vel = 0.6 * vel + rng.normal(0, sigma, dims)
        out[i] = out[i - 1] + vel
    return out


# ---------------------------------------------------------------------------- the generator
class _Scene:
    """Draws one scene and renders its tracks (internal)."""

    def __init__(self, rng: np.random.Generator, spec: SceneSpec) -> None:
        self.rng = rng
        self.spec = spec
        self.t = int(spec.num_frames or (16 if rng.random() < 0.75 else rng.integers(2, 17)))
        if spec.image_size is not None:
            self.h, self.w = spec.image_size
        else:
            self.h, self.w = [(480, 854), (480, 640), (360, 640), (720, 1280), (540, 960),
                              (376, 1241)][rng.integers(0, 6)]
        fov = np.radians(rng.uniform(45, 90))
        f = 0.5 * self.w / np.tan(fov / 2)
        self.k = np.array([[f, 0, self.w / 2], [0, f, self.h / 2], [0, 0, 1.0]])
        self.cam_height = rng.uniform(1.0, 2.2)
        self.camera = spec.camera or CAMERA_KINDS[rng.integers(0, len(CAMERA_KINDS))]

    # -- camera -----------------------------------------------------------------
    def camera_path(self, follow_target: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(T, 3, 3) world->camera rotations and (T, 3) camera centres."""
        rng, t = self.rng, self.t
        ang = np.zeros((t, 3))      # yaw, pitch, roll
        pos = np.zeros((t, 3))
        steps = np.arange(t)[:, None]
        kind = self.camera
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
            ang = _smooth_noise(rng, t, np.radians(rng.uniform(0.1, 0.6)), 3)
            pos = _smooth_noise(rng, t, rng.uniform(0.003, 0.03), 3)
        elif kind == 'static':
            if rng.random() < 0.3 and self.spec.noise:    # tripod vibration
                ang = rng.normal(0, np.radians(0.03), (t, 3))
        if kind in ('handheld', 'forward', 'sideways', 'rotation') and rng.random() < 0.4:
            ang = ang + _smooth_noise(rng, t, np.radians(rng.uniform(0.05, 0.3)), 3)
        rots = np.stack([rotation(*a) for a in ang])        # camera->world orientation
        if kind == 'follow' and follow_target is not None:
            # pan and tilt so that the target stays near the image centre, with some lag
            lag = rng.uniform(0.5, 1.0)
            shake = _smooth_noise(rng, t, np.radians(0.15), 2)
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

    # -- static structure ---------------------------------------------------------
    def background_depth(self, pixels: np.ndarray, rot: np.ndarray, centre: np.ndarray,
                         layers: np.ndarray) -> np.ndarray:
        """Camera depth at pixels of a frame: the ground plane where nearer, else the layers."""
        k = self.k
        ray = np.stack([(pixels[:, 0] - k[0, 2]) / k[0, 0], (pixels[:, 1] - k[1, 2]) / k[1, 1],
                        np.ones(len(pixels))], axis=1)
        ray_w = ray @ rot                      # world direction of each ray (camera z = 1)
        # layered background: bands of random depth by the ray's horizontal angle
        azim = np.arctan2(ray_w[:, 0], ray_w[:, 2])
        idx = np.clip(((azim + np.pi) / (2 * np.pi) * 24).astype(int) % len(layers), 0,
                      len(layers) - 1)
        depth = layers[idx] * (1 + 0.15 * np.sin(3 * pixels[:, 1] / self.h + idx))
        drop = self.cam_height - centre[1]
        with np.errstate(divide='ignore', invalid='ignore'):
            ground = np.where(ray_w[:, 1] > 1e-3, drop / ray_w[:, 1], np.inf)
        return np.minimum(depth, np.where(ground > 0, ground, np.inf))

    # -- objects ------------------------------------------------------------------
    def make_object(self, kind: str, moving: bool, cam_pos: np.ndarray, cam_rot: np.ndarray
                    ) -> Dict[str, np.ndarray]:
        """Points (T, M, 3) of one object over the window, normals, radius, label."""
        rng, t = self.rng, self.t
        z = float(np.exp(rng.uniform(np.log(2.0), np.log(30.0))))
        f = self.k[0, 0]
        r_px = self.w * float(np.exp(rng.uniform(np.log(0.03), np.log(0.3))))
        radius = r_px * z / f
        px = np.array([rng.uniform(0.1, 0.9) * self.w, rng.uniform(0.25, 0.85) * self.h])
        centre0 = unproject(px[None], np.array([z]), cam_rot[0], cam_pos[0], self.k)[0]
        # as many points per image area as the background (half the surface faces away)
        m = int(np.clip(2.0 * self.point_density * np.pi * r_px ** 2, 12, 2500))
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
                    parts = int(rng.integers(2, 6))
                    part_dir = rng.normal(size=(parts, 3))
                    part_dir /= np.linalg.norm(part_dir, axis=1, keepdims=True)
                    angle = np.arctan2(d[:, 1], d[:, 0])
                    part = np.clip(((angle + np.pi) / (2 * np.pi) * parts).astype(int), 0,
                                   parts - 1)
                    amp = radius * rng.uniform(0.1, 0.4, parts)
                    omega = rng.uniform(0.2, 0.8, parts)
                    phase = rng.uniform(0, 2 * np.pi, parts)
                    swing = amp[None] * np.sin(omega[None] * np.arange(t)[:, None] + phase[None])
                    offsets = swing[:, part, None] * part_dir[part][None]
                    # limbs further from the centre swing more
                    offsets *= np.clip(np.linalg.norm(d[:, :2], axis=1), 0.2, 1.0)[None, :, None]
        pts = np.empty((t, m, 3))
        nrm = np.empty((t, m, 3))
        for i in range(t):
            r = rotation(spins[i], 0.0, 0.0)
            pts[i] = centres[i] + local @ r.T + offsets[i]
            nrm[i] = normals @ r.T
        return {'points': pts, 'normals': nrm, 'centres': centres,
                'radius': np.full(t, float(np.max(axes))), 'label': float(moving)}

    # -- rendering ------------------------------------------------------------------
    def render(self) -> SyntheticWindow:
        rng, spec, t = self.rng, self.spec, self.t
        n_moving = int(spec.num_moving if spec.num_moving is not None else
                       rng.choice(6, p=[0.12, 0.38, 0.22, 0.13, 0.08, 0.07]))
        kinds = list(spec.object_kinds or [])
        while len(kinds) < n_moving:
            kinds.append(str(rng.choice(OBJECT_KINDS, p=[0.45, 0.3, 0.13, 0.12])))
        kinds = kinds[:n_moving]
        if self.camera == 'follow' and n_moving == 0:
            self.camera = 'rotation'
        if self.camera == 'static':
            kinds = ['rigid' if k == 'with_camera' else k for k in kinds]
        n_static = int(spec.num_static_objects if spec.num_static_objects is not None
                       else rng.integers(0, 4))
        bg_counts = rng.integers(250, 600, 4)
        self.point_density = float(bg_counts.sum()) / (self.w * self.h)
        # a provisional static camera to place objects; the follow target needs object paths
        cam_rot0 = np.repeat(np.eye(3)[None], t, axis=0)
        cam_pos0 = np.zeros((t, 3))
        objects = []
        # camera path first (objects moving with the camera need it), follow fixes it later
        rots, pos = self.camera_path(None)
        for kind in kinds:
            objects.append(self.make_object(kind, True, pos if kind == 'with_camera' else
                                            cam_pos0, cam_rot0))
        if self.camera == 'follow':
            rots, pos = self.camera_path(objects[0]['centres'])
        for _ in range(n_static):
            objects.append(self.make_object('rigid', False, cam_pos0, cam_rot0))
        # an object whose world motion is negligible over the window is not moving
        for obj in objects:
            if obj['label'] and np.max(np.linalg.norm(
                    obj['points'] - obj['points'][:1], axis=2)) < 1e-3:
                obj['label'] = 0.0

        # static background points, seeded in several frames so later views are covered
        layers = np.exp(rng.uniform(np.log(3.0), np.log(120.0), int(rng.integers(3, 9))))
        bg_pts = []
        for seed_i, seed_t in enumerate(sorted({0, t // 3, (2 * t) // 3, t - 1})):
            m = int(bg_counts[seed_i])
            px = np.stack([rng.uniform(0, self.w, m), rng.uniform(0, self.h, m)], axis=1)
            dep = self.background_depth(px, rots[seed_t], pos[seed_t], layers)
            bg_pts.append(unproject(px, dep, rots[seed_t], pos[seed_t], self.k))
        bg = np.concatenate(bg_pts)
        nb = bg.shape[0]

        # all candidate points: (T, P, 3) positions, visibility, labels, object index
        all_pts = [np.repeat(bg[None], t, axis=0)]
        labels = [np.zeros(nb)]
        owner = [np.full(nb, -1)]
        for j, obj in enumerate(objects):
            all_pts.append(obj['points'])
            labels.append(np.full(obj['points'].shape[1], obj['label']))
            owner.append(np.full(obj['points'].shape[1], j))
        pts = np.concatenate(all_pts, axis=1)
        label = np.concatenate(labels)
        own = np.concatenate(owner)
        p = pts.shape[1]
        xy = np.zeros((t, p, 2))
        z = np.zeros((t, p))
        vis = np.zeros((t, p), bool)
        for i in range(t):
            xy[i], z[i] = project(pts[i], rots[i], pos[i], self.k)
            inside = (z[i] > 0.1) & (xy[i, :, 0] >= 0) & (xy[i, :, 0] < self.w) & \
                (xy[i, :, 1] >= 0) & (xy[i, :, 1] < self.h)
            vis[i] = inside
            for j, obj in enumerate(objects):
                c_px, c_z = project(obj['centres'][i][None], rots[i], pos[i], self.k)
                if c_z[0] <= 0.1:
                    continue
                r_px = self.k[0, 0] * obj['radius'][i] / c_z[0]
                behind = (z[i] > c_z[0]) & (own != j)
                near = np.linalg.norm(xy[i] - c_px[0], axis=1) < 0.85 * r_px
                vis[i] &= ~(behind & near)
                # back-facing points of the object itself
                sel = own == j
                view = pts[i, sel] - pos[i]
                facing = np.sum(obj['normals'][i] * view, axis=1) < 0
                vis[i, np.flatnonzero(sel)] &= facing
        return self._track(xy, z, vis, label, own, objects, kinds, n_static)

    def _track(self, xy: np.ndarray, z: np.ndarray, vis: np.ndarray, label: np.ndarray,
               own: np.ndarray, objects: List[dict], kinds: List[str], n_static: int
               ) -> SyntheticWindow:
        """Simulate the tracker on candidate points and assemble the window."""
        rng, spec, t = self.rng, self.spec, self.t
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
                scale = self._noise_scale(txy, start)
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
                txy = self._hard_negatives(txy, tvis_true & visible, tlab)
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
        inside = (txy[..., 0] >= 0) & (txy[..., 0] < self.w) & (txy[..., 1] >= 0) & \
            (txy[..., 1] < self.h)
        visible &= inside
        conf = np.where(visible, conf, 0.0).astype(np.float32)
        keep = visible.any(axis=1)
        txy, tz, visible, conf, tlab = txy[keep], tz[keep], visible[keep], conf[keep], \
            tlab[keep]
        n = int(keep.sum())
        txy = np.where(visible[..., None], txy, 0.0).astype(np.float32)
        depth_kind = spec.depth or str(rng.choice(DEPTH_KINDS, p=[0.2, 0.5, 0.3]))
        depth = self._depth(tz, visible, depth_kind)
        stamps = (np.arange(t) * int(1e9 / 30)).astype(np.int64)
        window = TrackWindow(
            ids=np.arange(n, dtype=np.int64), xy=txy, visible=visible, confidence=conf,
            stamps_ns=stamps, image_size=(self.h, self.w), depth=depth)
        meta = {'camera': self.camera, 'object_kinds': kinds, 'num_static_objects': n_static,
                'depth': depth_kind, 'intrinsics': self.k.tolist(),
                'generator_version': GENERATOR_VERSION}
        return SyntheticWindow(window=window, labels=tlab, meta=meta)

    def _noise_scale(self, txy: np.ndarray, start: np.ndarray) -> np.ndarray:
        """(N,) noise multipliers: log-normal per track, much larger in a textureless patch.

        Real KLT tracks on asphalt, walls or sky jitter several times more than on texture,
        and their forward-backward error says so; the 1.0 generator gave every track of a
        window the same noise.
        """
        rng = self.rng
        n = txy.shape[0]
        scale = np.exp(rng.normal(0.0, 0.4, n))
        if n and rng.random() < 0.6:
            pos = txy[np.arange(n), np.minimum(start, self.t - 1)]
            centre = np.array([rng.uniform(0, self.w), rng.uniform(0, self.h)])
            radius = rng.uniform(0.15, 0.4) * max(self.w, self.h)
            inside = np.linalg.norm(pos - centre, axis=1) < radius
            scale[inside] *= rng.uniform(2.0, 6.0)
        return scale

    def _hard_negatives(self, txy: np.ndarray, visible: np.ndarray, labels: np.ndarray
                        ) -> np.ndarray:
        """Make some static tracks move a little like something else; labels stay static."""
        rng, t = self.rng, self.t
        txy = txy.copy()
        static = np.flatnonzero(labels < 0.5)
        moving = np.flatnonzero(labels >= 0.5)
        last = np.where(visible.any(axis=1), t - 1 - np.argmax(visible[:, ::-1], axis=1), 0)
        pos = txy[np.arange(txy.shape[0]), last]                   # last visible position
        if moving.size and static.size and rng.random() < 0.7:
            # boundary drag: static tracks within reach of a moving one follow it part-way
            reach = rng.uniform(0.02, 0.06) * max(self.w, self.h)
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
            centre = np.array([rng.uniform(0, self.w), rng.uniform(0, self.h)])
            radius = rng.uniform(0.1, 0.3) * max(self.w, self.h)
            inside = static[np.linalg.norm(pos[static] - centre, axis=1) < radius]
            amp = rng.uniform(0.5, 3.0)
            wave = rng.normal(0, 1, 2) / max(self.w, self.h) * rng.uniform(5, 30)
            omega = rng.uniform(0.3, 1.5)
            steps = np.arange(t)
            for i in inside:
                phase = float(pos[i] @ wave) + rng.normal(0, 0.3)
                direction = rng.normal(0, 1, 2)
                direction /= max(np.linalg.norm(direction), 1e-9)
                txy[i] += amp * np.sin(omega * steps + phase)[:, None] * direction[None]
        return txy

    def _depth(self, z: np.ndarray, visible: np.ndarray, kind: str) -> Optional[np.ndarray]:
        """Depth channel as a sensor or a monocular network would give it, NaN unknown."""
        rng = self.rng
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


def generate_window(seed_or_rng, spec: Optional[SceneSpec] = None) -> SyntheticWindow:
    """Generate one window; ``seed_or_rng`` is an int seed or a numpy Generator."""
    rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else \
        np.random.default_rng(int(seed_or_rng))
    for _ in range(20):   # a scene may, rarely, show no trackable point: draw again
        sample = _Scene(rng, spec or SceneSpec()).render()
        if sample.window.num_tracks >= 2:
            return sample
    raise RuntimeError('synthetic generator: no trackable point in 20 scenes (bad spec?)')


def generate_windows(seed: int, count: int, spec: Optional[SceneSpec] = None
                     ) -> List[SyntheticWindow]:
    """``count`` windows from one seed: window i uses seed sequence (seed, i)."""
    out = []
    for i in range(count):
        out.append(generate_window(np.random.default_rng([int(seed), i]), spec))
    return out
