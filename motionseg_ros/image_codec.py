"""Decode ``sensor_msgs/Image`` and ``CompressedImage`` payloads without ROS: one set of rules.

The node (``ros/conversions.py``, rclpy messages) and the bag reader (``bags/reader.py``,
rosbags messages for ``motionseg run`` / ``evaluate``) both decode through here, so a message
gives the same pixels, the same encoding and the same error wherever it is read. Messages are
duck-typed: ``height``, ``width``, ``encoding``, ``step``, ``is_bigendian``, ``data`` (Image) or
``format``, ``data`` (CompressedImage).

Decoding is in two steps. :func:`decode_raw` / :func:`decode_compressed` return the recorded
values as a :class:`Decoded` (native byte order, row padding removed, an encoding from
:data:`ENCODINGS`); then the caller says the role: :func:`camera_bgr8` (uint8 BGR or gray for
the pipeline, refusing depth encodings), :func:`depth_metres` (float32 metres, NaN where
invalid) or the raw values themselves (label images). Every problem raises
:class:`ImageCodecError` whose text says what is wrong and whose ``code`` names the kind.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import cv2
import numpy as np

#: encoding -> (numpy dtype, channels): every encoding that decodes
ENCODINGS: Dict[str, Tuple[Any, int]] = {
    'mono8': (np.uint8, 1), '8UC1': (np.uint8, 1),
    'mono16': (np.uint16, 1), '16UC1': (np.uint16, 1),
    'bgr8': (np.uint8, 3), 'rgb8': (np.uint8, 3), '8UC3': (np.uint8, 3),
    'bgra8': (np.uint8, 4), 'rgba8': (np.uint8, 4), '8UC4': (np.uint8, 4),
    'bgr16': (np.uint16, 3), 'rgb16': (np.uint16, 3),
    'bgra16': (np.uint16, 4), 'rgba16': (np.uint16, 4),
    '32FC1': (np.float32, 1),
    'bayer_rggb8': (np.uint8, 1), 'bayer_bggr8': (np.uint8, 1),
    'bayer_gbrg8': (np.uint8, 1), 'bayer_grbg8': (np.uint8, 1),
    'yuv422': (np.uint8, 2), 'uyvy': (np.uint8, 2),
    'yuv422_yuy2': (np.uint8, 2), 'yuyv': (np.uint8, 2),
}

#: depth encodings (REP 118) -> metres per unit: 16-bit millimetres or 32-bit float metres.
#: 16UC1 and 32FC1 are never camera images; mono16 is a 16-bit camera image that some depth
#: drivers also publish in millimetres, so it is accepted on a depth input too.
DEPTH_SCALE = {'16UC1': 1e-3, 'mono16': 1e-3, '32FC1': 1.0}
DEPTH_ONLY = ('16UC1', '32FC1')

#: OpenCV conversion to BGR for encodings that are not gray/BGR already
_TO_BGR = {
    'rgb8': cv2.COLOR_RGB2BGR, 'rgb16': cv2.COLOR_RGB2BGR,
    'rgba8': cv2.COLOR_RGBA2BGR, 'rgba16': cv2.COLOR_RGBA2BGR,
    'bgra8': cv2.COLOR_BGRA2BGR, 'bgra16': cv2.COLOR_BGRA2BGR, '8UC4': cv2.COLOR_BGRA2BGR,
    # OpenCV names Bayer patterns after the second row's second and third pixels
    'bayer_rggb8': cv2.COLOR_BayerBG2BGR, 'bayer_bggr8': cv2.COLOR_BayerRG2BGR,
    'bayer_gbrg8': cv2.COLOR_BayerGR2BGR, 'bayer_grbg8': cv2.COLOR_BayerGB2BGR,
    'yuv422': cv2.COLOR_YUV2BGR_UYVY, 'uyvy': cv2.COLOR_YUV2BGR_UYVY,
    'yuv422_yuy2': cv2.COLOR_YUV2BGR_YUY2, 'yuyv': cv2.COLOR_YUV2BGR_YUY2,
}

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
#: compressedDepth payloads start with a config header: int32 format, float32 depthParam[2]
_DEPTH_HEADER = struct.Struct('<iff')


class ImageCodecError(ValueError):
    """A payload that cannot be decoded for its role; the text says why, ``code`` the kind."""

    def __init__(self, message: str, code: str = 'invalid') -> None:
        """Keep a short machine-readable ``code`` (the node counts rejections per code)."""
        super().__init__(message)
        self.code = code


@dataclass
class Decoded:
    """Recorded values of an image: (H, W) or (H, W, C), native byte order, and their encoding."""

    pixels: np.ndarray
    encoding: str

    @property
    def is_depth(self) -> bool:
        """Tell whether the encoding is a depth one (never a camera image)."""
        return self.encoding in DEPTH_ONLY


def _as_uint8(data: Any) -> np.ndarray:
    """Bytes of a message's ``data`` (bytes, array('B'), list or numpy array) as a uint8 view."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, np.uint8)
    return np.frombuffer(data, np.uint8)


