"""``segment_node``: moving-object masks for a camera stream, published as ROS 2 messages.

A thin adapter: the ROS-free parts live in :mod:`motionseg_ros.runtime` (the newest-frame
buffer and worker thread with its exact drop accounting, depth pairing, health statistics)
and the pipeline itself in :mod:`motionseg_ros.pipeline`. Subscription callbacks only offer
the newest image to the worker; the worker converts, segments and publishes; the executor
stays free for new images, parameter requests and the 1 Hz diagnostics timer.

Inputs: ``image`` (sensor_msgs/Image) or ``<image>/compressed`` (CompressedImage) when
``compressed`` is true; ``depth`` when ``use_depth`` is true, paired by nearest stamp within
``depth_slop``; ``camera_info`` for intrinsics. Outputs carry the input image's header.
Warnings the pipeline returns with a result (resets on a resolution change or a stamp going
backwards, GPU out-of-memory degradations) go to rosout (throttled) and to /diagnostics.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, NamedTuple, Optional

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
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
from motionseg_ros.ros import camera_topics
from motionseg_ros.ros import conversions as conv
from motionseg_ros.ros.node_parameters import NodeParameters, SetupError
from motionseg_ros.runtime.depth_pairing import DepthPairer
from motionseg_ros.runtime.frame_worker import FrameWorker, Rejection
from motionseg_ros.runtime.health import HealthStats, Throttle
from motionseg_ros.types import CameraIntrinsics, Frame

#: seconds between two log lines about the same kind of bad input or pipeline warning
WARN_PERIOD_S = 2.0
#: longest wait (s) at exit for the frame in progress
STOP_WAIT_S = 10.0
#: seconds the pipeline's own close (backend thread pools, models) may take at teardown
CLOSE_WAIT_S = 5.0
#: DiagnosticStatus level by health level number (runtime.health.OK / WARN / ERROR)
_LEVELS = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}


class _Input(NamedTuple):
    """An image message waiting for the worker, with its local receipt time."""

    msg: Any
    received: float
    compressed: bool


class SegmentNode(NodeParameters, LifecycleNode):
    """Segment every moving object in a camera stream with ``StreamingPipeline``.

    A managed (lifecycle) node: every parameter is declared on construction; ``configure``
    builds the pipeline (loads models), applies the run-time parameters someone set (in a
    parameters file, on the command line or with ``ros2 param set`` before configure) and
    shows the pipeline's own values for the rest, creates the publishers and starts the
    worker; ``activate`` subscribes to the inputs; ``deactivate`` unsubscribes; ``cleanup``
    frees the pipeline. ``main`` runs configure + activate itself unless ``autostart`` is
    false, so a plain start needs no lifecycle tooling.
    """

    def __init__(self, node_name: str = 'segment_node', **kwargs: Any) -> None:
        """Declare the parameters and the diagnostics; the rest happens on configure.

        Raises :class:`SetupError` with the reason when a parameter is invalid, so ``main``
        can exit with one clear line instead of a traceback.
        """
        super().__init__(node_name, **kwargs)
        self.pipeline: Optional[StreamingPipeline] = None
        self.worker_stuck = False
        self.stats = HealthStats()
        self.worker = FrameWorker(self._handle, self._on_rejected, self._on_worker_error,
                                  name='segment_worker')
        self.depth = DepthPairer()
        self._throttle = Throttle(WARN_PERIOD_S)
        self._intrinsics: Optional[CameraIntrinsics] = None
        self._subs: List[Any] = []
        self._pubs: List[Any] = []
        self._init_parameters()
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
        # Humble: no remapping lookup available
        return camera_topics.resolve(topic, self.get_namespace(), self.get_name())

    @property
    def lifecycle_state(self) -> str:
        """Return the lifecycle state's label from rclpy's state machine (e.g. ``active``)."""
        return str(self._state_machine.current_state[1])

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the pipeline, apply the run-time parameters, create publishers, start work."""
        try:
            self.pipeline = self._build_pipeline()
            self._apply_runtime_parameters(self.pipeline)
        except SetupError as exc:
            self.get_logger().error(str(exc))
            self._close_pipeline()
            return TransitionCallbackReturn.FAILURE
        self._create_publishers()
        self.worker.start()
        self.get_logger().info(f'configured: backends={self.pipeline.backends}')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the inputs."""
        self._create_subscriptions()
        self.get_logger().info(
            f'ready: image={self._image_topic} depth={self.use_depth} '
            f'camera_info={self.use_camera_info}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe; a frame still waiting is dropped."""
        self._destroy_subscriptions()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker, free the pipeline (models) and the publishers."""
        self._teardown()
        self._declare_runtime_parameters()  # those the freed backends lacked exist again
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from any state."""
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self, wait_s: float = 1.5) -> bool:
        """Release subscriptions, worker, publishers and pipeline; False if the worker is stuck.

        Waits up to ``wait_s`` for the frame in progress.
        """
        self._destroy_subscriptions()
        finished = self.worker.stop(wait_s)
        for pub in self._pubs:
            self.destroy_lifecycle_publisher(pub)
        self._pubs = []
        if finished:  # else the pipeline is still in use: freed with the process
            finished = self._close_pipeline()
        return finished

    def _close_pipeline(self, wait_s: float = CLOSE_WAIT_S) -> bool:
        """Close the pipeline, waiting at most ``wait_s``; False (logged) if it did not finish.

        A backend whose close blocks (a helper thread that never returns) must not keep the
        node from exiting: the caller then leaves as it does with a stuck worker.
        """
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is None:
            return True
        closer = threading.Thread(target=pipeline.close, name='pipeline-close', daemon=True)
        closer.start()
        closer.join(wait_s)
        if closer.is_alive():
            self.get_logger().error(f'the pipeline did not close within {wait_s:.0f} s (a '
                                    'backend thread is blocked): leaving it to the process exit')
            return False
        return True

    # ------------------------------------------------------------------ set-up
    def _load_config(self) -> Dict[str, Any]:
        try:
            return load_config(self.pipeline_config or None, self.pipeline_overrides)
        except (ConfigError, BackendError, ValueError, OSError) as exc:
            raise SetupError(f'cannot read pipeline_config={self.pipeline_config!r} '
                             f'overrides={self.pipeline_overrides}: {exc}') from exc

    def _build_pipeline(self) -> StreamingPipeline:
        config = self._load_config()
        try:
            return StreamingPipeline(config)
        except (ConfigError, BackendError, ValueError, OSError, ImportError,
                RuntimeError) as exc:  # e.g. missing model weights: say which and why
            raise SetupError(f'cannot build the pipeline from pipeline_config='
                             f'{self.pipeline_config!r} overrides={self.pipeline_overrides}: '
                             f'{exc}') from exc

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
        self.worker.drop_pending()

    # ------------------------------------------------------------------ callbacks (no inference)
    def _enqueue(self, msg: Any, compressed: bool) -> None:
        self.stats.received()
        self.worker.offer(_Input(msg, time.monotonic(), compressed))

    def _on_image(self, msg: Image) -> None:
        self._enqueue(msg, False)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._enqueue(msg, True)

    def _on_depth(self, msg: Image) -> None:
        self.stats.event('depth_received')
        self.depth.add(conv.stamp_to_ns(msg.header.stamp), msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = conv.intrinsics_from_camera_info(msg)
        except conv.ConversionError as exc:
            self._report('camera_info_rejected', f'camera_info ignored: {exc}')
            return
        self._intrinsics = intrinsics

    # ------------------------------------------------------------------ reporting
    def _report(self, key: str, text: str, count: bool = True) -> None:
        """Count and log (at most every WARN_PERIOD_S per kind) a problem with the input."""
        if count:
            self.stats.event(key)
        self.stats.warning(text)
        if self._throttle.allow(key):
            self.get_logger().warning(text)

    def _on_rejected(self, code: str, text: str) -> None:
        self._report(code, text, count=False)

    def _on_worker_error(self, trace: str) -> None:
        self.get_logger().error(trace, throttle_duration_sec=10.0)

    def _report_pipeline_warnings(self, warnings: List[str]) -> None:
        """Count pipeline warnings for /diagnostics; log each message at most every 2 s."""
        for text in warnings:
            self.stats.pipeline_warning(text)
            if self._throttle.allow(text):
                self.get_logger().warning(f'pipeline: {text}')

    # ------------------------------------------------------------------ worker
    def _pair_depth(self, stamp_ns: int, size: tuple) -> Optional[np.ndarray]:
        """Return the depth (metres) paired with the image, None (reported) if none fits."""
        pairing = self.depth.pair(stamp_ns, self.depth_slop, self.depth_wait,
                                  self.worker.stopping.is_set)
        if pairing.payload is None:
            self._report('depth_unpaired', pairing.problem)
            return None
        try:
            depth = conv.depth_to_metres(pairing.payload)
        except conv.ConversionError as exc:
            self._report('depth_rejected', f'depth ignored for this frame: {exc}')
            return None
        if depth.shape != size:
            self._report('depth_rejected', f'depth {depth.shape} does not match image {size}: '
                         'ignored')
            return None
        self.stats.event('depth_paired')
        return depth

    def _handle(self, item: _Input) -> Optional[Rejection]:
        """Convert, segment and publish one image (worker thread); return why it is rejected."""
        pipeline = self.pipeline
        if pipeline is None:
            return 'shutdown', ''
        changes = self._take_param_changes(pipeline)
        if changes:
            pipeline.set_params(changes)
            self.get_logger().info(f'applied {changes}')
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
        depth = self._pair_depth(stamp_ns, size) if self.use_depth else None
        intrinsics = self._intrinsics
        frame = Frame(image=image, stamp_ns=stamp_ns, index=self.worker.counters()['processed'],
                      depth=depth, intrinsics=intrinsics)
        t0 = time.perf_counter()
        try:
            result = pipeline.process(frame)
        except FrameError as exc:
            return 'invalid_frame', f'image rejected: {exc}'
        proc_ms = (time.perf_counter() - t0) * 1e3
        self._report_pipeline_warnings(result.warnings)
        self._publish(result, header, image, intrinsics)
        self.stats.done((time.monotonic() - item.received) * 1e3, proc_ms)
        self.stats.set_event('objects_last_frame', len(result.objects))
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
        return self.worker.counters()

    def diagnostic_status(self) -> DiagnosticStatus:
        """Return the node's health as one DiagnosticStatus (also used by tests)."""
        counts = self.counters()
        reasons = self.worker.reasons()
        pipeline = self.pipeline
        state = self.lifecycle_state
        values: Dict[str, Any] = dict(counts)
        values.update(self.stats.values())
        values.update({
            'pipeline_resets': pipeline.resets if pipeline else 0,
            'intrinsics': self._intrinsics is not None,
            'lifecycle_state': state,
            'image_topic': self._image_topic,
            'use_sim_time': self.get_parameter('use_sim_time').value,
        })
        if pipeline is not None:
            values.update({f'backend.{k}': v for k, v in pipeline.backends.items()})
        values.update({f'rejected.{k}': v for k, v in sorted(reasons.items())})
        name = self.get_fully_qualified_name()
        status = DiagnosticStatus(name=f'{name}: segmentation', hardware_id=name)
        level, status.message = self.stats.judge(counts, reasons, state == 'active', state,
                                                 self._image_topic)
        status.level = _LEVELS[level]
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        return status

    def _publish_diagnostics(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostic_status()]
        self.pub_diag.publish(msg)

    # ------------------------------------------------------------------ shutdown
    def stop(self, wait_s: float = STOP_WAIT_S) -> Dict[str, int]:
        """Release everything and return the final counters.

        Waits up to ``wait_s`` for the frame in progress: a process must not exit while the
        worker is inside native code (OpenCV, torch), which aborts it; ``worker_stuck`` tells
        the caller it still is. A frame still waiting in the buffer is counted as dropped, so
        the final counters satisfy ``received = processed + dropped + rejected`` exactly.
        """
        self.worker_stuck = not self._teardown(wait_s)
        return self.counters()


def main(args: Optional[List[str]] = None) -> int:
    """Run the node until SIGINT / SIGTERM; return the process exit code."""
    from motionseg_ros.ros.node_main import run
    return run(SegmentNode, SetupError, args)


if __name__ == '__main__':
    raise SystemExit(main())
