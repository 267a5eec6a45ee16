"""ROS-free run-time parts of ``segment_node``: the newest-frame worker, depth pairing, health.

Kept out of ``motionseg_ros.ros`` so they can be unit-tested (and reused) without ROS; the node
only wires them to topics, parameters and ``/diagnostics``.
"""