# ------------------------------------------------------------------------------ raw images
def decode_raw(msg: Any) -> Decoded:
    """Return the pixels of a ``sensor_msgs/Image`` with row padding removed, native order.

    ``data`` must hold every pixel: at least ``step * (height - 1) + width * pixel size`` bytes
    (a recorder may leave out the last row's padding) and at most ``step * height``.
    ``is_bigendian`` is honoured for multi-byte samples and ignored for 8-bit ones.
    """
    height, width = int(msg.height), int(msg.width)
    encoding = str(msg.encoding).strip()
    if height <= 0 or width <= 0:
        raise ImageCodecError(f'empty image ({width}x{height}, encoding {encoding!r})',
                              'empty_image')
    if encoding not in ENCODINGS:
        raise ImageCodecError(f'unsupported encoding {encoding!r} (supported: '
                              f'{", ".join(sorted(ENCODINGS))})', 'unsupported_encoding')
    dtype, channels = ENCODINGS[encoding]
    dtype = np.dtype(dtype)
    row_bytes = width * channels * dtype.itemsize
    step = int(msg.step)
    if step < row_bytes:
        raise ImageCodecError(f'step {step} is smaller than width x pixel size = {row_bytes} '
                              f'({width} px of {encoding})', 'bad_step')
    buf = _as_uint8(msg.data)
    needed = step * (height - 1) + row_bytes
    if not needed <= buf.size <= step * height:
        raise ImageCodecError(f'data length {buf.size} != step x height = {step} x {height} '
                              f'= {step * height} ({width}x{height} {encoding})',
                              'bad_data_length')
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    big = bool(msg.is_bigendian)
    wire = dtype.newbyteorder('>' if big else '<') if dtype.itemsize > 1 else dtype
    pixels = np.ascontiguousarray(rows).view(wire)
    if dtype.itemsize > 1 and big != (sys.byteorder == 'big'):
        pixels = pixels.astype(dtype)  # to native byte order
    shape = (height, width) if channels == 1 else (height, width, channels)
    return Decoded(pixels.reshape(shape), encoding)


# ------------------------------------------------------------------------------ compressed
def _format_encoding(fmt: str) -> str:
    """Return the source encoding named by an image_transport format ``"<enc>; <codec> ..."``."""
    return fmt.split(';')[0].strip() if ';' in fmt else ''


