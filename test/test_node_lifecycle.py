"""segment_node as a managed node: transitions over the lifecycle services, and start errors."""

from __future__ import annotations

import pytest
from ros_helpers import (SEGMENT_YAML, NodeProcess, Probe, davis_frames, dump_parameters,
                         image_msg, isolate_dds, node_executable, require_ros, stamp_ns)

require_ros()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from motionseg_ros.msg import MotionMasks, TrajectoryArray  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def probe():
    isolate_dds()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    p = Probe(ctx, 'lifecycle_probe')
    yield p
    p.close()
    rclpy.shutdown(context=ctx)


def _call(probe: Probe, client, request):
    assert client.wait_for_service(20.0), f'{client.srv_name} not available'
    future = client.call_async(request)
    assert probe.wait_for(future.done, 20.0), f'{client.srv_name} did not answer'
    return future.result()


def test_transitions_over_lifecycle_services(probe):
    frames = davis_frames('car-shadow', 3)
    probe.subscribe(MotionMasks, '/motion_masks')
    probe.subscribe(TrajectoryArray, '/dynamic_trajectories')
    probe.subscribe(DiagnosticArray, '/diagnostics')
    pub = probe.publisher(Image, '/camera/image_raw')
    node = NodeProcess(node_executable() + [
        '--ros-args', '-r', 'image:=/camera/image_raw', '--params-file', str(SEGMENT_YAML),
        '-p', 'autostart:=false'])
    get_state = probe.node.create_client(GetState, '/segment_node/get_state')
    change = probe.node.create_client(ChangeState, '/segment_node/change_state')

    def state() -> int:
        return _call(probe, get_state, GetState.Request()).current_state.id

    def transition(tid: int) -> bool:
        return _call(probe, change, ChangeState.Request(transition=Transition(id=tid))).success

    def reported(label: str) -> bool:
        """Wait until /diagnostics reports the lifecycle state ``label``."""
        return probe.wait_for(lambda: (probe.latest_diagnostics() or {}).get(
            'lifecycle_state') == label, 10.0)

    try:
        assert node.wait_output('waiting for lifecycle transitions', 60), node.output()
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert reported('unconfigured'), probe.latest_diagnostics()
        assert pub.get_subscription_count() == 0, 'subscribed to images before activation'
        # unconfigured: run-time parameters exist already, and a value set now is applied
        # at configure (and kept: not replaced by the pipeline's own value)
        before = dump_parameters(probe, '/segment_node')
        assert 'classifier.threshold' in before and 'pipeline_overrides' in before
        params = AsyncParameterClient(probe.node, '/segment_node')
        future = params.set_parameters([Parameter('classifier.threshold', value=0.0),
                                        Parameter('publish_static_trajectories', value=True)])
        assert probe.wait_for(future.done, 20.0)
        assert all(r.successful for r in future.result().results), future.result()

        assert transition(Transition.TRANSITION_CONFIGURE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        assert reported('inactive'), probe.latest_diagnostics()
        assert probe.wait_for(lambda: probe.node.count_publishers('/motion_masks') == 1, 10.0)
        assert pub.get_subscription_count() == 0

        after = dump_parameters(probe, '/segment_node')
        assert after['classifier.threshold'].double_value == 0.0
        assert "applied {'classifier.threshold': 0.0}" in node.output()

        assert transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        assert reported('active'), probe.latest_diagnostics()
        assert probe.wait_matched(pub, ['/motion_masks', '/dynamic_trajectories'])
        for i, img in enumerate(frames):
            stamp = 1_700_000_000_000_000_000 + i * 50_000_000
            pub.publish(image_msg(img, stamp))
            assert probe.wait_for(lambda s=stamp: any(
                stamp_ns(m.header.stamp) == s
                for m in probe.messages('/dynamic_trajectories')), 20.0), node.output()[-3000:]
        last = probe.messages('/dynamic_trajectories')[-1]
        assert last.trajectories and all(t.dynamic for t in last.trajectories), \
            'the threshold set before configure is not in effect'

        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert probe.wait_for(lambda: pub.get_subscription_count() == 0, 10.0)
        assert transition(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        # and back up again: the pipeline is rebuilt
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert transition(Transition.TRANSITION_ACTIVATE)
        assert probe.wait_matched(pub, ['/motion_masks'])
        pub.publish(image_msg(frames[1], 1_700_000_000_500_000_000))
        assert probe.wait_for(lambda: any(
            stamp_ns(m.header.stamp) == 1_700_000_000_500_000_000
            for m in probe.messages('/motion_masks')), 20.0), node.output()[-3000:]
        node.interrupt()
        assert node.returncode == 0, node.output()[-3000:]
    finally:
        node.close()


def test_bad_pipeline_config_exits_with_reason(probe):
    node = NodeProcess(node_executable() + [
        '--ros-args', '--params-file', str(SEGMENT_YAML),
        '-p', 'pipeline_config:=no_such_config.yaml'])
    try:
        node.proc.wait(60)
        out = node.output()
        assert node.proc.returncode == 1, out
        assert 'no_such_config.yaml' in out and 'not found' in out, out
        assert 'Traceback' not in out, out
    finally:
        node.close()


def test_out_of_range_parameter_at_start_exits_with_reason(probe):
    node = NodeProcess(node_executable() + [
        '--ros-args', '--params-file', str(SEGMENT_YAML), '-p', 'depth_slop:=5.0'])
    try:
        node.proc.wait(60)
        out = node.output()
        assert node.proc.returncode == 1, out
        assert 'depth_slop' in out, out
        assert 'Traceback' not in out, out
    finally:
        node.close()
