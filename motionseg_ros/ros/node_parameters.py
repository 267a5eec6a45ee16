"""Parameters of ``segment_node``: declared at construction, applied when the pipeline exists.

Every parameter has a value from the start (``ros2 param dump`` lists them all, ``ros2 param
set`` works on an unconfigured lifecycle node). Run-time parameters backed by the pipeline are
validated and applied at configure: a value someone set (parameters file, ``-p``, or ``ros2
param set`` before configure) is applied to the pipeline; the others take the value the built
pipeline actually uses, so a pipeline config (``gpu.yaml``) is not silently overridden by a
node default. Later changes are queued and applied by the worker before its next frame.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Set

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from motionseg_ros.registry import BackendError
from motionseg_ros.ros import params as P


class SetupError(RuntimeError):
    """The node cannot start (bad parameters or pipeline config); the text says why."""


class NodeParameters:
    """Mixin for the lifecycle node: declaration, validation and application of parameters."""

    def _init_parameters(self) -> None:
        """Declare every parameter and register the validating set-parameters callback."""
        self._params_lock = threading.Lock()
        self._pending_params: Dict[str, Any] = {}
        self._user_set: Set[str] = set()   # run-time parameters someone gave a value
        self._syncing = False
        self._declare_startup_parameters()
        self._declare_runtime_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _declare(self, spec: P.ParamSpec) -> Any:
        """Declare ``spec`` (a parameters-file value wins over the default); check the value.

        A string array without a default is declared empty rather than unset: rclpy's
        get-parameters service answers nothing for a request naming an unset parameter, so
        ``ros2 param dump`` would print no parameter at all.
        """
        desc = spec.descriptor()
        empty_array = spec.kind == 'string_array' and not spec.default
        if empty_array and desc.read_only:
            desc.read_only = False  # made read-only below, once it has a value
        try:
            param = self.declare_parameter(
                spec.name, Parameter.Type.STRING_ARRAY if empty_array else spec.default, desc)
            if param.value is None:
                self.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY, [])])
            if empty_array and spec.read_only:
                self.set_descriptor(spec.name, spec.descriptor())
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types, all fatal here
            raise SetupError(f'parameter {spec.name}: {exc}') from exc
        value = self.get_parameter(spec.name).value
        reason = P.check_value(spec, value)
        if reason is not None:
            raise SetupError(reason)
        return value

    def _declare_startup_parameters(self) -> None:
        self.pipeline_config = self._declare(P.BY_NAME['pipeline_config'])
        self.pipeline_overrides = list(self._declare(P.BY_NAME['pipeline_overrides']))
        self.compressed = bool(self._declare(P.BY_NAME['compressed']))
        self.use_depth = bool(self._declare(P.BY_NAME['use_depth']))
        self.use_camera_info = bool(self._declare(P.BY_NAME['use_camera_info']))
        self.depth_slop = float(self._declare(P.BY_NAME['depth_slop']))
        self.depth_wait = float(self._declare(P.BY_NAME['depth_wait']))
        self.static_trajectories = bool(self._declare(P.BY_NAME['publish_static_trajectories']))
        self.autostart = bool(self._declare(P.BY_NAME['autostart']))

    def _declare_runtime_parameters(self) -> None:
        """Declare the pipeline-backed parameters not declared yet (before any pipeline).

        They come from the configured backends' declarations. A value given at start
        (parameters file, ``-p``) is remembered as set by the user; the others show the
        configured value until configure shows the pipeline's own value. A config that cannot
        be read declares none here: configure then fails and says why.
        """
        try:
            specs = P.config_specs(self._load_config())
        except (SetupError, BackendError) as exc:
            self.get_logger().warning(f'run-time parameters not declared yet: {exc}')
            return
        given = getattr(self, '_parameter_overrides', {})  # rclpy's start-up values
        with self._node_sets():  # after cleanup the set-parameters callback sees these
            for spec in specs:
                if not self.has_parameter(spec.name):
                    self._declare(spec)
                    if spec.name in given:
                        self._user_set.add(spec.name)

    @contextmanager
    def _node_sets(self) -> Iterator[None]:
        """Mark parameter changes made by the node itself: the callback lets them through."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _apply_runtime_parameters(self, pipeline: Any) -> None:
        """Apply the run-time values someone set; show the pipeline's value for the others.

        Without this, the pipeline config's value (``gpu.yaml``) would be silently replaced
        by a node default.
        """
        wanted: Dict[str, Any] = {}
        for spec in P.pipeline_specs(pipeline):
            current = spec.default
            if not self.has_parameter(spec.name):
                with self._node_sets():
                    self._declare(spec)
            value = self.get_parameter(spec.name).value
            if value == current:
                continue
            if spec.name in self._user_set:
                wanted[spec.pipeline_key] = value
            else:
                with self._node_sets():
                    self.set_parameters([Parameter(spec.name, value=current)])
        with self._params_lock:
            self._pending_params = {}  # values set before configure are applied here
        if wanted:
            try:
                pipeline.set_params(wanted)
            except ValueError as exc:
                raise SetupError(f'pipeline refused {wanted}: {exc}') from exc
            self.get_logger().info(f'applied {wanted}')

    def _on_set_parameters(self, params: List[Parameter]) -> SetParametersResult:
        """Refuse invalid updates with the reason; queue valid pipeline ones for the next frame."""
        updates = [(p.name, p.value) for p in params]
        if self._syncing:  # the node itself declaring, or showing the pipeline's values
            return SetParametersResult(successful=True)
        reason = P.validate_update(updates, self.pipeline)
        if reason is not None:
            self.get_logger().warning(f'parameter update refused: {reason}')
            return SetParametersResult(successful=False, reason=reason)
        for name, value in updates:
            if name == 'depth_slop':
                self.depth_slop = float(value)
            elif name == 'depth_wait':
                self.depth_wait = float(value)
            elif name == 'publish_static_trajectories':
                self.static_trajectories = bool(value)
            elif P.is_pipeline_key(name):
                self._user_set.add(name)
        pipeline_changes = P.pipeline_updates(updates)
        if pipeline_changes and self.pipeline is not None:
            with self._params_lock:
                self._pending_params.update(pipeline_changes)
        return SetParametersResult(successful=True)

    def _take_param_changes(self, pipeline: Any) -> Dict[str, Any]:
        """Return the queued parameter changes that differ from what the pipeline uses."""
        if not self._pending_params:  # the usual frame: no lock, no get_params
            return {}
        with self._params_lock:
            changes, self._pending_params = self._pending_params, {}
        current = pipeline.get_params()
        return {k: v for k, v in changes.items() if current.get(k) != v}
