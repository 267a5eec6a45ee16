"""What a synthetic window is made of: the knobs of a scene, the sample type, the version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

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
