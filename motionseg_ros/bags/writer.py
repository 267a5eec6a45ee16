"""Write rosbag2 bags (MCAP or sqlite3) of images, camera info and ground-truth label images.

Pure Python through ``rosbags``: works where ``ros2 bag`` is absent. Messages are the standard
ROS 2 types (Kilted definitions, identical for Image / CompressedImage / CameraInfo back to
Humble), with their type definitions embedded so any reader can decode them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import cv2
import numpy as np

from motionseg_ros.bags.reader import BagError

PathLike = Union[str, Path]
STORAGES = ('mcap', 'sqlite3')


def _typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


class BagWriter:
    """rosbag2 writer for camera streams; use as a context manager."""

    def __init__(self, path: PathLike, storage: str = 'mcap', overwrite: bool = False) -> None:
        """Create the bag folder ``path`` (it must not exist unless ``overwrite``)."""
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.path = Path(path)
        if storage not in STORAGES:
            raise BagError(f'unknown storage {storage!r}; choose from {STORAGES}')
        if self.path.exists():
            if not overwrite:
                raise BagError(f'{self.path}: already exists (remove it or pass --overwrite)')
            if self.path.is_dir() and (self.path / 'metadata.yaml').is_file():
                shutil.rmtree(self.path)
            else:
                raise BagError(f'{self.path}: exists and is not a bag folder; not overwriting')
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.ts = _typestore()
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=8, storage_plugin=plugin)
        self._writer.open()
        self._conns: Dict[str, Any] = {}
        self.counts: Dict[str, int] = {}

    # -- helpers
    def _conn(self, topic: str, msgtype: str) -> Any:
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.ts)
            self._conns[topic] = conn
            self.counts[topic] = 0
        elif conn.msgtype != msgtype:
            raise BagError(f'{topic}: already carries {conn.msgtype}, not {msgtype}')
        return conn

    def _header(self, stamp_ns: int, frame_id: str) -> Any:
        t = self.ts.types
        stamp = t['builtin_interfaces/msg/Time'](sec=int(stamp_ns // 1_000_000_000),
                                                 nanosec=int(stamp_ns % 1_000_000_000))
        return t['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)

    def write_msg(self, topic: str, msgtype: str, msg: Any, log_ns: int) -> None:
        """Serialize and write any message of the typestore."""
        conn = self._conn(topic, msgtype)
        self._writer.write(conn, int(log_ns), self.ts.serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    # -- typed writers
    def write_image(self, topic: str, image: np.ndarray, stamp_ns: int, frame_id: str = 'camera',
                    encoding: Optional[str] = None, log_ns: Optional[int] = None) -> None:
        """Write a sensor_msgs/Image (bgr8 for 3-channel uint8, mono8 / mono16 for 2-D)."""
        img = np.ascontiguousarray(image)
        if encoding is None:
            if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
                encoding = 'bgr8'
            elif img.ndim == 2 and img.dtype == np.uint8:
                encoding = 'mono8'
            elif img.ndim == 2 and img.dtype == np.uint16:
                encoding = 'mono16'
            elif img.ndim == 2 and img.dtype == np.float32:
                encoding = '32FC1'
            else:
                raise BagError(f'no image encoding for shape {img.shape} {img.dtype}')
        h, w = img.shape[:2]
        msg = self.ts.types['sensor_msgs/msg/Image'](
            header=self._header(stamp_ns, frame_id), height=h, width=w, encoding=encoding,
            is_bigendian=0, step=int(img.strides[0]),
            data=np.frombuffer(img.tobytes(), np.uint8))
        self.write_msg(topic, 'sensor_msgs/msg/Image', msg,
                       stamp_ns if log_ns is None else log_ns)

    def write_compressed(self, topic: str, image: np.ndarray, stamp_ns: int,
                         frame_id: str = 'camera', codec: str = 'jpeg', quality: int = 90,
                         log_ns: Optional[int] = None) -> None:
        """Write a sensor_msgs/CompressedImage (image_transport ``compressed`` format string)."""
        if codec == 'jpeg':
            ok, buf = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        elif codec == 'png':
            ok, buf = cv2.imencode('.png', image)
        else:
            raise BagError(f'unknown codec {codec!r} (jpeg or png)')
        if not ok:
            raise BagError(f'{codec} encoding failed for an image {image.shape}')
        enc = 'bgr8' if image.ndim == 3 else ('mono8' if image.dtype == np.uint8 else '16UC1')
        msg = self.ts.types['sensor_msgs/msg/CompressedImage'](
            header=self._header(stamp_ns, frame_id), format=f'{enc}; {codec} compressed {enc}',
            data=np.frombuffer(buf.tobytes(), np.uint8))
        self.write_msg(topic, 'sensor_msgs/msg/CompressedImage', msg,
                       stamp_ns if log_ns is None else log_ns)

    def write_camera_info(self, topic: str, stamp_ns: int, frame_id: str, width: int,
                          height: int, k: Sequence[float], log_ns: Optional[int] = None) -> None:
        """Write a pinhole sensor_msgs/CameraInfo (no distortion) with K = (fx, fy, cx, cy)."""
        fx, fy, cx, cy = (float(v) for v in k)
        t = self.ts.types
        msg = t['sensor_msgs/msg/CameraInfo'](
            header=self._header(stamp_ns, frame_id), height=int(height), width=int(width),
            distortion_model='plumb_bob', d=np.zeros(5, np.float64),
            k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64),
            r=np.eye(3, dtype=np.float64).ravel(),
            p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64),
            binning_x=0, binning_y=0,
            roi=t['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0,
                                                      width=0, do_rectify=False))
        self.write_msg(topic, 'sensor_msgs/msg/CameraInfo', msg,
                       stamp_ns if log_ns is None else log_ns)

    def write_labels(self, topic: str, labels: np.ndarray, stamp_ns: int,
                     frame_id: str = 'camera', log_ns: Optional[int] = None) -> None:
        """Write a label image (0 = background, k = object k) as mono8 (mono16 above 255)."""
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise BagError(f'label image must be 2-D, got {labels.shape}')
        if labels.max(initial=0) > 255:
            self.write_image(topic, labels.astype(np.uint16), stamp_ns, frame_id, 'mono16',
                             log_ns)
        else:
            self.write_image(topic, labels.astype(np.uint8), stamp_ns, frame_id, 'mono8', log_ns)

    # -- lifetime
    def close(self) -> None:
        """Finish the bag (writes metadata.yaml and the MCAP summary)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> 'BagWriter':
        """Return self."""
        return self

    def __exit__(self, *exc: Any) -> None:
        """Close."""
        self.close()
