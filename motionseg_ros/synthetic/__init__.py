"""Synthetic training data: procedural 3D scenes tracked by a simulated point tracker."""

from motionseg_ros.synthetic.generator import (  # noqa: F401
    CAMERA_KINDS, DEPTH_KINDS, GENERATOR_VERSION, OBJECT_KINDS, SceneSpec, SyntheticWindow,
    generate_window, generate_windows)
