"""launch/segment.launch.py: input topic derivation, arguments, node description, exit code.

The topic derivation (``motionseg_ros.ros.camera_topics``) is plain Python and always tested.
launch_ros has no wheel on PyPI, so the launch-file tests skip on machines without a ROS
installation; on a robot (or with ros2/launch and ros2/launch_ros sources installed) they check
that the file loads, declares every documented argument, resolves them into the segment_node
command line, and that a node failing at start makes the launch return non-zero.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import require_ros

from motionseg_ros.ros.camera_topics import camera_topics

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'segment.launch.py'
ARGS = {'config', 'image_topic', 'depth_topic', 'camera_info_topic', 'namespace',
        'use_sim_time', 'log_level'}


@pytest.mark.parametrize('image, ns, info, depth', [
    ('/camera/image_raw', '', '/camera/camera_info', '/camera/depth/image_raw'),
    ('/front/camera/image_raw', 'front', '/front/camera/camera_info',
     '/front/camera/depth/image_raw'),
    ('/front/image_raw', 'front', '/front/camera_info', '/front/depth/image_raw'),
    ('camera/image_raw', '', '/camera/camera_info', '/camera/depth/image_raw'),
    ('camera/image_raw', '/front/', '/front/camera/camera_info',
     '/front/camera/depth/image_raw'),
    ('image', 'rear', '/rear/camera_info', '/rear/depth/image_raw'),
])
def test_camera_info_and_depth_follow_image_and_namespace(image, ns, info, depth):
    topics = camera_topics(image, ns)
    assert (topics.camera_info, topics.depth) == (info, depth)
    assert topics.image.endswith(image.lstrip('/')) and topics.warnings == []


def test_explicit_topics_kept_and_suspicious_ones_warned():
    ok = camera_topics('/front/image_raw', 'front', '/front/camera_info', 'depth/registered')
    assert (ok.camera_info, ok.depth, ok.warnings) == (
        '/front/camera_info', '/front/depth/registered', [])
    # the old docstring example with an explicit camera_info of another camera
    other = camera_topics('/front/image_raw', 'front', '/camera/camera_info')
    assert other.camera_info == '/camera/camera_info'
    assert len(other.warnings) == 1 and '/front/camera_info' in other.warnings[0]
    outside = camera_topics('/camera/image_raw', 'front')
    assert len(outside.warnings) == 1 and 'outside namespace /front' in outside.warnings[0]
    # a transport topic: the node wants the raw name (it adds /compressed itself)
    comp = camera_topics('/cam/image_raw/compressed')
    assert (comp.image, comp.camera_info) == ('/cam/image_raw', '/cam/camera_info')
    assert 'compressed: true' in comp.warnings[0]
    same = camera_topics('/cam/image', depth_topic='/cam/image')
    assert any('same topic /cam/image' in w for w in same.warnings)
    with pytest.raises(ValueError, match='image_topic'):
        camera_topics('')


@pytest.fixture
def launch_ros():
    """Skip without ros2/launch_ros (it imports ros2/launch; the repo's launch/ folder is no
    substitute, though a bare ``import launch`` finds it from the checkout)."""
    pytest.importorskip('launch_ros', reason='launch_ros not installed (no wheel on PyPI)')
    pytest.importorskip('launch.actions', reason='launch (ros2/launch) not installed')


def _description():
    spec = importlib.util.spec_from_file_location('segment_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def test_declares_documented_arguments(launch_ros):
    desc = _description()
    names = {a.name for a in desc.get_launch_arguments()}
    assert names == ARGS
    for arg in desc.get_launch_arguments():
        assert arg.description and arg.description != 'no description given'


def _node_in_context(values):
    """The launch file's Node after its arguments (and the topic derivation) ran."""
    from launch.actions import OpaqueFunction
    from launch.launch_context import LaunchContext
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node
    desc = _description()
    context = LaunchContext()
    for arg in desc.get_launch_arguments():
        if arg.name not in values and arg.default_value is not None:
            values.setdefault(arg.name, perform_substitutions(context, arg.default_value))
    context.launch_configurations.update(values)
    for entity in desc.entities:
        if isinstance(entity, OpaqueFunction):
            for action in entity.execute(context) or []:
                action.execute(context)
    node = [e for e in desc.entities if isinstance(e, Node)][0]
    node._perform_substitutions(context)
    return node, context


def test_arguments_resolve_into_the_node_command(tmp_path, launch_ros):
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions
    params = tmp_path / 'segment.yaml'
    params.write_text('/**/segment_node:\n  ros__parameters:\n    depth_slop: 0.1\n')
    node, context = _node_in_context(
        {'config': str(params), 'image_topic': '/front/image_raw', 'depth_topic': '/front/depth',
         'camera_info_topic': '/front/info', 'namespace': 'front', 'use_sim_time': 'true',
         'log_level': 'debug'})
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


def test_default_inputs_follow_namespace(tmp_path, launch_ros):
    params = tmp_path / 'segment.yaml'
    params.write_text('/**/segment_node:\n  ros__parameters:\n    depth_slop: 0.1\n')
    node, _ = _node_in_context({'config': str(params), 'namespace': 'front'})
    assert dict(node.expanded_remapping_rules) == {
        'image': '/front/camera/image_raw', 'depth': '/front/camera/depth/image_raw',
        'camera_info': '/front/camera/camera_info'}
    node, _ = _node_in_context({'config': str(params), 'namespace': 'front',
                                'image_topic': '/front/image_raw'})
    assert dict(node.expanded_remapping_rules)['camera_info'] == '/front/camera_info'


def test_node_failing_at_start_fails_the_launch(tmp_path, launch_ros):
    """A bad pipeline_config: segment_node exits 1, and so must the launch (it returned 0)."""
    require_ros()   # the launch starts the built segment_node (colcon overlay)
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    bad = tmp_path / 'bad.yaml'
    bad.write_text('/**/segment_node:\n  ros__parameters:\n'
                   f'    pipeline_config: {tmp_path / "missing.yaml"}\n')
    service = LaunchService()
    service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'config': str(bad)}.items())]))
    assert service.run() != 0