def decode_compressed(msg: Any) -> Decoded:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg, png, compressedDepth png).

    OpenCV returns colour as BGR(A) whatever the format says (image_transport compresses BGR);
    a 16-bit single-channel PNG keeps the encoding its format names, 16UC1 when it names none.
    A compressedDepth payload is its 12-byte header then a PNG; 32FC1 is de-quantised to metres.
    """
    fmt = str(getattr(msg, 'format', '')).strip()
    data = _as_uint8(msg.data)
    if data.size == 0:
        raise ImageCodecError(f'empty compressed image (format {fmt!r})', 'empty_image')
    orig = _format_encoding(fmt)
    if 'compresseddepth' in fmt.lower():
        return _decode_compressed_depth(data, fmt, orig)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageCodecError(f'could not decode compressed image of {data.size} bytes '
                              f'(format {fmt!r})', 'decode_failed')
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.dtype == np.uint16 and channels == 1:
        return Decoded(image, orig if orig in DEPTH_SCALE else '16UC1')
    names = {np.dtype(np.uint8): {1: 'mono8', 3: 'bgr8', 4: 'bgra8'},
             np.dtype(np.uint16): {1: 'mono16', 3: 'bgr16', 4: 'bgra16'}}
    encoding = names.get(image.dtype, {}).get(channels)
    if encoding is None:
        raise ImageCodecError(f'compressed image decodes to {channels} x {image.dtype}, not a '
                              f'supported image (format {fmt!r})', 'unsupported_encoding')
    return Decoded(image, encoding)


def _decode_compressed_depth(data: np.ndarray, fmt: str, orig: str) -> Decoded:
    head = _DEPTH_HEADER.size
    if data.size < head + len(PNG_MAGIC) or data[head:head + len(PNG_MAGIC)].tobytes() \
            != PNG_MAGIC:
        raise ImageCodecError(f'compressedDepth payload without its {head}-byte header + PNG '
                              f'(format {fmt!r})', 'decode_failed')
    _, quant_a, quant_b = _DEPTH_HEADER.unpack(data[:head].tobytes())
    image = cv2.imdecode(data[head:], cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageCodecError(f'compressedDepth PNG does not decode (format {fmt!r})',
                              'decode_failed')
    if orig == '32FC1':
        inv = image.astype(np.float32)
        depth = np.zeros_like(inv)
        ok = inv > 0
        depth[ok] = quant_a / (inv[ok] - quant_b)
        return Decoded(depth, '32FC1')
    return Decoded(image, orig if orig in DEPTH_SCALE else '16UC1')


# ------------------------------------------------------------------------------ roles
def camera_bgr8(decoded: Decoded) -> np.ndarray:
    """Return a camera image as uint8 BGR (H, W, 3), or gray (H, W) for mono encodings.

    16-bit images keep their 8 high bits; Bayer and YUV are converted to BGR. Depth encodings
    (16UC1, 32FC1) are refused: segmenting depth as a picture would be silent garbage.
    """
    encoding = decoded.encoding
    check_camera_encoding(encoding)
    pixels = decoded.pixels
    if pixels.dtype == np.uint16:   # high byte, written straight into one uint8 array
        pixels = np.right_shift(pixels, 8, out=np.empty(pixels.shape, np.uint8),
                                casting='unsafe')
    code = _TO_BGR.get(encoding)
    if code is not None:
        try:
            pixels = cv2.cvtColor(pixels, code)
        except cv2.error as exc:
            raise ImageCodecError(f'{encoding} image of {pixels.shape[1]}x{pixels.shape[0]} '
                                  f'does not convert to BGR ({exc.err})', 'decode_failed') \
                from None
    return pixels


def check_camera_encoding(encoding: str) -> None:
    """Raise :class:`ImageCodecError` (code ``depth_as_image``) for a depth encoding."""
    if encoding in DEPTH_ONLY:
        raise ImageCodecError(f'encoding {encoding} looks like depth, not a camera image '
                              '(depth goes to the depth input, with use_depth)',
                              'depth_as_image')


def depth_metres(decoded: Decoded) -> np.ndarray:
    """Return depth (16UC1 / mono16 mm, 32FC1 m) as float32 metres, NaN where invalid.

    Raises for another encoding, or when no pixel is valid (all NaN, inf or 0): that is a
    broken sensor rather than a scene.
    """
    encoding = decoded.encoding
    _require_depth_encoding(encoding)
    depth = decoded.pixels.astype(np.float32)   # a copy: scaled and NaN-marked in place
    if DEPTH_SCALE[encoding] != 1.0:
        depth *= np.float32(DEPTH_SCALE[encoding])
    bad = ~np.isfinite(depth) | (depth <= 0)
    if bad.all():
        raise ImageCodecError(f'depth image has no valid pixel (all NaN, inf or <= 0, '
                              f'{encoding})', 'no_valid_depth')
    if bad.any():
        depth[bad] = np.nan
    return depth


def raw_depth_metres(msg: Any) -> np.ndarray:
    """Return a depth ``sensor_msgs/Image`` in metres (its encoding is checked before decoding)."""
    _require_depth_encoding(str(msg.encoding).strip())
    return depth_metres(decode_raw(msg))


def _require_depth_encoding(encoding: str) -> None:
    if encoding not in DEPTH_SCALE:
        raise ImageCodecError(f'unsupported depth encoding {encoding!r} (expected 16UC1 in '
                              'millimetres or 32FC1 in metres)', 'unsupported_encoding')
