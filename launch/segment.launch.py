"""Start segment_node for one camera.

    ros2 launch motionseg_ros segment.launch.py image_topic:=/camera/image_raw
    ros2 launch motionseg_ros segment.launch.py namespace:=front   # /front/camera/image_raw
    ros2 launch motionseg_ros segment.launch.py namespace:=front image_topic:=/front/image_raw
    ros2 launch motionseg_ros segment.launch.py use_sim_time:=true   # with `ros2 bag play --clock`

Inputs: a relative ``image_topic`` follows ``namespace``; ``camera_info_topic`` defaults to the
image's sibling (image_transport's rule: /front/image_raw -> /front/camera_info) and
``depth_topic`` to ``<image's folder>/depth/image_raw``; the resolved names are logged, and a
warning names a setup that reads another camera's topics. Outputs (relative to ``namespace``):
motion_masks, motion_masks/label_image, dynamic_trajectories, segment_node/debug_image,
segment_node/trajectory_markers, and /diagnostics. Depth is used when the params file sets
``use_depth: true``. When segment_node exits with an error (bad config, missing weights) the
launch shuts down and ``ros2 launch`` exits non-zero.
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetLaunchConfiguration
from launch.events.process import ProcessExited
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from motionseg_ros.ros.camera_topics import camera_topics


class NodeFailed(RuntimeError):
    """segment_node exited with an error: raised so that `ros2 launch` returns non-zero."""


def resolve_topics(context: LaunchContext) -> list:
    """Derive the input topics from image_topic and namespace; log them and any warning."""
    value = context.launch_configurations.get
    topics = camera_topics(value('image_topic', ''), value('namespace', ''),
                           value('camera_info_topic', ''), value('depth_topic', ''))
    log = get_logger('segment.launch')
    for warning in topics.warnings:
        log.warning(warning)
    log.info(f'segment_node inputs: image={topics.image} camera_info={topics.camera_info} '
             f'depth={topics.depth} (depth only with use_depth: true)')
    return [SetLaunchConfiguration('_image', topics.image),
            SetLaunchConfiguration('_camera_info', topics.camera_info),
            SetLaunchConfiguration('_depth', topics.depth)]


def fail_on_error_exit(context: LaunchContext) -> None:
    """Turn segment_node's non-zero exit into a launch failure (launch's exit code is 1).

    launch returns non-zero only when an exception reaches its loop (neither a Shutdown
    action nor a process exit code changes it); the exception also shuts the launch down.
    A node stopped by the launch's own shutdown signal is not a failure.
    """
    event = context.locals.event
    code = event.returncode if isinstance(event, ProcessExited) else 0
    if code and not (context.is_shutdown and code < 0):
        raise NodeFailed(f'{event.process_name} exited with code {code} (its error is logged '
                         f'above)')


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node."""
    args = [
        DeclareLaunchArgument(
            'config',
            default_value=PathJoinSubstitution(
                [FindPackageShare('motionseg_ros'), 'config', 'segment.yaml']),
            description='ROS parameters file of segment_node (see config/segment.yaml).'),
        DeclareLaunchArgument('image_topic', default_value='camera/image_raw',
                              description='sensor_msgs/Image input; a relative name follows '
                                          'namespace (its /compressed sibling when the params '
                                          'file sets compressed: true).'),
        DeclareLaunchArgument('depth_topic', default_value='',
                              description="Depth image registered to the camera image (16UC1 mm "
                                          "or 32FC1 m); '' = <image_topic's folder>/depth/"
                                          "image_raw."),
        DeclareLaunchArgument('camera_info_topic', default_value='',
                              description="sensor_msgs/CameraInfo of the image; '' = the image "
                                          "topic's sibling camera_info (image_transport)."),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node, its outputs and relative '
                                          'input topics.'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Use /clock (bag replay).'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='debug, info, warn, error or fatal.'),
    ]
    node = Node(
        package='motionseg_ros',
        executable='segment_node',
        name='segment_node',
        namespace=LaunchConfiguration('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[
            LaunchConfiguration('config'),
            {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                            value_type=bool)},
        ],
        remappings=[
            ('image', LaunchConfiguration('_image')),
            ('depth', LaunchConfiguration('_depth')),
            ('camera_info', LaunchConfiguration('_camera_info')),
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
        on_exit=[OpaqueFunction(function=fail_on_error_exit)],
    )
    return LaunchDescription(args + [OpaqueFunction(function=resolve_topics), node])
