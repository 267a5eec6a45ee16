"""Depth from the frame itself (a depth camera paired with the image by the node)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from motionseg_ros.registry import register
from motionseg_ros.stages import DepthEstimator, StageContext
from motionseg_ros.types import Frame


@register('depth', 'sensor')
class SensorDepth(DepthEstimator):
    """Pass the sensor's metric depth through; invalid pixels are already NaN."""

    def __init__(self, scale: float = 1.0) -> None:
        """``scale`` converts the sensor's unit to metres (e.g. 0.001 for 16UC1 millimetres)."""
        self.scale = float(scale)

    def estimate(self, frame: Frame, ctx: StageContext) -> Optional[np.ndarray]:
        """Return the frame's depth in metres, or None when the frame carries none."""
        if frame.depth is None:
            return None
        return frame.depth.astype(np.float32, copy=False) * np.float32(self.scale)
