"""Start segment_node for one camera.

    ros2 launch motionseg_ros segment.launch.py image_topic:=/camera/image_raw
    ros2 launch motionseg_ros segment.launch.py namespace:=front image_topic:=/front/image_raw
    ros2 launch motionseg_ros segment.launch.py use_sim_time:=true   # with `ros2 bag play --clock`

Outputs (relative to ``namespace``): motion_masks, motion_masks/label_image,
dynamic_trajectories, segment_node/debug_image, segment_node/trajectory_markers, and
/diagnostics. Depth is used when the params file sets ``use_depth: true``.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the node."""
    args = [
        DeclareLaunchArgument(
            'config',
            default_value=PathJoinSubstitution(
                [FindPackageShare('motionseg_ros'), 'config', 'segment.yaml']),
            description='ROS parameters file of segment_node (see config/segment.yaml).'),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description='sensor_msgs/Image input (its /compressed sibling '
                                          'when the params file sets compressed: true).'),
        DeclareLaunchArgument('depth_topic', default_value='/camera/depth/image_raw',
                              description='Depth image registered to the camera image '
                                          '(16UC1 mm or 32FC1 m).'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description='sensor_msgs/CameraInfo of the image.'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its outputs.'),
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
            ('image', LaunchConfiguration('image_topic')),
            ('depth', LaunchConfiguration('depth_topic')),
            ('camera_info', LaunchConfiguration('camera_info_topic')),
        ],
        arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
    )
    return LaunchDescription(args + [node])
