"""Message <-> numpy conversions of the node, on real sensor_msgs messages (no DDS)."""

from __future__ import annotations

import array
import sys

import cv2
import numpy as np
import pytest
from ros_helpers import require_ros

require_ros()

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from motionseg_ros.ros import conversions as conv  # noqa: E402
from motionseg_ros.types import (ObjectMask, SegmentationResult, TrackWindow,  # noqa: E402
                                 mask_box)


def _img(pixels: np.ndarray, encoding: str, step: int = 0, big: bool = False) -> Image:
    """Build an Image whose rows may be padded to ``step`` bytes, in either byte order."""
    h, w = pixels.shape[:2]
    row = np.ascontiguousarray(pixels).reshape(h, -1).view(np.uint8) if pixels.dtype.itemsize \
        == 1 else np.ascontiguousarray(pixels.astype(pixels.dtype.newbyteorder(
            '>' if big else '<'))).reshape(h, -1).view(np.uint8)
    step = step or row.shape[1]
    buf = np.zeros((h, step), np.uint8)
    buf[:, :row.shape[1]] = row
    return Image(height=h, width=w, encoding=encoding, is_bigendian=big, step=step,
                 data=array.array('B', buf.tobytes()))


def test_bgr8_with_row_padding():
    px = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    out = conv.image_to_numpy(_img(px, 'bgr8', step=7 * 3 + 5))
    np.testing.assert_array_equal(out, px)


def test_rgb8_and_mono8_to_pipeline_image():
    px = np.random.default_rng(1).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(conv.image_to_bgr8(_img(px, 'rgb8')), px[:, :, ::-1])
    gray = px[:, :, 0].copy()
    np.testing.assert_array_equal(conv.image_to_bgr8(_img(gray, 'mono8')), gray)


@pytest.mark.parametrize('big', [False, True])
def test_16bit_either_byte_order(big):
    px = np.array([[1, 256, 65535], [4660, 0, 300]], np.uint16)
    out = conv.image_to_numpy(_img(px, 'mono16', big=big))
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, px)


def test_depth_16uc1_millimetres_and_32fc1_metres():
    mm = np.array([[1000, 0], [2500, 65535]], np.uint16)
    d = conv.depth_to_metres(_img(mm, '16UC1'))
    assert d.dtype == np.float32
    np.testing.assert_allclose(d[[0, 1, 1], [0, 0, 1]], [1.0, 2.5, 65.535], rtol=1e-6)
    assert np.isnan(d[0, 1])  # 0 = no measurement
    m = np.array([[1.5, np.nan], [np.inf, -1.0]], np.float32)
    d = conv.depth_to_metres(_img(m, '32FC1'))
    assert d[0, 0] == 1.5 and np.isnan(d[0, 1]) and np.isnan(d[1, 0]) and np.isnan(d[1, 1])


@pytest.mark.parametrize('msg, code, words', [
    (Image(height=0, width=0, encoding='bgr8'), 'empty_image', 'empty image'),
    (Image(height=2, width=2, encoding='weird42', step=6, data=bytes(12)),
     'unsupported_encoding', "unsupported encoding 'weird42'"),
    (Image(height=2, width=2, encoding='bgr8', step=6, data=bytes(11)),
     'bad_data_length', 'data length 11 != step x height'),
    (Image(height=2, width=4, encoding='bgr8', step=6, data=bytes(12)),
     'bad_step', 'step 6 is smaller'),
])
def test_bad_images_raise_clear_errors(msg, code, words):
    with pytest.raises(conv.ConversionError, match=words) as err:
        conv.image_to_bgr8(msg)
    assert err.value.code == code


def test_nan_depth_and_wrong_depth_encoding():
    with pytest.raises(conv.ConversionError, match='no valid pixel') as err:
        conv.depth_to_metres(_img(np.full((3, 3), np.nan, np.float32), '32FC1'))
    assert err.value.code == 'no_valid_depth'
    with pytest.raises(conv.ConversionError, match='depth encoding'):
        conv.depth_to_metres(_img(np.zeros((2, 2, 3), np.uint8), 'bgr8'))


def test_compressed_jpeg_and_garbage():
    px = np.full((16, 24, 3), (10, 120, 240), np.uint8)
    ok, jpg = cv2.imencode('.jpg', px)
    msg = CompressedImage(format='jpeg', data=array.array('B', jpg.tobytes()))
    out = conv.compressed_to_bgr8(msg)
    assert out.shape == px.shape and np.abs(out.astype(int) - px).max() < 8
    with pytest.raises(conv.ConversionError, match='could not decode'):
        conv.compressed_to_bgr8(CompressedImage(format='jpeg', data=b'not a jpeg'))


def test_camera_info_intrinsics():
    info = CameraInfo(k=[500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0])
    k = conv.intrinsics_from_camera_info(info)
    assert (k.fx, k.fy, k.cx, k.cy) == (500.0, 510.0, 320.0, 240.0)
    with pytest.raises(conv.ConversionError, match='uncalibrated'):
        conv.intrinsics_from_camera_info(CameraInfo())


def _result() -> SegmentationResult:
    h, w = 40, 60
    mask = np.zeros((h, w), bool)
    mask[10:20, 5:25] = True
    obj = ObjectMask(id=7, label=1, mask=mask, score=0.9, box=mask_box(mask),
                     num_dynamic_tracks=2)
    stamps = np.array([1_000_000_000, 1_100_000_000], np.int64)
    win = TrackWindow(ids=np.array([3, 4, 5]), xy=np.full((3, 2, 2), 12.0, np.float32),
                      visible=np.ones((3, 2), bool), confidence=np.ones((3, 2), np.float32),
                      stamps_ns=stamps, image_size=(h, w))
    return SegmentationResult(
        stamp_ns=int(stamps[-1]), frame_index=1, image_size=(h, w), objects=[obj], tracks=win,
        dynamic_probability=np.array([0.9, 0.2, 0.8], np.float32),
        dynamic=np.array([True, False, True]), object_ids=np.array([7, -1, 7]))


def test_outputs_from_a_result():
    res = _result()
    header = Header(stamp=Time(sec=1, nanosec=100_000_000), frame_id='cam')
    masks = conv.motion_masks_msg(res, header)
    assert masks.header == header and masks.label_image.header == header
    assert (masks.label_image.width, masks.label_image.height) == (60, 40)
    assert masks.label_image.encoding == 'mono8'
    labels = np.frombuffer(bytes(masks.label_image.data), np.uint8).reshape(40, 60)
    assert labels.sum() == 200 and set(np.unique(labels)) == {0, 1}
    (o,) = masks.objects
    assert (o.id, o.label, o.area, o.num_dynamic_tracks) == (7, 1, 200, 2)
    assert (o.roi.x_offset, o.roi.y_offset, o.roi.width, o.roi.height) == (5, 10, 20, 10)
    traj = conv.trajectories_msg(res, header)
    assert [t.id for t in traj.trajectories] == [3, 5]
    assert all(t.object_id == 7 and len(t.u) == 2 and len(t.stamps) == 2
               for t in traj.trajectories)
    assert len(conv.trajectories_msg(res, header, include_static=True).trajectories) == 3
    markers = conv.trajectory_markers(res, header)
    assert markers.markers[0].action == markers.markers[0].DELETEALL
    assert len(markers.markers) == 3
    overlay = conv.debug_overlay(np.zeros((40, 60, 3), np.uint8), res)
    assert overlay.shape == (40, 60, 3) and overlay[15, 10].any()
    img = conv.numpy_to_image(overlay, 'bgr8', header)
    assert img.is_bigendian == (sys.byteorder == 'big') and img.step == 180
