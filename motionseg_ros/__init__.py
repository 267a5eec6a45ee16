"""motionseg_ros: online segmentation of every moving object in a camera stream.

The pipeline (``motionseg_ros.pipeline``) is plain Python with no ROS import; the ROS node in
``motionseg_ros.ros`` is a thin adapter around it. Generated message classes live in
``motionseg_ros.msg`` once the package is built with colcon.
"""

import pkgutil

# The generated messages (motionseg_ros/msg, type-support libraries) live in the colcon install
# tree, the pure-Python sources may be found first (source checkout, pip -e, cwd on sys.path):
# merge every motionseg_ros folder on sys.path into this package so both are importable.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = '0.1.0'
