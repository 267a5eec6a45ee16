"""Normalise and sanity-check input frames before they reach any stage.

Every source (CLI reader, ROS node, bag reader) hands frames to the pipeline through here, so
odd inputs get the same clear handling everywhere: grayscale and 4-channel images become BGR,
invalid images raise :class:`FrameError` with the reason, bad depth is dropped with a warning.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from motionseg_ros.types import Frame

#: below this side length no stage can do anything useful (KLT needs a pyramid, flow a patch)
MIN_SIDE = 16


class FrameError(ValueError):
    """The frame cannot be processed; the message says why."""


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) uint8 BGR view/copy of a gray, BGR or BGRA image."""
    if not isinstance(image, np.ndarray):
        raise FrameError(f'image must be a numpy array, got {type(image).__name__}')
    if image.ndim not in (2, 3) or image.size == 0:
        raise FrameError(f'image must be (H, W) or (H, W, C) and non-empty, got {image.shape}')
    if image.dtype != np.uint8:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        elif np.issubdtype(image.dtype, np.floating):
            finite = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
            scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
            image = np.clip(finite * scale, 0, 255).astype(np.uint8)
        else:
            raise FrameError(f'unsupported image dtype {image.dtype}')
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    channels = image.shape[2]
    if channels == 3:
        return image
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    if channels == 4:
        return np.ascontiguousarray(image[:, :, :3])
    raise FrameError(f'unsupported number of channels {channels} (expected 1, 3 or 4)')


def normalise_frame(frame: Frame) -> Tuple[Frame, List[str]]:
    """Return a frame the stages can rely on, and warnings about what was changed or dropped."""
    warnings: List[str] = []
    image = to_bgr8(frame.image)
    h, w = image.shape[:2]
    depth: Optional[np.ndarray] = frame.depth
    if depth is not None:
        depth = np.asarray(depth)
        if depth.shape[:2] != (h, w):
            warnings.append(f'depth {depth.shape[:2]} does not match image {(h, w)}: ignored')
            depth = None
        else:
            depth = depth.astype(np.float32, copy=False)
            if depth.ndim == 3:
                depth = depth[:, :, 0]
            bad = ~np.isfinite(depth) | (depth <= 0)
            if bad.all():
                warnings.append('depth has no valid value (all NaN/inf/<=0): ignored')
                depth = None
            elif bad.any():
                depth = depth.copy()
                depth[bad] = np.nan
    return Frame(image=image, stamp_ns=int(frame.stamp_ns), index=frame.index, name=frame.name,
                 depth=depth, intrinsics=frame.intrinsics), warnings


def too_small(frame: Frame) -> bool:
    """Tell whether the frame is too small to track anything in."""
    h, w = frame.size
    return min(h, w) < MIN_SIDE
