"""segment_node parameters over the real parameter services: refusals and run-time changes."""

from __future__ import annotations

import math

import pytest
from ros_helpers import (SEGMENT_YAML, NodeProcess, Probe, davis_frames, dump_parameters,
                         image_msg, node_executable, require_ros, segment_node_session, stamp_ns)

require_ros()

from motionseg_ros.msg import MotionMasks, TrajectoryArray  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from motionseg_ros import registry  # noqa: E402
from motionseg_ros.config import STAGES, load_config  # noqa: E402
from motionseg_ros.pipeline import PIPELINE_PARAMS  # noqa: E402
from motionseg_ros.ros.params import is_pipeline_key  # noqa: E402

pytestmark = pytest.mark.ros

BASE_NS = 1_700_000_000 * 1_000_000_000


class Harness:
    """The node subprocess, a probe, a parameter client and a frame feeder."""

    def __init__(self, probe: Probe, node: NodeProcess, frames) -> None:
        self.probe, self.node, self.frames = probe, node, frames
        self.client = AsyncParameterClient(probe.node, '/segment_node')
        self.pub = probe.publisher(Image, '/camera/image_raw')
        self.i = 0

    def call(self, future, timeout: float = 10.0):
        assert self.probe.wait_for(future.done, timeout), 'parameter service did not answer'
        return future.result()

    def set(self, name: str, value):
        """Set one parameter; return its SetParametersResult."""
        return self.call(self.client.set_parameters([Parameter(name, value=value)])).results[0]

    def get(self, name: str):
        return self.call(self.client.get_parameters([name])).values[0]

    def frame(self) -> TrajectoryArray:
        """Publish the next frame; return the TrajectoryArray published for it."""
        stamp = BASE_NS + self.i * 100_000_000
        self.pub.publish(image_msg(self.frames[self.i % len(self.frames)], stamp))
        self.i += 1

        def mine():
            return [t for t in self.probe.messages('/dynamic_trajectories')
                    if stamp_ns(t.header.stamp) == stamp]
        assert self.probe.wait_for(lambda: bool(mine()), 20.0), self.node.output()[-3000:]
        return mine()[0]


@pytest.fixture(scope='module')
def harness():
    frames = davis_frames('car-shadow', 12)
    with segment_node_session('params_probe') as (probe, node):
        probe.subscribe(MotionMasks, '/motion_masks')
        probe.subscribe(TrajectoryArray, '/dynamic_trajectories')
        h = Harness(probe, node, frames)
        assert h.client.wait_for_services(20.0), 'parameter services not found'
        assert probe.wait_matched(h.pub, ['/dynamic_trajectories'])
        probe.wait_for(lambda: False, 0.5)  # let the node match our subscriptions too
        yield h
        node.interrupt()
        assert node.returncode == 0, node.output()[-3000:]


@pytest.mark.parametrize('name, value, words', [
    ('classifier.threshold', 1.5, ['classifier.threshold']),
    ('classifier.threshold', math.nan, ['classifier.threshold']),
    ('classifier.threshold', 'high', ['type']),
    ('pipeline.stride', 0, ['pipeline.stride']),
    ('depth_slop', -0.1, ['depth_slop']),
    ('pipeline_config', 'gpu.yaml', ['read-only']),
    ('densifier.threshold', 'high', ['type']),          # a float, never a string
    ('densifier.min_area', -0.1, ['densifier.min_area']),
])
def test_invalid_update_refused_with_reason(harness, name, value, words):
    before = harness.get(name)
    result = harness.set(name, value)
    assert not result.successful
    assert result.reason and all(w in result.reason for w in words), result.reason
    assert harness.get(name) == before, 'a refused value was stored'
    assert harness.node.alive()


def test_parameters_from_file_and_descriptors(harness):
    desc = harness.call(harness.client.describe_parameters(
        ['classifier.threshold', 'pipeline.stride', 'pipeline_config'])).descriptors
    thr, stride, cfg = desc
    assert thr.description and thr.floating_point_range[0].to_value == 1.0
    assert stride.integer_range[0].from_value == 1
    assert cfg.read_only
    # left out of the file: the node shows the pipeline's own value, the threshold stored
    # with the default's weights
    assert harness.get('classifier.threshold').double_value == pytest.approx(0.8)


def declared_runtime_params():
    """Every run-time parameter the default pipeline's backends declare, by node name."""
    cfg = load_config()  # the parameters file leaves pipeline_config at the default
    out = {f'pipeline.{p.name}': p for p in PIPELINE_PARAMS}
    for stage in STAGES:
        spec = cfg.get(stage) or {}
        if spec.get('name') not in (None, 'none'):
            cls = registry.resolve(stage, spec['name'])
            out.update({f'{stage}.{p.name}': p for p in cls.runtime_params})
    return out


