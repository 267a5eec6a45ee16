"""``segment_node``: moving-object masks for a camera stream, published as ROS 2 messages.

Threading model (why): inference takes tens of milliseconds to seconds per frame, so no
subscription callback runs it. Callbacks only store the newest image in a one-slot buffer (a
newer image replaces an unprocessed older one, which is counted as dropped) and wake a worker
thread that runs ``StreamingPipeline.process`` and publishes. The executor thread stays free for
new images, parameter requests and the 1 Hz diagnostics timer. Exactly::

    received = processed + dropped + rejected + in_flight

where ``in_flight`` (0 or 1 frame being processed, plus 0 or 1 waiting) is 0 once the input stops
and the worker has caught up; the final log line states the four counters.

Inputs: ``image`` (sensor_msgs/Image) or ``<image>/compressed`` (CompressedImage) when
``compressed`` is true; ``depth`` when ``use_depth`` is true, paired by nearest stamp within
``depth_slop``; ``camera_info`` for intrinsics. Outputs carry the input image's header.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import traceback
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data)
from rclpy.qos_overriding_options import QoSOverridingOptions

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from motionseg_ros.config import ConfigError, load_config
from motionseg_ros.frame_checks import FrameError, to_bgr8
from motionseg_ros.msg import MotionMasks, TrajectoryArray
from motionseg_ros.pipeline import StreamingPipeline
from motionseg_ros.registry import BackendError
from motionseg_ros.ros import conversions as conv
from motionseg_ros.ros import params as P
from motionseg_ros.types import CameraIntrinsics, Frame

#: seconds between two log lines about the same kind of bad input
WARN_PERIOD_S = 2.0
#: seconds over which input and output rates are measured
RATE_WINDOW_S = 5.0
#: depth images kept for stamp pairing
DEPTH_BUFFER = 10
#: longest wait (s) of the worker for a depth image still on its way
#: a depth stream silent for longer (s) is not waited for
DEPTH_LIVE_S = 1.0


class SetupError(RuntimeError):
    """The node cannot start (bad parameters or pipeline config); the text says why."""


class _Input:
    """An image message waiting for the worker, with its local receipt time."""

    __slots__ = ('msg', 'received', 'compressed')

    def __init__(self, msg: Any, received: float, compressed: bool) -> None:
        self.msg = msg
        self.received = received
        self.compressed = compressed


class SegmentNode(LifecycleNode):
    """Segment every moving object in a camera stream with ``StreamingPipeline``.

    A managed (lifecycle) node: parameters are declared on construction; ``configure`` builds
    the pipeline (loads models), creates the publishers and starts the worker; ``activate``
    subscribes to the inputs; ``deactivate`` unsubscribes; ``cleanup`` frees the pipeline.
    ``main`` runs configure + activate itself unless ``autostart`` is false, so a plain start
    needs no lifecycle tooling.
    """

    def __init__(self, node_name: str = 'segment_node', **kwargs: Any) -> None:
        """Declare the parameters and the diagnostics; the rest happens on configure.

        Raises :class:`SetupError` with the reason when a start-up parameter is invalid, so
        ``main`` can exit with one clear line instead of a traceback.
        """
        super().__init__(node_name, **kwargs)
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._worker: Optional[threading.Thread] = None
        self._pending: Optional[_Input] = None
        self._pending_params: Dict[str, Any] = {}
        self._counts: Dict[str, int] = collections.Counter()
        self._reasons: Dict[str, int] = collections.Counter()
        self._events: Dict[str, int] = collections.Counter()
        self._last_warning = ''
        self._prev_report: Tuple[Dict[str, int], Dict[str, int]] = ({}, {})
        self._warned_at: Dict[str, float] = {}
        self._in_rates: Deque[float] = collections.deque()
        self._out_rates: Deque[float] = collections.deque()
        self._latency_ms: Deque[float] = collections.deque(maxlen=200)
        self._proc_ms: Deque[float] = collections.deque(maxlen=200)
        self._depth: Deque[Tuple[int, Any]] = collections.deque(maxlen=DEPTH_BUFFER)
        self._depth_received_at = -1e9
        self._intrinsics: Optional[CameraIntrinsics] = None
        self._last_size: Optional[Tuple[int, int]] = None
        self._last_stamp_ns: Optional[int] = None
        self._started = time.monotonic()
        self.pipeline: Optional[StreamingPipeline] = None
        self.lifecycle_state = 'unconfigured'
        self._subs: List[Any] = []
        self._pubs: List[Any] = []

        self._declare_startup_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._image_topic = self._resolve('image')
        if self.compressed:
            self._image_topic = self._image_topic.rstrip('/') + '/compressed'
        # diagnostics run in every state, on the steady clock (no /clock needed)
        self.pub_diag = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(
            1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _resolve(self, topic: str) -> str:
        """Return the remapped, fully qualified name of ``topic`` (as image_transport does)."""
        if hasattr(self, 'resolve_topic_name'):  # rclpy >= Iron
            return self.resolve_topic_name(topic)
        ns = self.get_namespace().rstrip('/')  # Humble: no remapping lookup available
        return f'{ns}/{topic}'

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the pipeline, declare its run-time parameters, create publishers, start work."""
        try:
            self.pipeline = self._build_pipeline()
            self._declare_runtime_parameters()
        except SetupError as exc:
            self.get_logger().error(str(exc))
            self._close_pipeline()
            return TransitionCallbackReturn.FAILURE
        self._create_publishers()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, args=(self.pipeline, self._stop),
                                        name='segment_worker', daemon=True)
        self._worker.start()
        self.lifecycle_state = 'inactive'
        self.get_logger().info(f'configured: backends={self.pipeline.backends}')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the inputs."""
        self._create_subscriptions()
        self.lifecycle_state = 'active'
        self.get_logger().info(
            f'ready: image={self._image_topic} depth={self.use_depth} '
            f'camera_info={self.use_camera_info}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe; a frame still waiting is dropped."""
        self._destroy_subscriptions()
        self.lifecycle_state = 'inactive'
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker, free the pipeline (models) and the publishers."""
        self._teardown()
        self.lifecycle_state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from any state."""
        self._teardown()
        self.lifecycle_state = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        self._destroy_subscriptions()
        self._stop_worker()
        for pub in self._pubs:
            self.destroy_lifecycle_publisher(pub)
        self._pubs = []
        self._close_pipeline()

    def _close_pipeline(self) -> None:
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None

    def _stop_worker(self, timeout: float = 1.5) -> None:
        """Stop the worker (waits for the frame in progress); a waiting frame is dropped."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout)
        self._worker = None
        self._drop_pending()

    def _drop_pending(self) -> None:
        with self._lock:
            if self._pending is not None:
                self._pending = None
                self._counts['dropped'] += 1

    # ------------------------------------------------------------------ set-up
    def _declare(self, spec: P.ParamSpec, default: Any = None) -> Any:
        value = spec.default if default is None else default
        if value is None:  # typed but unset (string arrays)
            value = Parameter.Type.STRING_ARRAY
        try:
            param = self.declare_parameter(spec.name, value, spec.descriptor())
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types, all fatal here
            raise SetupError(f'parameter {spec.name}: {exc}') from exc
        reason = P.check_value(spec, param.value) if param.value is not None else None
        if reason is not None:
            raise SetupError(reason)
        return param.value

    def _declare_startup_parameters(self) -> None:
        self.pipeline_config = self._declare(P.BY_NAME['pipeline_config'])
        self.pipeline_overrides = list(self._declare(P.BY_NAME['pipeline_overrides']) or [])
        self.compressed = bool(self._declare(P.BY_NAME['compressed']))
        self.use_depth = bool(self._declare(P.BY_NAME['use_depth']))
        self.use_camera_info = bool(self._declare(P.BY_NAME['use_camera_info']))
        self.depth_slop = float(self._declare(P.BY_NAME['depth_slop']))
        self.depth_wait = float(self._declare(P.BY_NAME['depth_wait']))
        self.static_trajectories = bool(self._declare(P.BY_NAME['publish_static_trajectories']))
        self.autostart = bool(self._declare(P.BY_NAME['autostart']))

    def _build_pipeline(self) -> StreamingPipeline:
        try:
            config = load_config(self.pipeline_config or None, self.pipeline_overrides)
            return StreamingPipeline(config)
        except (ConfigError, BackendError, ValueError, OSError, ImportError,
                RuntimeError) as exc:  # e.g. missing model weights: say which and why
            raise SetupError(f'cannot build the pipeline from pipeline_config='
                             f'{self.pipeline_config!r} overrides={self.pipeline_overrides}: '
                             f'{exc}') from exc

    def _declare_runtime_parameters(self) -> None:
        """Declare pipeline-backed parameters; their default is what the pipeline uses now."""
        overridden = {}
        for spec in P.pipeline_specs(self.pipeline):  # the backends' run-time declarations
            current = spec.default
            if self.has_parameter(spec.name):  # configured before: keep the value set since
                value = self.get_parameter(spec.name).value
            else:
                value = self._declare(spec, current)
            if value != current:
                overridden[spec.pipeline_key] = value
        with self._lock:  # declaring queued every value; the ones that differ are applied here
            self._pending_params.clear()
        if overridden:
            try:
                self.pipeline.set_params(overridden)
            except ValueError as exc:
                raise SetupError(f'pipeline refused {overridden}: {exc}') from exc

    def _create_publishers(self) -> None:
        qos = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)

        def make(msg_type: Any, topic: str) -> Any:
            pub = self.create_lifecycle_publisher(
                msg_type, topic, qos,
                qos_overriding_options=QoSOverridingOptions.with_default_policies())
            self._pubs.append(pub)
            return pub
        self.pub_masks = make(MotionMasks, 'motion_masks')
        self.pub_labels = make(Image, 'motion_masks/label_image')
        self.pub_traj = make(TrajectoryArray, 'dynamic_trajectories')
        self.pub_debug = make(Image, '~/debug_image')
        self.pub_markers = make(MarkerArray, '~/trajectory_markers')

    def _create_subscriptions(self) -> None:
        over = QoSOverridingOptions.with_default_policies()
        if self.compressed:
            self._subs.append(self.create_subscription(
                CompressedImage, self._image_topic, self._on_compressed,
                qos_profile_sensor_data, qos_overriding_options=over))
        else:
            self._subs.append(self.create_subscription(
                Image, 'image', self._on_image, qos_profile_sensor_data,
                qos_overriding_options=over))
        if self.use_depth:
            self._subs.append(self.create_subscription(
                Image, 'depth', self._on_depth, qos_profile_sensor_data,
                qos_overriding_options=over))
        if self.use_camera_info:
            self._subs.append(self.create_subscription(
                CameraInfo, 'camera_info', self._on_camera_info, qos_profile_sensor_data,
                qos_overriding_options=over))

    def _destroy_subscriptions(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._drop_pending()

    # ------------------------------------------------------------------ callbacks (no inference)
    def _enqueue(self, msg: Any, compressed: bool) -> None:
        now = time.monotonic()
        with self._lock:
            self._counts['received'] += 1
            self._in_rates.append(now)
            if self._pending is not None:
                self._counts['dropped'] += 1
            self._pending = _Input(msg, now, compressed)
            self._lock.notify()

    def _on_image(self, msg: Image) -> None:
        self._enqueue(msg, False)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._enqueue(msg, True)

    def _on_depth(self, msg: Image) -> None:
        with self._lock:
            self._events['depth_received'] += 1
            self._depth.append((conv.stamp_to_ns(msg.header.stamp), msg))
            self._depth_received_at = time.monotonic()
            self._lock.notify_all()  # the worker may be waiting for this depth

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = conv.intrinsics_from_camera_info(msg)
        except conv.ConversionError as exc:
            self._report('camera_info_rejected', f'camera_info ignored: {exc}')
            return
        with self._lock:
            self._intrinsics = intrinsics

    def _on_set_parameters(self, params: List[Parameter]) -> SetParametersResult:
        """Refuse invalid updates with the reason; queue valid pipeline ones for the next frame."""
        updates = [(p.name, p.value) for p in params]
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
        pipeline_changes = P.pipeline_updates(updates)
        if pipeline_changes:
            with self._lock:
                self._pending_params.update(pipeline_changes)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ worker
    def _run(self, pipeline: StreamingPipeline, stop: threading.Event) -> None:
        """Process the newest image whenever there is one, until ``stop`` is set."""
        while True:
            with self._lock:
                while self._pending is None and not stop.is_set():
                    self._lock.wait(0.2)
                if stop.is_set():
                    return
                item, self._pending = self._pending, None
                self._counts['in_flight'] = 1
                changes, self._pending_params = self._pending_params, {}
            rejected: Optional[Tuple[str, str]] = None
            try:
                if changes:
                    pipeline.set_params(changes)
                    self.get_logger().info(f'applied {changes}')
                rejected = self._process(pipeline, item)
            except Exception as exc:  # noqa: BLE001 - never let the worker die
                rejected = ('pipeline_error', f'pipeline error: {exc!r}')
                if stop.is_set():  # publishing after shutdown: the frame is dropped
                    rejected = ('shutdown', '')
                else:
                    self.get_logger().error(traceback.format_exc(), throttle_duration_sec=10.0)
            with self._lock:  # one update, so the counters always add up
                self._counts['in_flight'] = 0
                if rejected is not None and rejected[0] == 'shutdown':
                    self._counts['dropped'] += 1
                    return
                if rejected is None:
                    self._counts['processed'] += 1
                else:
                    self._counts['rejected'] += 1
                    self._reasons[rejected[0]] += 1
            if rejected is not None:
                self._report(rejected[0], rejected[1], count=False)

    def _report(self, key: str, text: str, count: bool = True) -> None:
        """Count and log (at most every WARN_PERIOD_S per kind) a problem with the input."""
        now = time.monotonic()
        with self._lock:
            if count:
                self._events[key] += 1
            self._last_warning = text
            last = self._warned_at.get(key)
            if last is not None and now - last < WARN_PERIOD_S:
                return
            self._warned_at[key] = now
        self.get_logger().warning(text)

    def _pair_depth(self, stamp_ns: int, size: Tuple[int, int]) -> Optional[np.ndarray]:
        """Return the depth (metres) nearest in stamp to the image, None if none is close.

        A depth image often arrives just after its colour image: while the depth stream is
        live and nothing newer than the image came yet, wait up to ``depth_wait`` s for it.
        """
        slop_ns = self.depth_slop * 1e9
        deadline = time.monotonic() + self.depth_wait
        with self._lock:
            while True:
                candidates = list(self._depth)
                near = [c for c in candidates if abs(c[0] - stamp_ns) <= slop_ns]
                live = time.monotonic() - self._depth_received_at < DEPTH_LIVE_S
                newer = any(c[0] > stamp_ns + slop_ns for c in candidates)
                remaining = deadline - time.monotonic()
                if near or not live or newer or remaining <= 0 or self._stop.is_set():
                    break
                self._lock.wait(remaining)
        if not candidates:
            self._report('depth_unpaired', 'no depth image received yet')
            return None
        d_stamp, msg = min(candidates, key=lambda c: abs(c[0] - stamp_ns))
        if abs(d_stamp - stamp_ns) > self.depth_slop * 1e9:
            self._report('depth_unpaired', f'no depth within {self.depth_slop:.3f} s of the '
                         f'image (nearest {(d_stamp - stamp_ns) * 1e-9:+.3f} s)')
            return None
        try:
            depth = conv.depth_to_metres(msg)
        except conv.ConversionError as exc:
            self._report('depth_rejected', f'depth ignored for this frame: {exc}')
            return None
        if depth.shape != size:
            self._report('depth_rejected', f'depth {depth.shape} does not match image {size}: '
                         'ignored')
            return None
        with self._lock:
            self._events['depth_paired'] += 1
        return depth

    def _process(self, pipeline: StreamingPipeline, item: _Input) -> Optional[Tuple[str, str]]:
        """Convert, segment and publish one image; return (code, reason) if it is rejected."""
        header = item.msg.header
        try:
            if item.compressed:
                image = conv.compressed_to_bgr8(item.msg)
            else:
                image = conv.image_to_bgr8(item.msg)
        except conv.ConversionError as exc:
            return exc.code, f'image rejected: {exc}'
        stamp_ns = conv.stamp_to_ns(header.stamp)
        size = (int(image.shape[0]), int(image.shape[1]))
        if self._last_size is not None and size != self._last_size:
            self._report('resolution_change', f'resolution changed {self._last_size} -> '
                         f'{size}: tracks restarted')
        if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            self._report('stamp_backwards', f'image stamp went backwards by '
                         f'{(self._last_stamp_ns - stamp_ns) * 1e-9:.3f} s: tracks restarted')
        depth = self._pair_depth(stamp_ns, size) if self.use_depth else None
        with self._lock:
            intrinsics = self._intrinsics
            index = self._counts['processed']
        frame = Frame(image=image, stamp_ns=stamp_ns, index=index, depth=depth,
                      intrinsics=intrinsics)
        t0 = time.perf_counter()
        try:
            result = pipeline.process(frame)
        except FrameError as exc:
            return 'invalid_frame', f'image rejected: {exc}'
        proc_ms = (time.perf_counter() - t0) * 1e3
        self._last_size, self._last_stamp_ns = size, stamp_ns
        self._publish(result, header, image, intrinsics)
        done = time.monotonic()
        with self._lock:
            self._out_rates.append(done)
            self._latency_ms.append((done - item.received) * 1e3)
            self._proc_ms.append(proc_ms)
            self._events['objects_last_frame'] = len(result.objects)
        return None

    def _publish(self, result: Any, header: Any, image: np.ndarray,
                 intrinsics: Optional[CameraIntrinsics]) -> None:
        labels = conv.label_image_msg(result, header)
        self.pub_masks.publish(conv.motion_masks_msg(result, header, labels))
        if self.pub_labels.get_subscription_count():
            self.pub_labels.publish(labels)
        if self.pub_traj.get_subscription_count():
            self.pub_traj.publish(conv.trajectories_msg(result, header,
                                                        self.static_trajectories))
        if self.pub_debug.get_subscription_count():
            overlay = conv.debug_overlay(to_bgr8(image), result)
            self.pub_debug.publish(conv.numpy_to_image(overlay, 'bgr8', header))
        if self.pub_markers.get_subscription_count():
            self.pub_markers.publish(conv.trajectory_markers(result, header, intrinsics))

    # ------------------------------------------------------------------ diagnostics
    def counters(self) -> Dict[str, int]:
        """Return a consistent snapshot of the frame counters."""
        with self._lock:
            c = self._counts
            return {'received': c['received'], 'processed': c['processed'],
                    'dropped': c['dropped'], 'rejected': c['rejected'],
                    'in_flight': c['in_flight'] + (1 if self._pending is not None else 0)}

    @staticmethod
    def _rate(stamps: Deque[float], now: float, since: float) -> float:
        while stamps and stamps[0] < now - RATE_WINDOW_S:
            stamps.popleft()
        span = min(RATE_WINDOW_S, max(now - since, 1e-3))
        return len(stamps) / span

    def diagnostic_status(self) -> DiagnosticStatus:
        """Return the node's health as one DiagnosticStatus (also used by tests)."""
        now = time.monotonic()
        counts = self.counters()
        pipeline = self.pipeline
        with self._lock:
            in_rate = self._rate(self._in_rates, now, self._started)
            out_rate = self._rate(self._out_rates, now, self._started)
            lat = np.array(self._latency_ms) if self._latency_ms else None
            proc = np.array(self._proc_ms) if self._proc_ms else None
            reasons = dict(self._reasons)
            events = dict(self._events)
            last_warning = self._last_warning
            intrinsics = self._intrinsics is not None

        def pct(arr: Optional[np.ndarray], q: float) -> str:
            return 'nan' if arr is None else f'{float(np.percentile(arr, q)):.1f}'

        values = dict(counts)
        values.update({
            'input_rate_hz': f'{in_rate:.2f}', 'output_rate_hz': f'{out_rate:.2f}',
            'latency_p50_ms': pct(lat, 50), 'latency_p95_ms': pct(lat, 95),
            'processing_p50_ms': pct(proc, 50), 'processing_p95_ms': pct(proc, 95),
            'pipeline_resets': pipeline.resets if pipeline else 0, 'intrinsics': intrinsics,
            'lifecycle_state': self.lifecycle_state,
            'image_topic': self._image_topic,
            'use_sim_time': self.get_parameter('use_sim_time').value,
        })
        if pipeline is not None:
            values.update({f'backend.{k}': v for k, v in pipeline.backends.items()})
        values.update({f'rejected.{k}': v for k, v in sorted(reasons.items())})
        values.update({f'events.{k}': v for k, v in sorted(events.items())})
        values['last_warning'] = last_warning
        status = DiagnosticStatus(name=f'{self.get_fully_qualified_name()}: segmentation',
                                  hardware_id=self.get_fully_qualified_name())
        status.level, status.message = self._level(counts, reasons, in_rate, out_rate)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        return status

    def _level(self, counts: Dict[str, int], reasons: Dict[str, int], in_rate: float,
               out_rate: float) -> Tuple[bytes, str]:
        """Judge health from what changed since the previous report (not from totals)."""
        prev_c, prev_r = self._prev_report
        self._prev_report = (dict(counts), dict(reasons))
        new = {k: counts[k] - prev_c.get(k, 0) for k in counts}
        errors = reasons.get('pipeline_error', 0) - prev_r.get('pipeline_error', 0)
        if errors:
            return DiagnosticStatus.ERROR, f'{errors} frame(s) failed in the pipeline'
        if new['rejected']:
            return DiagnosticStatus.WARN, f"{new['rejected']} bad input frame(s) rejected"
        if self.lifecycle_state != 'active':
            return DiagnosticStatus.OK, f'{self.lifecycle_state}: not subscribed to images'
        if counts['received'] == 0:
            return DiagnosticStatus.OK, f'waiting for images on {self._image_topic}'
        if new['received'] and not new['processed'] and not counts['in_flight']:
            return DiagnosticStatus.WARN, 'images arrive but none was processed'
        if new['received'] and new['dropped'] > new['received'] / 2:
            return DiagnosticStatus.WARN, (f'processing slower than input: {out_rate:.1f} Hz out '
                                           f'of {in_rate:.1f} Hz in, frames dropped')
        return DiagnosticStatus.OK, f'{out_rate:.1f} Hz out of {in_rate:.1f} Hz in'

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status()]
        self.pub_diag.publish(msg)

    # ------------------------------------------------------------------ shutdown
    def stop(self) -> Dict[str, int]:
        """Release everything and return the final counters.

        A frame still waiting in the buffer is counted as dropped, so the final counters
        satisfy ``received = processed + dropped + rejected`` exactly.
        """
        self._teardown()
        return self.counters()


def main(args: Optional[List[str]] = None) -> int:
    """Run the node until SIGINT / SIGTERM; return the process exit code."""
    rclpy.init(args=args)
    node: Optional[SegmentNode] = None
    code = 0
    try:
        node = SegmentNode()
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise SetupError('configure failed (reason logged above)')
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                raise SetupError('activate failed (reason logged above)')
        else:
            node.get_logger().info('autostart is false: waiting for lifecycle transitions')
        rclpy.spin(node)
    except SetupError as exc:
        rclpy.logging.get_logger('segment_node').fatal(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            counts = node.stop()
            line = ('final counters: received={received} processed={processed} '
                    'dropped={dropped} rejected={rejected}'.format(**counts))
            if rclpy.ok():
                node.get_logger().info(line)
            else:  # after SIGINT the context is down: rosout can no longer be published to
                print(f'[INFO] [{node.get_name()}]: {line}', file=sys.stderr, flush=True)
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    raise SystemExit(main())
