"""motionseg_ros: online segmentation of every moving object in a camera stream.

The pipeline (``motionseg_ros.pipeline``) is plain Python with no ROS import; the ROS node in
``motionseg_ros.ros`` is a thin adapter around it. Generated message classes live in
``motionseg_ros.msg`` once the package is built with colcon.
"""

import os
import pkgutil

# torch's intra-op pool is libgomp's OpenMP team, whose idle workers by default spin before they
# sleep: on a 2-core robot CPU that another process keeps busy they take the core from the
# thread they wait for (default config, demo clip, one busy process: 1.0 fps, 766 ms CPU per
# frame; passive: 7.0 fps, 100 ms, see docs/architecture.md "What runs where"). libgomp reads
# this once, when torch is first imported, so it is set here, before any stage imports torch;
# setdefault: the user's own environment wins (and child processes inherit it).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

# The generated messages (motionseg_ros/msg, type-support libraries) live in the colcon install
# tree, the pure-Python sources may be found first (source checkout, pip -e, cwd on sys.path):
# merge every motionseg_ros folder on sys.path into this package so both are importable.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = '0.1.0'
