"""StreamingPipeline: frames in one at a time, moving-object masks for the newest frame out.

Online by construction: each result uses only the current and past frames. The tracker keeps
a sliding window of W frames; the classifier runs every ``stride`` frames (between runs, tracks
keep their last probability, new tracks start static); grouping and densification run on every
frame. Memory is bounded by the window and by each stage's own caps, so streams can be endless.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from motionseg_ros import registry
from motionseg_ros.config import STAGES, load_config
from motionseg_ros.frame_checks import normalise_frame, too_small
from motionseg_ros.runtime_params import RuntimeParam, validate
from motionseg_ros.stages import StageContext
from motionseg_ros.track_attributes import DepthHistory, FeatureCache
from motionseg_ros.types import Frame, SegmentationResult, TrackWindow, mask_box


#: run-time parameters of the pipeline itself (keys ``pipeline.<name>``)
PIPELINE_PARAMS = (
    RuntimeParam('stride', int, 'Run the motion classifier every N frames (tracks and masks '
                 'every frame).', 1, 100),
)


def declared_runtime_params(config: Mapping[str, Any]) -> Dict[str, RuntimeParam]:
    """Return the run-time parameters of the backends ``config`` names, by ``set_params`` key.

    Reads the backends' class declarations without building them (no model is loaded), so a
    node can offer its parameters before the pipeline exists.
    """
    out = {f'pipeline.{p.name}': p for p in PIPELINE_PARAMS}
    for stage in STAGES:
        spec = config.get(stage)
        if spec and spec.get('name') not in (None, 'none'):
            cls = registry.resolve(stage, spec['name'])
            out.update({f'{stage}.{p.name}': p for p in getattr(cls, 'runtime_params', ())})
    return out


class StreamingPipeline:
    """The same pipeline for the node, the CLI and evaluation."""

    def __init__(self, config: Optional[Mapping[str, Any]] = None) -> None:
        """Build every stage named in ``config`` (the packaged default when None)."""
        self.config: Dict[str, Any] = dict(config) if config is not None else load_config()
        pipe = self.config.get('pipeline', {})
        self.window = int(pipe.get('window', 16))
        self.stride = validate(PIPELINE_PARAMS, {'stride': pipe.get('stride', 1)},
                               'pipeline')['stride']
        threads = int(pipe.get('opencv_threads', 0))
        if threads > 0:
            # the stages run their OpenCV calls on their own threads; OpenCV's internal pool
            # on top only oversubscribes a small CPU (its idle workers spin)
            import cv2
            cv2.setNumThreads(threads)
        self.stages: Dict[str, Any] = {}
        for stage in STAGES:
            spec = self.config.get(stage)
            if not spec or spec.get('name') in (None, 'none'):
                self.stages[stage] = None
                continue
            params = dict(spec.get('params') or {})
            if stage == 'tracker':
                params.setdefault('window', self.window)
            self.stages[stage] = registry.create(stage, spec['name'], params)
            try:  # a configured value outside its run-time range is a config error too
                self.stages[stage].check_params(self.stages[stage].get_params())
            except ValueError as exc:
                raise registry.BackendError(str(exc)) from exc
        for required in ('tracker', 'classifier', 'grouping', 'densifier'):
            if self.stages[required] is None:
                raise registry.BackendError(f'the pipeline needs a {required} backend')
        self.ctx = StageContext()
        # whole depth maps only for a classifier that samples them (moseg reference_quirks)
        self._depth_history = DepthHistory(self.window, keep_maps=bool(
            getattr(self.stages['classifier'], 'needs_depth_maps', False)))
        self._feature_cache = (FeatureCache(self.stages['features'])
                               if self.stages['features'] is not None else None)
        self._size: Optional[Tuple[int, int]] = None
        self._last_stamp: Optional[int] = None
        self._count = 0
        self._prob_by_id: Dict[int, float] = {}
        self.resets = 0

    # ------------------------------------------------------------------ control
    @property
    def backends(self) -> Dict[str, str]:
        """Return stage -> backend name, for diagnostics."""
        return {k: (v.backend_name if v is not None else 'none') for k, v in self.stages.items()}

    def reset(self) -> None:
        """Forget the stream (all stages and shared state)."""
        for stage in self.stages.values():
            if stage is not None:
                stage.reset()
        self.ctx.reset()
        self._depth_history.reset()
        if self._feature_cache is not None:
            self._feature_cache.reset()
        self._size = None
        self._last_stamp = None
        self._count = 0
        self._prob_by_id = {}
        self.resets += 1

    def runtime_params(self) -> Dict[str, RuntimeParam]:
        """Return every run-time parameter by its ``set_params`` key (``classifier.threshold``)."""
        return declared_runtime_params(self.config)

    def get_params(self) -> Dict[str, Any]:
        """Return the current value of every run-time parameter, by ``set_params`` key."""
        out: Dict[str, Any] = {'pipeline.stride': self.stride}
        for stage_name, stage in self.stages.items():
            if stage is not None:
                out.update({f'{stage_name}.{k}': v for k, v in stage.get_params().items()})
        return out

    def check_params(self, params: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
        """Validate ``{'classifier.threshold': 0.6, ...}``; return the values by stage.

        Raises ValueError naming the first invalid parameter and what it allows. The key may
        also be spelled like the config (``classifier.params.threshold``).
        """
        grouped: Dict[str, Dict[str, Any]] = {}
        for key, value in params.items():
            stage_name, _, attr = key.partition('.')
            if attr.startswith('params.'):
                attr = attr[len('params.'):]
            if stage_name != 'pipeline' and self.stages.get(stage_name) is None:
                raise ValueError(f'unknown parameter {key!r}: the pipeline has no '
                                 f'{stage_name!r} stage')
            grouped.setdefault(stage_name, {})[attr] = value
        return {name: (validate(PIPELINE_PARAMS, values, 'pipeline') if name == 'pipeline'
                       else self.stages[name].check_params(values))
                for name, values in grouped.items()}

    def set_params(self, params: Mapping[str, Any]) -> None:
        """Apply run-time changes given as ``{'classifier.threshold': 0.6, ...}``.

        All changes are validated first and applied only if every one is valid; they take
        effect on the next ``process``.
        """
        for stage_name, values in self.check_params(params).items():
            if stage_name == 'pipeline':
                self.stride = values.get('stride', self.stride)
            else:
                self.stages[stage_name].apply_params(values)

    def close(self) -> None:
        """Free every stage's resources."""
        for stage in self.stages.values():
            if stage is not None:
                stage.close()

    # ------------------------------------------------------------------ processing
    def process(self, frame: Frame) -> SegmentationResult:
        """Segment the moving objects in ``frame`` given the frames seen before it.

        Raises ``FrameError`` for an image that cannot be processed at all; resets (with a
        warning in the result) on a resolution change or a stamp earlier than the last one.
        """
        t_start = time.perf_counter()
        frame, warnings = normalise_frame(frame)
        if self._size is not None and frame.size != self._size:
            warnings.append(f'resolution changed {self._size} -> {frame.size}: pipeline reset')
            self.reset()
        if self._last_stamp is not None and frame.stamp_ns < self._last_stamp:
            warnings.append(f'stamp went backwards ({self._last_stamp} -> {frame.stamp_ns} ns): '
                            'pipeline reset')
            self.reset()
        if too_small(frame):
            result = SegmentationResult.empty(frame, warning=f'frame {frame.size} too small')
            result.warnings = warnings + result.warnings
            return result
        self._size = frame.size
        self._last_stamp = frame.stamp_ns
        self.ctx.new_frame(frame)
        timings: Dict[str, float] = {}
        # frame-only densifier work (dense flow) may overlap the tracker on another core
        self.stages['densifier'].prepare(frame, self.ctx)

        def timed(name: str, fn, *args):
            t0 = time.perf_counter()
            out = fn(*args)
            timings[name] = (time.perf_counter() - t0) * 1e3
            return out

        depth_stage = self.stages['depth']
        if depth_stage is not None:
            depth = timed('depth', depth_stage.estimate, frame, self.ctx)
            if depth is not None:
                frame.depth = depth
        window: TrackWindow = timed('tracker', self.stages['tracker'].update, frame, self.ctx)
        run_classifier = self._count % self.stride == 0
        if window.depth is None:
            self._depth_history.add(frame.stamp_ns, window, frame.depth)
            window.depth = self._depth_history.window_depth(window)
            if self._depth_history.keep_maps and run_classifier:  # only the classifier reads them
                window.depth_maps = self._depth_history.window_maps(window)
        if self._feature_cache is not None and window.num_tracks and window.features is None:
            window.features = timed('features', self._feature_cache.features, frame, window,
                                    self.ctx)

        classifier = self.stages['classifier']
        if window.num_tracks == 0:
            prob = np.zeros(0, np.float32)
        elif run_classifier:
            prob = np.asarray(timed('classifier', classifier.classify, window, self.ctx),
                              np.float32)
            self._prob_by_id = {int(i): float(p) for i, p in zip(window.ids, prob)}
        else:
            prob = np.array([self._prob_by_id.get(int(i), 0.0) for i in window.ids], np.float32)
        dynamic = classifier.decide(prob) if prob.size else np.zeros(0, bool)
        object_ids = timed('grouping', self.stages['grouping'].group, window, dynamic, prob,
                           self.ctx)
        objects = timed('densifier', self.stages['densifier'].densify, frame, window, dynamic,
                        object_ids, prob, self.ctx)
        objects = sorted((o for o in objects if o.mask.any()), key=lambda o: o.id)
        taken = np.zeros(frame.size, bool)
        kept = []
        for obj in objects:  # later objects never overwrite earlier ones: labels are disjoint
            obj.mask = obj.mask & ~taken
            if not obj.mask.any():
                continue
            taken |= obj.mask
            obj.label = len(kept) + 1
            obj.box = mask_box(obj.mask)
            kept.append(obj)
        warnings.extend(str(w) for w in self.ctx.scratch.pop('warnings', []))
        self._count += 1
        timings['total'] = (time.perf_counter() - t_start) * 1e3
        result = SegmentationResult(
            stamp_ns=frame.stamp_ns, frame_index=frame.index, image_size=frame.size,
            objects=kept, tracks=window, dynamic_probability=prob, dynamic=dynamic,
            object_ids=np.asarray(object_ids, np.int64), timings_ms=timings,
            warnings=warnings, classified=run_classifier)
        self.ctx.previous = result
        return result
