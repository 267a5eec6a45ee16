"""Data model shared by every pipeline stage.

Pixel coordinates are (x, y) = (column, row) in the input image, float32. Images are BGR uint8
(OpenCV's convention) once they enter the pipeline; conversion happens at the edges (CLI, node).
Stamps are integer nanoseconds so that ROS header stamps survive the round trip exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of the input image (pixels)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        """Return the 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class Frame:
    """One input image with what the sensors gave alongside it.

    ``depth`` is metric (metres) from a sensor or relative from an estimator; NaN or 0 mark
    missing values. ``name`` is what output files are called after (e.g. ``00042``).
    """

    image: np.ndarray
    stamp_ns: int
    index: int = 0
    name: Optional[str] = None
    depth: Optional[np.ndarray] = None
    intrinsics: Optional[CameraIntrinsics] = None

    @property
    def stamp(self) -> float:
        """Return the stamp in seconds."""
        return self.stamp_ns * 1e-9

    @property
    def size(self) -> Tuple[int, int]:
        """Return (height, width) of the image."""
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class TrackWindow:
    """N point tracks over the last T frames (oldest first, newest last).

    A track may start after the window's first frame or end before its last; ``visible`` is
    False wherever a track has no valid position. ``ids`` are persistent across windows.
    ``visibility`` is the tracker's continuous visibility probability where it has one (the
    paper's classifier reads it as an input channel; None = ``visible`` as 0/1).
    ``depth_maps`` holds the whole depth map of every frame, only when a stage asked for them
    (the classifier's ``reference_quirks`` samples maps the way the reference code did).
    """

    ids: np.ndarray                 # (N,) int64
    xy: np.ndarray                  # (N, T, 2) float32
    visible: np.ndarray             # (N, T) bool
    confidence: np.ndarray          # (N, T) float32 in [0, 1]
    stamps_ns: np.ndarray           # (T,) int64
    image_size: Tuple[int, int]     # (height, width)
    depth: Optional[np.ndarray] = None     # (N, T) float32, NaN where unknown
    features: Optional[np.ndarray] = None  # (N, D) float32 semantic features
    visibility: Optional[np.ndarray] = None  # (N, T) float32 in [0, 1], None = visible
    depth_maps: Optional[np.ndarray] = None  # (T, H, W) float32 depth, NaN where unknown

    @property
    def num_tracks(self) -> int:
        """Return the number of tracks N."""
        return int(self.ids.shape[0])

    @property
    def num_frames(self) -> int:
        """Return the number of frames T."""
        return int(self.stamps_ns.shape[0])

    def alive(self) -> np.ndarray:
        """Return the (N,) mask of tracks visible in the newest frame."""
        if self.num_frames == 0:
            return np.zeros(self.num_tracks, dtype=bool)
        return self.visible[:, -1].copy()

    def subset(self, keep: np.ndarray) -> 'TrackWindow':
        """Return the window restricted to tracks selected by a boolean or index array."""
        return TrackWindow(
            ids=self.ids[keep], xy=self.xy[keep], visible=self.visible[keep],
            confidence=self.confidence[keep], stamps_ns=self.stamps_ns,
            image_size=self.image_size,
            depth=None if self.depth is None else self.depth[keep],
            features=None if self.features is None else self.features[keep],
            visibility=None if self.visibility is None else self.visibility[keep],
            depth_maps=self.depth_maps)

    @staticmethod
    def empty(image_size: Tuple[int, int], stamps_ns: Optional[np.ndarray] = None
              ) -> 'TrackWindow':
        """Return a window with no tracks."""
        stamps = np.zeros(0, np.int64) if stamps_ns is None else np.asarray(stamps_ns, np.int64)
        t = stamps.shape[0]
        return TrackWindow(
            ids=np.zeros(0, np.int64), xy=np.zeros((0, t, 2), np.float32),
            visible=np.zeros((0, t), bool), confidence=np.zeros((0, t), np.float32),
            stamps_ns=stamps, image_size=image_size)


@dataclass
class ObjectMask:
    """One moving object in one frame."""

    id: int                          # persistent over time, never reused
    label: int                       # value in the label image (1..K)
    mask: np.ndarray                 # (H, W) bool
    score: float                     # confidence that it moves, [0, 1]
    box: Tuple[int, int, int, int]   # x0, y0, x1, y1 (inclusive-exclusive)
    num_dynamic_tracks: int = 0

    @property
    def area(self) -> int:
        """Return the number of mask pixels."""
        return int(self.mask.sum())


@dataclass
class SegmentationResult:
    """What the pipeline says about the newest frame."""

    stamp_ns: int
    frame_index: int
    image_size: Tuple[int, int]
    objects: List[ObjectMask]
    tracks: TrackWindow
    dynamic_probability: np.ndarray   # (N,) float32
    dynamic: np.ndarray               # (N,) bool
    object_ids: np.ndarray            # (N,) int64, -1 = none
    timings_ms: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    classified: bool = True           # False on frames skipped by the classification stride

    def label_image(self) -> np.ndarray:
        """Return the (H, W) label image: 0 = static, k = objects[k-1].label (uint8 or uint16)."""
        dtype = np.uint8 if len(self.objects) < 256 else np.uint16
        out = np.zeros(self.image_size, dtype=dtype)
        for obj in self.objects:
            out[obj.mask] = obj.label
        return out

    def foreground(self) -> np.ndarray:
        """Return the (H, W) union of all object masks."""
        out = np.zeros(self.image_size, dtype=bool)
        for obj in self.objects:
            out |= obj.mask
        return out

    @staticmethod
    def empty(frame: Frame, window: Optional[TrackWindow] = None,
              warning: Optional[str] = None) -> 'SegmentationResult':
        """Return a result with no objects (e.g. no tracks on a black frame)."""
        window = window if window is not None else TrackWindow.empty(frame.size)
        n = window.num_tracks
        return SegmentationResult(
            stamp_ns=frame.stamp_ns, frame_index=frame.index, image_size=frame.size,
            objects=[], tracks=window, dynamic_probability=np.zeros(n, np.float32),
            dynamic=np.zeros(n, bool), object_ids=-np.ones(n, np.int64),
            warnings=[warning] if warning else [])


def mask_box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1), exclusive upper bounds, of a boolean mask; zeros if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0, 0, 0, 0
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
