#!/usr/bin/env python3
"""Render the redistributable demo clip ``motionseg_ros/assets/demo.mp4``.

A procedural scene, so the project owns every pixel: a textured ground plane seen by a camera
that pans, rotates and zooms slightly (a homography per frame), and two textured objects that
move across it on their own paths. Deterministic (fixed seed). Also writes the ground-truth
masks next to it when ``--masks DIR`` is given (value = object label), for tests and demos.

    python scripts/render_demo_clip.py [--out motionseg_ros/assets/demo.mp4] [--frames 60]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

W, H = 640, 360


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multi-scale coloured noise with some shapes: trackable everywhere, natural looking."""
    img = np.zeros((h, w, 3), np.float32)
    for scale, amp in ((64, 90), (16, 60), (4, 40), (1, 20)):
        small = rng.random((max(2, h // scale), max(2, w // scale), 3)).astype(np.float32)
        img += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = img / img.max() * 220
    for _ in range(h * w // 4000):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(3, 14)), c, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 24)),
                                        y + int(rng.integers(4, 24))), c, -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def camera(t: float) -> np.ndarray:
    """Homography background-texture -> image at time t in [0, 1] (pan, roll, zoom)."""
    ang = np.deg2rad(4.0 * np.sin(2 * np.pi * t))
    zoom = 1.0 + 0.08 * t
    tx, ty = -200.0 * t - 100.0, -60.0 * np.sin(np.pi * t) - 80.0
    c, s = np.cos(ang) * zoom, np.sin(ang) * zoom
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def render(frames: int, seed: int = 7) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Return the BGR frames and the label masks (1, 2 = objects)."""
    rng = np.random.default_rng(seed)
    bg = texture(rng, H + 400, W + 600)
    objs = []
    for size in ((90, 60), (60, 60)):
        tex = texture(rng, size[1], size[0])
        tex = cv2.addWeighted(tex, 0.6, np.full_like(tex, (30, 60, 200)), 0.4, 0)
        objs.append(tex)
    imgs, masks = [], []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        img = cv2.warpPerspective(bg, camera(t), (W, H), flags=cv2.INTER_LINEAR)
        lab = np.zeros((H, W), np.uint8)
        # object 1 crosses left to right, object 2 goes up diagonally (image coordinates)
        paths = [(60 + 460 * t, 200 + 40 * np.sin(3 * t)), (480 - 220 * t, 300 - 220 * t)]
        for k, (tex, (x, y)) in enumerate(zip(objs, paths), start=1):
            oh, ow = tex.shape[:2]
            ang = 25.0 * t * (1 if k == 1 else -1)
            m = cv2.getRotationMatrix2D((ow / 2, oh / 2), ang, 1.0)
            m[:, 2] += (x - ow / 2, y - oh / 2)
            warped = cv2.warpAffine(tex, m, (W, H))
            shape = np.zeros((oh, ow), np.uint8)
            if k == 1:
                cv2.ellipse(shape, (ow // 2, oh // 2), (ow // 2 - 1, oh // 2 - 1), 0, 0, 360,
                            255, -1)
            else:
                shape[:] = 255
            alpha = cv2.warpAffine(shape, m, (W, H)) > 127
            img[alpha] = warped[alpha]
            lab[alpha] = k
        noise = rng.normal(0, 2.0, img.shape)
        imgs.append(np.clip(img + noise, 0, 255).astype(np.uint8))
        masks.append(lab)
    return imgs, masks


def main() -> int:
    """Render and write the clip (and optionally the masks)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument('--out', default=str(root / 'motionseg_ros' / 'assets' / 'demo.mp4'))
    ap.add_argument('--frames', type=int, default=60)
    ap.add_argument('--fps', type=float, default=15.0)
    ap.add_argument('--masks', default=None, help='also write ground-truth masks here')
    args = ap.parse_args()
    imgs, masks = render(args.frames)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*'mp4v'), args.fps, (W, H))
    if not vw.isOpened():
        print(f'cannot write {out}', file=sys.stderr)
        return 1
    for img in imgs:
        vw.write(img)
    vw.release()
    if args.masks:
        mdir = Path(args.masks)
        mdir.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(masks):
            cv2.imwrite(str(mdir / f'{i:05d}.png'), m)
    print(f'wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {len(imgs)} frames {W}x{H})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
