"""Parameters of ``segment_node``: declarations, validation, mapping onto the pipeline config.

Two kinds of parameter:

* start-up ones (read-only): which pipeline config to build, which inputs to subscribe to;
* run-time ones: thresholds forwarded to ``StreamingPipeline.set_params`` under their
  ``pipeline_key`` (the node parameter ``classifier.threshold`` is the pipeline's
  ``classifier.threshold``, i.e. config key ``classifier.params.threshold``) and node-level
  settings such as the depth pairing slop.

The declared default of a pipeline-backed parameter is the value the built pipeline actually
uses, so a pipeline config file (``gpu.yaml``) is not silently overridden by a node default;
the parameters file wins only where it names the parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

#: ROS parameter types by name (values of rcl_interfaces/ParameterType)
_TYPES = {'bool': 1, 'int': 2, 'double': 3, 'string': 4, 'string_array': 9}


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: type, default, meaning and valid range."""

    name: str
    kind: str                      # bool | int | double | string | string_array
    default: Any
    description: str
    read_only: bool = False
    bounds: Optional[Tuple[float, float]] = None
    pipeline_key: Optional[str] = None   # forwarded to StreamingPipeline.set_params

    def descriptor(self) -> Any:
        """Return the rcl_interfaces ``ParameterDescriptor`` (ranges enforced by rclpy too)."""
        from rcl_interfaces.msg import (FloatingPointRange, IntegerRange,
                                        ParameterDescriptor)
        desc = ParameterDescriptor(name=self.name, type=_TYPES[self.kind],
                                   description=self.description, read_only=self.read_only)
        if self.bounds is not None:
            lo, hi = self.bounds
            desc.additional_constraints = f'in [{lo}, {hi}]'
            if self.kind == 'int':
                desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
            elif self.kind == 'double':
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(lo), to_value=float(hi), step=0.0)]
        return desc


SPECS: List[ParamSpec] = [
    ParamSpec('pipeline_config', 'string', '',
              'Pipeline YAML merged over the packaged default: a file path or a packaged name '
              '(e.g. gpu.yaml); empty = the packaged CPU default.', read_only=True),
    ParamSpec('pipeline_overrides', 'string_array', None,
              'key=value overrides of the pipeline config applied at start, e.g. '
              '"tracker.params.max_tracks=400".', read_only=True),
    ParamSpec('autostart', 'bool', True,
              'Configure and activate on start; false leaves the lifecycle node unconfigured '
              'for a lifecycle manager.', read_only=True),
    ParamSpec('compressed', 'bool', False,
              'Subscribe to <image>/compressed (sensor_msgs/CompressedImage) instead of '
              '<image> (sensor_msgs/Image).', read_only=True),
    ParamSpec('use_depth', 'bool', False,
              'Subscribe to "depth" (16UC1 mm or 32FC1 m, registered to the image) and pair it '
              'with each image by nearest stamp.', read_only=True),
    ParamSpec('use_camera_info', 'bool', True,
              'Subscribe to "camera_info" and pass its intrinsics to the pipeline.',
              read_only=True),
    ParamSpec('depth_slop', 'double', 0.05,
              'Largest |stamp difference| in seconds between an image and the depth image '
              'paired with it; images without a depth that close are processed without depth.',
              bounds=(0.0, 1.0)),
    ParamSpec('depth_wait', 'double', 0.1,
              'Longest time in seconds the worker waits for a depth image that has not '
              'arrived yet while the depth stream is live (depth often trails its image).',
              bounds=(0.0, 5.0)),
    ParamSpec('publish_static_trajectories', 'bool', False,
              'Include static tracks in dynamic_trajectories (normally only dynamic ones).'),
    ParamSpec('classifier.threshold', 'double', 0.5,
              'Probability above which a point track counts as moving; takes effect on the '
              'next frame.', bounds=(0.0, 1.0), pipeline_key='classifier.threshold'),
    ParamSpec('grouping.min_tracks', 'int', 3,
              'Fewest dynamic tracks that make a new object (declared when the grouping '
              'backend has this parameter).', bounds=(1, 10000),
              pipeline_key='grouping.min_tracks'),
    ParamSpec('densifier.min_area', 'double', 0.0005,
              'Smallest object mask, as a fraction of the image area (declared when the '
              'densifier backend has this parameter).', bounds=(0.0, 0.5),
              pipeline_key='densifier.min_area'),
    ParamSpec('pipeline.stride', 'int', 1,
              'Run the motion classifier every N frames (tracks and masks every frame).',
              bounds=(1, 100), pipeline_key='pipeline.stride'),
]

BY_NAME: Dict[str, ParamSpec] = {s.name: s for s in SPECS}


def check_value(spec: ParamSpec, value: Any) -> Optional[str]:
    """Return why ``value`` is invalid for ``spec``, or None when it is valid."""
    if spec.kind == 'double':
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f'{spec.name} must be a number, got {value!r}'
        if not math.isfinite(float(value)):
            return f'{spec.name} must be finite, got {value!r}'
    if spec.kind == 'int' and (isinstance(value, bool) or not isinstance(value, int)):
        return f'{spec.name} must be an integer, got {value!r}'
    if spec.kind == 'bool' and not isinstance(value, bool):
        return f'{spec.name} must be true or false, got {value!r}'
    if spec.kind == 'string' and not isinstance(value, str):
        return f'{spec.name} must be a string, got {value!r}'
    if spec.bounds is not None:
        lo, hi = spec.bounds
        if not lo <= value <= hi:
            return f'{spec.name} must be in [{lo}, {hi}], got {value!r}'
    if spec.kind == 'string_array' and value is not None:
        for item in value:
            if '=' not in str(item):
                return f'{spec.name}: {item!r} is not key=value'
    return None


def check_pipeline_key(pipeline: Any, key: str) -> Optional[str]:
    """Return why ``pipeline.set_params({key: ...})`` would be refused, or None."""
    stage_name, _, attr = key.partition('.')
    if stage_name == 'pipeline' and attr == 'stride':
        return None
    stage = pipeline.stages.get(stage_name)
    if stage is None:
        return f'the pipeline has no {stage_name} stage'
    if not hasattr(stage, attr):
        return f'{stage_name} backend {stage.backend_name!r} has no parameter {attr!r}'
    return None


def pipeline_value(pipeline: Any, key: str) -> Any:
    """Return the value the pipeline currently uses for a ``set_params`` key (None if none)."""
    stage_name, _, attr = key.partition('.')
    if stage_name == 'pipeline' and attr == 'stride':
        return int(pipeline.stride)
    stage = pipeline.stages.get(stage_name)
    return getattr(stage, attr, None) if stage is not None else None


def validate_update(updates: Sequence[Tuple[str, Any]], pipeline: Any = None) -> Optional[str]:
    """Return the reason a batch of (name, value) updates must be refused, or None."""
    for name, value in updates:
        spec = BY_NAME.get(name)
        if spec is None:
            continue  # use_sim_time, qos_overrides.* ... are rclpy's to check
        reason = check_value(spec, value)
        if reason is None and spec.pipeline_key and pipeline is not None:
            reason = check_pipeline_key(pipeline, spec.pipeline_key)
        if reason is not None:
            return reason
    return None


def pipeline_updates(updates: Sequence[Tuple[str, Any]]) -> Dict[str, Any]:
    """Return the ``set_params`` dict for the pipeline-backed parameters among ``updates``."""
    out: Dict[str, Any] = {}
    for name, value in updates:
        spec = BY_NAME.get(name)
        if spec is not None and spec.pipeline_key:
            out[spec.pipeline_key] = value
    return out
