"""What the bag reader yields, without ROS: topics, messages, decoded images and errors."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from motionseg_ros.image_codec import DEPTH_ONLY

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
#: ground-truth label images (``motionseg make-bag --gt-masks``), never a camera stream
GT_TOPIC = '/gt/masks'


class BagError(Exception):
    """A bag that cannot be read (missing, truncated, corrupt, unsupported): names the file."""


def normalize_type(name: str) -> str:
    """ROS 2 type name: ``sensor_msgs/Image`` -> ``sensor_msgs/msg/Image``."""
    name = name.strip()
    parts = name.split('/')
    if len(parts) == 2:
        return f'{parts[0]}/msg/{parts[1]}'
    return name


@dataclass
class TopicInfo:
    """One topic of a bag."""

    name: str
    msgtype: str       # ROS 2 style name
    count: int


@dataclass
class BagMessage:
    """One message in log-time order; ``raw`` is CDR (ROS 2) or ROS 1 serialized bytes."""

    topic: str
    msgtype: str
    log_ns: int
    raw: bytes
    raw_format: str    # 'cdr' | 'ros1'
    _decode: Any = None

    @property
    def msg(self) -> Any:
        """Return the deserialized message (a rosbags dataclass), decoded on first use."""
        if not isinstance(self._decode, tuple):
            return self._decode
        fn, = self._decode
        self._decode = fn()
        return self._decode


@dataclass
class BagImage:
    """One decoded image message."""

    topic: str
    log_ns: int
    stamp_ns: int
    frame_id: str
    image: np.ndarray   # BGR uint8 (H, W, 3) for camera images; raw values for depth / labels
    encoding: str       # 'bgr8', 'mono8' / 'mono16' (labels, bgr=False), '16UC1' or '32FC1'
    msgtype: str

    @property
    def is_depth(self) -> bool:
        """Tell whether this is a depth image (16UC1, 32FC1: values kept as recorded)."""
        return self.encoding in DEPTH_ONLY


@contextmanager
def bag_errors(what: str) -> Iterator[None]:
    """Turn any failure of the bag libraries inside into one ``BagError``: ``what (Type: text)``.

    ``mcap``, ``rosbags`` and ``sqlite3`` raise many kinds on truncated or corrupt files.
    """
    try:
        yield
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the library raised, named in the text
        raise BagError(f'{what} ({type(exc).__name__}: {exc})') from None
