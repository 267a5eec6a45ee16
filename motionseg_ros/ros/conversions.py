"""Conversions between ROS messages and numpy / pipeline types.

Input conversions go through :mod:`motionseg_ros.image_codec`, the decoder the bag reader uses
too, so a message decodes the same in the node and in ``motionseg run`` / ``evaluate``. Every
malformed message raises :class:`ConversionError` whose text says what is wrong and whose
``code`` names the kind, so the node can log it, count it and carry on with the next frame.

Output builders turn a :class:`SegmentationResult` into ``MotionMasks``, ``TrajectoryArray``, a
label ``Image``, a ``MarkerArray`` and a debug overlay. Message types are imported lazily so
that the numpy half of this module needs no ROS installation.
"""

from __future__ import annotations

import array
import sys
from typing import Any, List, Optional, Tuple

import cv2
import numpy as np

from motionseg_ros import image_codec
from motionseg_ros.stamps import stamp_to_ns
from motionseg_ros.types import CameraIntrinsics, SegmentationResult

__all__ = ['ENCODINGS', 'ConversionError', 'stamp_to_ns', 'image_to_numpy',
           'image_to_bgr8', 'compressed_to_bgr8', 'depth_to_metres',
           'intrinsics_from_camera_info', 'numpy_to_image', 'label_image_msg',
           'motion_masks_msg', 'trajectories_msg', 'label_colour', 'debug_overlay',
           'trajectory_markers']

#: the encodings the node accepts (one table with the bag reader: see image_codec)
ENCODINGS = image_codec.ENCODINGS
#: a message that cannot be converted; ``code`` names the kind (counted in diagnostics)
ConversionError = image_codec.ImageCodecError


# ---------------------------------------------------------------------------------- inputs
def image_to_numpy(msg: Any) -> np.ndarray:
    """Return the pixels of a ``sensor_msgs/Image`` as (H, W) or (H, W, C), native layout.

    Honours row padding (``step``) and byte order; raises :class:`ConversionError` for a 0x0
    image, an unknown encoding, a ``step`` too small for the width, or a data length that does
    not fit ``step`` and ``height``.
    """
    return image_codec.decode_raw(msg).pixels


def image_to_bgr8(msg: Any) -> np.ndarray:
    """Return a ``sensor_msgs/Image`` as a BGR (or gray) uint8 image for the pipeline.

    Gray images stay (H, W); the pipeline turns them into BGR itself. Depth encodings are
    refused with the reason.
    """
    return image_codec.camera_bgr8(image_codec.decode_raw(msg))


def compressed_to_bgr8(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg, png) to BGR or gray uint8."""
    return image_codec.camera_bgr8(image_codec.decode_compressed(msg))


def depth_to_metres(msg: Any) -> np.ndarray:
    """Return a depth ``Image`` (16UC1 mm or 32FC1 m) as float32 metres, NaN where invalid.

    Raises :class:`ConversionError` for another encoding or when no pixel is valid (all NaN,
    inf or 0), which is a broken sensor rather than a scene.
    """
    return image_codec.raw_depth_metres(msg)


def intrinsics_from_camera_info(msg: Any) -> CameraIntrinsics:
    """Return the pinhole intrinsics of a ``sensor_msgs/CameraInfo`` (its K matrix)."""
    k = [float(v) for v in msg.k]
    if len(k) != 9:
        raise ConversionError(f'CameraInfo.k has {len(k)} values, expected 9')
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if not all(np.isfinite([fx, fy, cx, cy])) or fx <= 0 or fy <= 0:
        raise ConversionError(f'CameraInfo is uncalibrated or invalid (fx={fx}, fy={fy})')
    return CameraIntrinsics(fx=fx, fy=fy, cx=cx, cy=cy)


# ---------------------------------------------------------------------------------- outputs
def _uint8_array(pixels: np.ndarray) -> array.array:
    """Return bytes as the ``array('B')`` rclpy stores uint8[] fields in (no per-item check)."""
    return array.array('B', np.ascontiguousarray(pixels).tobytes())


def numpy_to_image(pixels: np.ndarray, encoding: str, header: Any = None) -> Any:
    """Build a ``sensor_msgs/Image`` from a contiguous (H, W[, C]) array in native byte order."""
    from sensor_msgs.msg import Image
    if encoding not in ENCODINGS:
        raise ConversionError(f'unsupported encoding {encoding!r}')
    dtype, channels = ENCODINGS[encoding]
    pixels = np.asarray(pixels)
    if pixels.dtype != dtype or (pixels.shape[2] if pixels.ndim == 3 else 1) != channels:
        raise ConversionError(f'array {pixels.dtype} {pixels.shape} does not match {encoding}')
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == 'big'
    msg.step = int(pixels.shape[1]) * channels * np.dtype(dtype).itemsize
    msg.data = _uint8_array(pixels)
    return msg


def label_image_msg(result: SegmentationResult, header: Any) -> Any:
    """Return the result's label image as mono8 (< 256 labels) or mono16."""
    labels = result.label_image()
    return numpy_to_image(labels, 'mono8' if labels.dtype == np.uint8 else 'mono16', header)


