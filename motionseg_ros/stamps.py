"""Message time stamps as integer nanoseconds, for ROS 2 and ROS 1 messages alike (no ROS)."""

from __future__ import annotations

from typing import Any


def stamp_to_ns(stamp: Any) -> int:
    """Return a ROS 2 (``sec``/``nanosec``) or ROS 1 (``secs``/``nsecs``) time in nanoseconds."""
    sec = getattr(stamp, 'sec', None)
    if sec is None:
        sec = getattr(stamp, 'secs', 0)
    nsec = getattr(stamp, 'nanosec', None)
    if nsec is None:
        nsec = getattr(stamp, 'nsecs', 0)
    return int(sec) * 1_000_000_000 + int(nsec)
