"""motionseg_ros: online segmentation of every moving object in a camera stream.

The pipeline (``motionseg_ros.pipeline``) is plain Python with no ROS import; the ROS node in
``motionseg_ros.ros`` is a thin adapter around it. Generated message classes live in
``motionseg_ros.msg`` once the package is built with colcon.
"""

__version__ = '0.1.0'
