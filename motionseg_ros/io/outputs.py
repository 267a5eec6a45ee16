"""Writers for ``motionseg run``: indexed PNG masks, overlay video, trajectories, summary.

Layout under the output folder::

    masks/<frame name>.png   8-bit palette PNG, value = object label (0 = static)
    overlay.mp4              input with coloured masks and dynamic tracks (mp4v)
    trajectories.npz         dynamic track positions per frame (track id, object id, x, y)
    summary.json             frames, objects, per-stage timing p50/p95
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import cv2
import numpy as np
from PIL import Image

from motionseg_ros.types import SegmentationResult


def label_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 RGB palette: 0 black, then well-separated colours (DAVIS-like bit mixing)."""
    pal = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


_PALETTE = label_palette()


def write_mask_png(path: Path, labels: np.ndarray) -> None:
    """Write a label image as an 8-bit palette PNG (labels above 255 are clipped to 255)."""
    arr = np.ascontiguousarray(np.clip(labels, 0, 255).astype(np.uint8))
    img = Image.frombuffer('P', (arr.shape[1], arr.shape[0]), arr.tobytes(), 'raw', 'P', 0, 1)
    img.putpalette(_PALETTE.ravel().tolist())
    img.save(path, optimize=False)


def draw_overlay(image: np.ndarray, result: SegmentationResult) -> np.ndarray:
    """Return the BGR image with masks blended in their label colours and dynamic tracks."""
    out = image.copy()
    labels = result.label_image()
    if labels.any():
        colour = _PALETTE[np.minimum(labels, 255)][:, :, ::-1]
        fg = labels > 0
        out[fg] = (0.45 * out[fg] + 0.55 * colour[fg]).astype(np.uint8)
    win = result.tracks
    if win.num_frames:
        for (x, y), dyn, vis in zip(win.xy[:, -1], result.dynamic, win.visible[:, -1]):
            if vis:
                cv2.circle(out, (int(round(x)), int(round(y))), 2,
                           (0, 0, 255) if dyn else (255, 160, 0), -1, cv2.LINE_AA)
    for obj in result.objects:
        x0, y0, x1, y1 = obj.box
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
        cv2.putText(out, f'#{obj.id} {obj.score:.2f}', (x0, max(12, y0 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _percentiles(values: List[float]) -> Dict[str, float]:
    if not values:
        return {'p50': 0.0, 'p95': 0.0, 'mean': 0.0, 'count': 0}
    arr = np.asarray(values, np.float64)
    return {'p50': round(float(np.percentile(arr, 50)), 3),
            'p95': round(float(np.percentile(arr, 95)), 3),
            'mean': round(float(arr.mean()), 3), 'count': int(arr.size)}


class ResultWriter:
    """Write every output of a run; call :meth:`add` per frame and :meth:`close` at the end."""

    def __init__(self, out_dir: Path, fps: float = 30.0, video: bool = True) -> None:
        """Create ``out_dir/masks``; the overlay video starts with the first frame."""
        self.out_dir = Path(out_dir)
        self.mask_dir = self.out_dir / 'masks'
        self.mask_dir.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self.video = bool(video)
        self._writer: Optional[cv2.VideoWriter] = None
        self._timings: Dict[str, List[float]] = {}
        self._objects: Dict[int, Dict[str, Any]] = {}
        self._traj: List[np.ndarray] = []
        self._frames = 0
        self._warnings: List[str] = []
        self._size: Optional[tuple] = None

    def add(self, frame_name: str, image: np.ndarray, result: SegmentationResult) -> None:
        """Write the mask (and overlay frame) of one result and collect statistics."""
        write_mask_png(self.mask_dir / f'{frame_name}.png', result.label_image())
        if self.video:
            h, w = image.shape[:2]
            if self._writer is None:
                self._size = (w, h)
                path = str(self.out_dir / 'overlay.mp4')
                self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'),
                                               self.fps, (w, h))
                if not self._writer.isOpened():
                    self._warnings.append('overlay video could not be opened (codec mp4v)')
                    self.video = False
            if self.video:
                overlay = draw_overlay(image if image.ndim == 3 else
                                       cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), result)
                if (w, h) != self._size:  # resolution changed mid-stream: keep one size
                    overlay = cv2.resize(overlay, self._size)
                self._writer.write(overlay)
        for key, ms in result.timings_ms.items():
            self._timings.setdefault(key, []).append(float(ms))
        for obj in result.objects:
            rec = self._objects.setdefault(obj.id, {'id': obj.id, 'first_frame': frame_name,
                                                    'frames': 0, 'max_area': 0})
            rec['frames'] += 1
            rec['last_frame'] = frame_name
            rec['max_area'] = max(rec['max_area'], obj.area)
        win = result.tracks
        if win.num_frames:
            sel = result.dynamic & win.visible[:, -1]
            if sel.any():
                rows = np.zeros((int(sel.sum()), 5), np.float64)
                rows[:, 0] = self._frames
                rows[:, 1] = win.ids[sel]
                rows[:, 2] = result.object_ids[sel]
                rows[:, 3:5] = win.xy[sel, -1]
                self._traj.append(rows)
        self._warnings.extend(result.warnings)
        self._frames += 1

    def close(self, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Finish the video, write trajectories and summary.json; return the summary."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        traj = np.concatenate(self._traj) if self._traj else np.zeros((0, 5))
        np.savez_compressed(self.out_dir / 'trajectories.npz',
                            frame=traj[:, 0].astype(np.int64),
                            track_id=traj[:, 1].astype(np.int64),
                            object_id=traj[:, 2].astype(np.int64),
                            xy=traj[:, 3:5].astype(np.float32))
        summary: Dict[str, Any] = {
            'frames': self._frames,
            'objects': sorted(self._objects.values(), key=lambda r: r['id']),
            'num_objects': len(self._objects),
            'timing_ms': {k: _percentiles(v) for k, v in self._timings.items()},
            'warnings': sorted(set(self._warnings))[:50],
            'outputs': {'masks': 'masks/', 'trajectories': 'trajectories.npz',
                        'overlay': 'overlay.mp4' if self.video else None},
        }
        if extra:
            summary.update(extra)
        with open(self.out_dir / 'summary.json', 'w', encoding='utf-8') as fh:
            json.dump(summary, fh, indent=2)
        return summary