def motion_masks_msg(result: SegmentationResult, header: Any, label_image: Any = None) -> Any:
    """Build ``MotionMasks`` (label image + one ObjectMask per label) with the input header."""
    from motionseg_ros.msg import MotionMasks, ObjectMask
    from sensor_msgs.msg import RegionOfInterest
    msg = MotionMasks()
    msg.header = header
    msg.label_image = label_image if label_image is not None else label_image_msg(result, header)
    objects = []
    for obj in result.objects:
        x0, y0, x1, y1 = obj.box
        item = ObjectMask()
        item.id = int(obj.id)
        item.label = int(obj.label)
        item.score = float(np.clip(obj.score, 0.0, 1.0))
        item.roi = RegionOfInterest(x_offset=int(x0), y_offset=int(y0),
                                    width=int(x1 - x0), height=int(y1 - y0))
        item.area = int(obj.area)
        item.num_dynamic_tracks = int(obj.num_dynamic_tracks)
        objects.append(item)
    msg.objects = objects
    return msg


def _times(stamps_ns: np.ndarray) -> List[Any]:
    from builtin_interfaces.msg import Time
    return [Time(sec=int(s) // 1_000_000_000, nanosec=int(s) % 1_000_000_000)
            for s in stamps_ns]


def trajectories_msg(result: SegmentationResult, header: Any,
                     include_static: bool = False) -> Any:
    """Build ``TrajectoryArray`` of the window's tracks (dynamic only unless asked)."""
    from motionseg_ros.msg import Trajectory, TrajectoryArray
    msg = TrajectoryArray()
    msg.header = header
    win = result.tracks
    stamps = _times(win.stamps_ns)
    keep = np.arange(win.num_tracks) if include_static else np.flatnonzero(result.dynamic)
    out = []
    for i in keep:
        traj = Trajectory()
        traj.id = int(win.ids[i])
        traj.object_id = int(result.object_ids[i]) if i < result.object_ids.size else -1
        traj.dynamic_probability = float(result.dynamic_probability[i])
        traj.dynamic = bool(result.dynamic[i])
        traj.stamps = stamps
        traj.u = array.array('f', win.xy[i, :, 0].astype(np.float32).tobytes())
        traj.v = array.array('f', win.xy[i, :, 1].astype(np.float32).tobytes())
        traj.visible = [bool(b) for b in win.visible[i]]
        out.append(traj)
    msg.trajectories = out
    return msg


def label_colour(label: int) -> Tuple[int, int, int]:
    """Return a stable, distinct BGR colour for an object id."""
    hue = (int(label) * 47) % 180
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def debug_overlay(image_bgr: np.ndarray, result: SegmentationResult,
                  alpha: float = 0.5) -> np.ndarray:
    """Draw object masks (tinted), boxes with ids, and track points (red dynamic, green static)."""
    out = image_bgr.copy()
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    for obj in result.objects:
        colour = np.array(label_colour(obj.id), np.float32)
        region = out[obj.mask].astype(np.float32)
        out[obj.mask] = (region * (1 - alpha) + colour * alpha).astype(np.uint8)
        x0, y0, x1, y1 = obj.box
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), label_colour(obj.id), 2)
        cv2.putText(out, f'{obj.id} {obj.score:.2f}', (x0, max(12, y0 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, label_colour(obj.id), 1, cv2.LINE_AA)
    win = result.tracks
    if win.num_tracks and win.num_frames:
        alive = win.visible[:, -1]
        pts = win.xy[:, -1]
        for i in np.flatnonzero(alive):
            dyn = bool(result.dynamic[i]) if i < result.dynamic.size else False
            cv2.circle(out, (int(round(pts[i, 0])), int(round(pts[i, 1]))), 2,
                       (0, 0, 255) if dyn else (0, 200, 0), -1)
    return out


def trajectory_markers(result: SegmentationResult, header: Any,
                       intrinsics: Optional[CameraIntrinsics] = None,
                       namespace: str = 'motionseg') -> Any:
    """Build a ``MarkerArray``: one line strip per dynamic track, coloured by object.

    Points lie on the plane z = 1 m of the camera frame (normalised image coordinates) when
    intrinsics are known, otherwise on a plane where the image is 1 m wide, so rviz shows the
    trajectories over the camera's frame without needing depth.
    """
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import Marker, MarkerArray
    h, w = result.image_size
    if intrinsics is not None:
        fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    else:
        fx = fy = float(max(w, 1))
        cx, cy = w / 2.0, h / 2.0
    markers = [Marker(header=header, ns=namespace, action=Marker.DELETEALL)]
    win = result.tracks
    for i in np.flatnonzero(result.dynamic):
        vis = win.visible[i]
        if vis.sum() < 2:
            continue
        xy = win.xy[i][vis]
        obj = int(result.object_ids[i]) if i < result.object_ids.size else -1
        b, g, r = label_colour(obj) if obj >= 0 else (128, 128, 128)
        m = Marker(header=header, ns=namespace, id=int(win.ids[i] % 2_000_000_000),
                   type=Marker.LINE_STRIP, action=Marker.ADD)
        m.pose.orientation.w = 1.0
        m.scale.x = 0.003
        m.color = ColorRGBA(r=r / 255.0, g=g / 255.0, b=b / 255.0, a=1.0)
        m.points = [Point(x=float((u - cx) / fx), y=float((v - cy) / fy), z=1.0)
                    for u, v in xy]
        markers.append(m)
    return MarkerArray(markers=markers)
