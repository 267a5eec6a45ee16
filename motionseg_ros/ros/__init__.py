"""ROS 2 glue: message conversions, node parameters and the ``segment_node`` node.

Only this sub-package imports rclpy and message types; the pipeline itself stays ROS-free so
that the CLI, evaluation and tests run without a ROS installation.
"""
