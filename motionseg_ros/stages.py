"""The small interfaces every stage backend implements.

Data flow per frame (see docs/architecture.md)::

    Frame -> depth.estimate -> tracker.update -> features.extract
          -> classifier.classify -> grouping.group -> densifier.densify -> SegmentationResult

Stages share per-stream state through :class:`StageContext` (recent frames, the background
motion fitted by whichever stage computed it, the previous result) so that expensive
intermediates are computed once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

from motionseg_ros.runtime_params import RuntimeParam, validate
from motionseg_ros.types import Frame, ObjectMask, SegmentationResult, TrackWindow


@dataclass
class StageContext:
    """Per-stream scratch space shared by the stages; cleared by ``reset``."""

    history: Deque[Frame] = field(default_factory=lambda: deque(maxlen=2))
    previous: Optional[SegmentationResult] = None
    #: 3x3 homography mapping previous-frame pixels to current-frame pixels for the static
    #: background, when some stage fitted one this frame (None otherwise).
    background_homography: Optional[np.ndarray] = None
    #: free-form intermediates keyed by producer, e.g. {'flow': ...}; cleared every frame.
    scratch: Dict[str, Any] = field(default_factory=dict)

    def new_frame(self, frame: Frame) -> None:
        """Start a new frame: remember it and clear the per-frame intermediates."""
        self.history.append(frame)
        self.background_homography = None
        self.scratch = {}

    def reset(self) -> None:
        """Forget the stream."""
        self.history.clear()
        self.previous = None
        self.background_homography = None
        self.scratch = {}


class Stage(ABC):
    """Common base: every backend can be reset and tuned while running.

    ``runtime_params`` declares what may change between frames (see
    :mod:`motionseg_ros.runtime_params`); nothing else can be set at run time.
    """

    backend_name: str = ''
    stage_kind: str = ''    # the config section: tracker, classifier, ...
    runtime_params: ClassVar[Tuple[RuntimeParam, ...]] = ()

    def reset(self) -> None:
        """Forget all per-stream state (new stream, resolution change, time going backwards)."""

    def describe(self) -> str:
        """Return e.g. ``densifier flow``, for messages."""
        return f'{self.stage_kind} {self.backend_name}'.strip() or type(self).__name__

    def get_params(self) -> Dict[str, Any]:
        """Return the current value of every declared run-time parameter."""
        return {p.name: getattr(self, p.name) for p in self.runtime_params}

    def check_params(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        """Return ``params`` validated and converted; ValueError naming a bad one."""
        return validate(self.runtime_params, params, self.describe())

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Change run-time parameters: all of them, or none when one is invalid."""
        self.apply_params(self.check_params(params))

    def apply_params(self, values: Dict[str, Any]) -> None:
        """Apply values already returned by ``check_params`` (must not fail)."""
        for key, value in values.items():
            setattr(self, key, value)

    def close(self) -> None:
        """Free models and memory (GPU); the stage may be rebuilt afterwards."""


class DepthEstimator(Stage):
    """Per-frame depth: from a sensor (the frame's own) or a monocular model."""

    stage_kind = 'depth'

    @abstractmethod
    def estimate(self, frame: Frame, ctx: StageContext) -> Optional[np.ndarray]:
        """Return (H, W) float32 depth (NaN where unknown), or None if there is none."""


class Tracker(Stage):
    """Online point tracker: one frame in, the window of tracks ending at it out."""

    stage_kind = 'tracker'

    @abstractmethod
    def update(self, frame: Frame, ctx: StageContext) -> TrackWindow:
        """Consume ``frame`` and return the tracks over the last W frames, newest last."""


class FeatureExtractor(Stage):
    """Semantic features sampled at track positions (e.g. DINOv2)."""

    stage_kind = 'features'

    @abstractmethod
    def extract(self, frame: Frame, xy: np.ndarray, ctx: StageContext) -> np.ndarray:
        """Return (N, D) float32 features at pixel positions ``xy`` (N, 2) of ``frame``."""


class Classifier(Stage):
    """Moving-vs-static decision per track."""

    stage_kind = 'classifier'

    #: probability above which a track counts as dynamic
    threshold: float = 0.5

    @abstractmethod
    def classify(self, window: TrackWindow, ctx: StageContext) -> np.ndarray:
        """Return (N,) float32 probabilities that each track moves in the world."""

    def decide(self, prob: np.ndarray) -> np.ndarray:
        """Turn probabilities into dynamic flags (backends may override, e.g. adaptive)."""
        return prob >= self.threshold


class Grouper(Stage):
    """Dynamic tracks -> objects, with ids kept across frames."""

    stage_kind = 'grouping'

    @abstractmethod
    def group(self, window: TrackWindow, dynamic: np.ndarray, prob: np.ndarray,
              ctx: StageContext) -> np.ndarray:
        """Return (N,) int64 persistent object ids (-1 for static or ungrouped tracks)."""


class Densifier(Stage):
    """Sparse dynamic tracks -> dense per-object masks for the newest frame."""

    stage_kind = 'densifier'

    def prepare(self, frame: Frame, ctx: StageContext) -> None:
        """Start work that needs only the frame (e.g. dense flow) before the tracker runs.

        Called first for every frame; a backend may run it on other threads so that it overlaps
        the tracker and classifier, and must finish it in ``densify``. Default: nothing.
        """

    @abstractmethod
    def densify(self, frame: Frame, window: TrackWindow, dynamic: np.ndarray,
                object_ids: np.ndarray, prob: np.ndarray, ctx: StageContext
                ) -> List[ObjectMask]:
        """Return one mask per object in ``frame`` (labels are assigned by the pipeline)."""
