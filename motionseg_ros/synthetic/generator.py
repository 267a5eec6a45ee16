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

This module draws the scene and assembles the window; the parts live in ``spec`` (knobs,
sample type, version), ``geometry``, ``camera`` (paths), ``world`` (background, objects),
``tracker`` (the simulated tracker), ``hard_negatives`` (1.1) and ``depth``.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from motionseg_ros.synthetic.camera import camera_path
from motionseg_ros.synthetic.depth import simulated_depth
from motionseg_ros.synthetic.geometry import project, unproject
from motionseg_ros.synthetic.spec import (CAMERA_KINDS, DEPTH_KINDS, GENERATOR_VERSION,
                                          OBJECT_KINDS, SceneSpec, SyntheticWindow)
from motionseg_ros.synthetic.tracker import simulate_tracks
from motionseg_ros.synthetic.world import background_depth, make_object
from motionseg_ros.types import TrackWindow


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

    def _camera_path(self, follow_target: Optional[np.ndarray]
                     ) -> Tuple[np.ndarray, np.ndarray]:
        """(T, 3, 3) world->camera rotations and (T, 3) camera centres."""
        return camera_path(self.rng, self.t, self.camera, self.spec.noise, follow_target)

    def _object(self, kind: str, moving: bool, cam_pos: np.ndarray, cam_rot: np.ndarray
                ) -> Dict[str, np.ndarray]:
        """One object of this scene's camera and image, see :func:`world.make_object`."""
        return make_object(self.rng, self.t, self.k, (self.h, self.w), self.point_density,
                           kind, moving, cam_pos, cam_rot)

    # -- rendering ------------------------------------------------------------------
    def render(self) -> SyntheticWindow:
        """Draw objects and background, render every candidate point, track some."""
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
        rots, pos = self._camera_path(None)
        for kind in kinds:
            objects.append(self._object(kind, True, pos if kind == 'with_camera' else
                                        cam_pos0, cam_rot0))
        if self.camera == 'follow':
            rots, pos = self._camera_path(objects[0]['centres'])
        for _ in range(n_static):
            objects.append(self._object('rigid', False, cam_pos0, cam_rot0))
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
            dep = background_depth(px, rots[seed_t], pos[seed_t], layers, self.k, self.h,
                                   self.cam_height)
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
        return self._window(xy, z, vis, label, kinds, n_static)

    def _window(self, xy: np.ndarray, z: np.ndarray, vis: np.ndarray, label: np.ndarray,
                kinds: List[str], n_static: int) -> SyntheticWindow:
        """Simulate the tracker on candidate points and assemble the window."""
        rng, spec, t = self.rng, self.spec, self.t
        tracks = simulate_tracks(rng, spec, (self.h, self.w), xy, z, vis, label)
        n = tracks.labels.shape[0]
        depth_kind = spec.depth or str(rng.choice(DEPTH_KINDS, p=[0.2, 0.5, 0.3]))
        depth = simulated_depth(rng, tracks.z, tracks.visible, depth_kind)
        stamps = (np.arange(t) * int(1e9 / 30)).astype(np.int64)
        window = TrackWindow(
            ids=np.arange(n, dtype=np.int64), xy=tracks.xy, visible=tracks.visible,
            confidence=tracks.confidence, stamps_ns=stamps, image_size=(self.h, self.w),
            depth=depth)
        meta = {'camera': self.camera, 'object_kinds': kinds, 'num_static_objects': n_static,
                'depth': depth_kind, 'intrinsics': self.k.tolist(),
                'generator_version': GENERATOR_VERSION}
        return SyntheticWindow(window=window, labels=tracks.labels, meta=meta)


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