def test_descriptors_are_the_backends_declarations(harness):
    """The node offers exactly the declared run-time parameters, with their types and ranges."""
    declared = declared_runtime_params()
    listed = harness.call(harness.client.list_parameters()).result.names
    assert {n for n in listed if is_pipeline_key(n)} == set(declared)
    names = sorted(declared)
    descriptors = harness.call(harness.client.describe_parameters(names)).descriptors
    for name, desc in zip(names, descriptors):
        param = declared[name]
        assert desc.name == name and desc.description == param.description
        assert not desc.read_only
        assert desc.type == {bool: 1, int: 2, float: 3, str: 4}[param.kind], name
        floats = [(r.from_value, r.to_value) for r in desc.floating_point_range]
        ints = [(r.from_value, r.to_value) for r in desc.integer_range]
        if param.kind is float:
            assert floats == [(param.low, param.high)] and not ints, name
        elif param.kind is int:
            assert ints == [(param.low, param.high)] and not floats, name
        else:
            assert not floats and not ints, name


@pytest.mark.parametrize('name, value', [('densifier.scale', 0.25),
                                         ('densifier.weights', 'builtin:other'),
                                         ('classifier.weights', 'builtin:motion_only')])
def test_construction_only_parameters_are_not_offered(harness, name, value):
    """What cannot change between frames is no run-time parameter: setting it is refused."""
    result = harness.set(name, value)
    assert not result.successful and 'undeclared' in result.reason, result.reason
    assert name not in harness.call(harness.client.list_parameters()).result.names
    assert harness.node.alive()


def test_declared_densifier_parameter_changes_at_run_time(harness):
    assert harness.get('densifier.min_area').double_value == pytest.approx(0.0005)
    assert harness.set('densifier.min_area', 0.01).successful
    assert harness.frame() is not None and harness.node.alive()
    assert harness.get('densifier.min_area').double_value == pytest.approx(0.01)
    assert harness.set('densifier.min_area', 0.0005).successful
    assert harness.frame() is not None


def test_valid_threshold_change_takes_effect_next_frame(harness):
    assert harness.set('publish_static_trajectories', True).successful
    for _ in range(3):  # warm up; this frame's tracks use the weights' threshold 0.8
        before = harness.frame()
    flags = [t.dynamic for t in before.trajectories]
    assert flags and not all(flags), 'expected static tracks at threshold 0.8'
    for t in before.trajectories:
        assert t.dynamic == (t.dynamic_probability >= 0.8)
    assert harness.set('classifier.threshold', 0.0).successful
    after = harness.frame()  # the very next frame uses the new threshold: every track moves
    assert after.trajectories and all(t.dynamic for t in after.trajectories)
    assert "applied {'classifier.threshold': 0.0}" in harness.node.output()
    assert harness.get('classifier.threshold').double_value == 0.0
    assert harness.set('classifier.threshold', 0.8).successful
    again = harness.frame()
    assert not all(t.dynamic for t in again.trajectories)
    assert harness.set('publish_static_trajectories', False).successful
    only_dynamic = harness.frame()
    assert all(t.dynamic for t in only_dynamic.trajectories)


def test_dump_returns_every_parameter_with_a_value(harness):
    """``ros2 param dump`` used to print ``ros__parameters: {}`` (pipeline_overrides unset)."""
    from rcl_interfaces.msg import ParameterType
    values = dump_parameters(harness.probe, '/segment_node')
    for name in ('pipeline_overrides', 'pipeline_config', 'classifier.threshold',
                 'depth_slop', 'use_sim_time'):
        assert name in values, sorted(values)
    unset = [n for n, v in values.items() if v.type == ParameterType.PARAMETER_NOT_SET]
    assert not unset, f'parameters without a value: {unset}'
    assert values['pipeline_overrides'].type == ParameterType.PARAMETER_STRING_ARRAY
    assert list(values['pipeline_overrides'].string_array_value) == []


def test_qos_override_from_params_file(harness, tmp_path):
    """A reliable camera driver: the params file switches the image subscription to reliable."""
    from rclpy.qos import QoSReliabilityPolicy
    qos_yaml = tmp_path / 'qos.yaml'
    qos_yaml.write_text('/**/segment_qos:\n  ros__parameters:\n    qos_overrides:\n'
                        '      /qos_test/image_raw:\n        subscription:\n'
                        '          reliability: reliable\n          depth: 1\n')
    node = NodeProcess(node_executable() + [
        '--ros-args', '-r', '__node:=segment_qos', '-r', 'image:=/qos_test/image_raw',
        '--params-file', str(SEGMENT_YAML), '--params-file', str(qos_yaml)])
    try:
        assert node.wait_output('ready', 60), node.output()
        probe = harness.probe
        assert probe.wait_for(
            lambda: probe.node.get_subscriptions_info_by_topic('/qos_test/image_raw'), 10.0)
        (info,) = probe.node.get_subscriptions_info_by_topic('/qos_test/image_raw')
        assert info.qos_profile.reliability == QoSReliabilityPolicy.RELIABLE
        node.interrupt()
        assert node.returncode == 0
    finally:
        node.close()
