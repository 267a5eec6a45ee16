"""launch/segment.launch.py: arguments and node description (needs launch_ros: robots only).

launch_ros has no wheel on PyPI, so this test skips on machines without a ROS installation;
on a robot (or with ros2/launch and ros2/launch_ros sources installed) it checks that the file
loads, declares every documented argument, and resolves them into the segment_node command
line (parameters file, remappings, namespace, use_sim_time, log level).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

launch = pytest.importorskip('launch', reason='launch (ros2/launch) not installed')
pytest.importorskip('launch_ros', reason='launch_ros not installed (no wheel on PyPI)')

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'segment.launch.py'
ARGS = {'config', 'image_topic', 'depth_topic', 'camera_info_topic', 'namespace',
        'use_sim_time', 'log_level'}


def _description():
    spec = importlib.util.spec_from_file_location('segment_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_declares_documented_arguments():
    desc = _description()
    names = {a.name for a in desc.get_launch_arguments()}
    assert names == ARGS
    for arg in desc.get_launch_arguments():
        assert arg.description and arg.description != 'no description given'


def test_arguments_resolve_into_the_node_command(tmp_path):
    from launch.launch_context import LaunchContext
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
    from launch_ros.actions import Node

    params = tmp_path / 'segment.yaml'
    params.write_text('/**/segment_node:\n  ros__parameters:\n    depth_slop: 0.1\n')
    desc = _description()
    context = LaunchContext()
    values = {'config': str(params), 'image_topic': '/front/image_raw',
              'depth_topic': '/front/depth', 'camera_info_topic': '/front/info',
              'namespace': 'front', 'use_sim_time': 'true', 'log_level': 'debug'}
    context.launch_configurations.update(values)
    node = [e for e in desc.entities if isinstance(e, Node)][0]
    node._perform_substitutions(context)
    assert node.node_package == 'motionseg_ros' and node.node_executable == 'segment_node'
    assert node.expanded_node_namespace == '/front'
    remaps = dict(node.expanded_remapping_rules)
    assert remaps == {'image': '/front/image_raw', 'depth': '/front/depth',
                      'camera_info': '/front/info'}
    assert node._Node__expanded_parameter_arguments, 'no parameters passed'
    files = [str(p) for p, is_file in node._Node__expanded_parameter_arguments if is_file]
    assert str(params) in files
    sim_time = [Path(p).read_text() for p in files if p != str(params)]
    assert any('use_sim_time: true' in text for text in sim_time), sim_time
    arguments = [perform_substitutions(context, normalize_to_list_of_substitutions(a))
                 for a in node._Node__arguments]
    assert arguments == ['--ros-args', '--log-level', 'debug']
