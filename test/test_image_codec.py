"""One image decoder for the node and the bags: the same bytes decode identically on both paths.

Each case is a real rclpy ``sensor_msgs`` message; its CDR bytes (``rclpy.serialization``) are
deserialised by rosbags, as the bag reader sees them. The node's conversion
(``ros/conversions.py``) and the bag reader's (``bags/reader.py``) must then agree: the same
pixels, or the same refusal with the same reason.
"""

from __future__ import annotations

import array
import ast
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from ros_helpers import require_ros

require_ros()

from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from motionseg_ros import image_codec  # noqa: E402
from motionseg_ros.bags import reader  # noqa: E402
from motionseg_ros.frame_checks import to_bgr8  # noqa: E402
from motionseg_ros.ros import conversions as conv  # noqa: E402

RNG = np.random.default_rng(5)


def raw(pixels: np.ndarray, encoding: str, pad: int = 0, big: bool = False,
        cut: int = 0) -> Image:
    """An Image whose rows carry ``pad`` extra bytes, in either byte order, ``cut`` bytes short."""
    h, w = pixels.shape[:2]
    wire = pixels.astype(pixels.dtype.newbyteorder('>' if big else '<'))
    rows = np.ascontiguousarray(wire).reshape(h, -1).view(np.uint8)
    step = rows.shape[1] + pad
    buf = np.zeros((h, step), np.uint8)
    buf[:, :rows.shape[1]] = rows
    data = buf.tobytes()[:len(buf.tobytes()) - cut]
    return Image(height=h, width=w, encoding=encoding, is_bigendian=big, step=step,
                 data=array.array('B', data))


def compressed(fmt: str, payload: bytes) -> CompressedImage:
    return CompressedImage(format=fmt, data=array.array('B', payload))


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def colour(h: int, w: int, dtype=np.uint8, channels: int = 3) -> np.ndarray:
    top = 256 if dtype == np.uint8 else 65536
    shape = (h, w) if channels == 1 else (h, w, channels)
    return RNG.integers(0, top, shape, dtype=np.uint64).astype(dtype)


def rosbags_twin(msg):
    """The same message as the bag reader gets it: CDR bytes deserialised by rosbags."""
    from rosbags.typesys import Stores, get_typestore
    store = get_typestore(Stores.LATEST)
    name = 'sensor_msgs/msg/CompressedImage' if isinstance(msg, CompressedImage) \
        else 'sensor_msgs/msg/Image'
    return store.deserialize_cdr(serialize_message(msg), name), name


def node_path(msg):
    """What the node feeds the pipeline (BGR after frame_checks), or its refusal."""
    try:
        if isinstance(msg, CompressedImage):
            return to_bgr8(conv.compressed_to_bgr8(msg))
        return to_bgr8(conv.image_to_bgr8(msg))
    except conv.ConversionError as exc:
        return exc


def bag_path(msg):
    """What `motionseg run` / `evaluate` feed the pipeline, or the refusal."""
    twin, name = rosbags_twin(msg)
    try:
        image, encoding = reader.decode_image_message(twin, name)
        image_codec.check_camera_encoding(encoding)   # as io/sources.BagSource does
    except image_codec.ImageCodecError as exc:
        return exc
    return image


depth_mm = RNG.integers(300, 9000, (9, 11)).astype(np.uint16)
CASES = {
    'bgr8 odd width, padded': raw(colour(7, 5), 'bgr8', pad=3),
    'rgb8 odd step': raw(colour(6, 9), 'rgb8', pad=1),
    'bgra8 padded': raw(colour(5, 7, channels=4), 'bgra8', pad=4),
    'rgba8': raw(colour(5, 6, channels=4), 'rgba8'),
    'mono8 padded, big-endian flag': raw(colour(5, 7, channels=1), 'mono8', pad=1, big=True),
    '8UC3': raw(colour(4, 6), '8UC3'),
    'mono16 little-endian': raw(colour(6, 5, np.uint16, 1), 'mono16'),
    'mono16 big-endian padded': raw(colour(6, 5, np.uint16, 1), 'mono16', pad=2, big=True),
    'rgb16 big-endian padded': raw(colour(5, 7, np.uint16), 'rgb16', pad=6, big=True),
    'bgra16': raw(colour(4, 5, np.uint16, 4), 'bgra16'),
    'yuv422 (uyvy)': raw(colour(4, 8, channels=2), 'yuv422'),
    'yuv422_yuy2 padded': raw(colour(4, 6, channels=2), 'yuv422_yuy2', pad=4),
    'bayer_rggb8': raw(colour(8, 10, channels=1), 'bayer_rggb8'),
    'bgr8, last row padding left out': raw(colour(4, 5), 'bgr8', pad=5, cut=5),
    '16UC1 depth': raw(depth_mm, '16UC1'),
    '32FC1 depth': raw(depth_mm.astype(np.float32) / 1000, '32FC1'),
    'jpeg': compressed('bgr8; jpeg compressed bgr8',
                       encode('.jpg', cv2.GaussianBlur(colour(16, 24), (5, 5), 0))),
    'png colour': compressed('rgb8; png compressed bgr8', encode('.png', colour(9, 13))),
    'png mono': compressed('png', encode('.png', colour(9, 13, channels=1))),
    'png bgra': compressed('bgra8; png compressed bgra8',
                           encode('.png', colour(6, 5, channels=4))),
    'png mono16': compressed('mono16; png compressed mono16',
                             encode('.png', colour(6, 5, np.uint16, 1))),
    'png 16UC1 depth': compressed('16UC1; png compressed ', encode('.png', depth_mm)),
    'compressedDepth': compressed('16UC1; compressedDepth png',
                                  struct.pack('<iff', 0, 0.0, 0.0) + encode('.png', depth_mm)),
}
DEPTH = {'16UC1 depth', '32FC1 depth', 'png 16UC1 depth', 'compressedDepth'}


@pytest.mark.parametrize('case', sorted(CASES))
def test_node_and_bag_reader_decode_identically(case):
    msg = CASES[case]
    node, bag = node_path(msg), bag_path(msg)
    if case in DEPTH:
        # both refuse depth sent as a camera image, with the same reason naming the encoding
        assert isinstance(node, conv.ConversionError), case
        assert isinstance(bag, image_codec.ImageCodecError), case
        assert str(node) == str(bag) and 'looks like depth' in str(node)
        assert node.code == 'depth_as_image'
        assert ('16UC1' if '32FC1' not in case else '32FC1') in str(node)
        return
    assert isinstance(node, np.ndarray), f'{case}: node refused: {node}'
    assert isinstance(bag, np.ndarray), f'{case}: bag reader refused: {bag}'
    assert node.dtype == bag.dtype == np.uint8 and node.shape == bag.shape
    assert node.shape == (int(getattr(msg, 'height', 0)) or node.shape[0],
                          int(getattr(msg, 'width', 0)) or node.shape[1], 3)
    np.testing.assert_array_equal(node, bag)


def test_values_are_right_not_only_equal():
    """Spot checks against independent expectations (padding, byte order, 16 -> 8 bits)."""
    px = colour(5, 7, np.uint16)
    out = conv.image_to_bgr8(raw(px, 'rgb16', pad=6, big=True))
    np.testing.assert_array_equal(out, (px >> 8).astype(np.uint8)[:, :, ::-1])
    px = colour(7, 5)
    np.testing.assert_array_equal(conv.image_to_bgr8(raw(px, 'bgr8', pad=3)), px)
    px = colour(6, 5, np.uint16, 1)
    np.testing.assert_array_equal(conv.image_to_numpy(raw(px, 'mono16', pad=2, big=True)), px)
    # depth keeps its values on the bag path (evaluation / depth topics), in millimetres
    twin, name = rosbags_twin(CASES['compressedDepth'])
    image, encoding = reader.decode_image_message(twin, name)
    assert encoding == '16UC1'
    np.testing.assert_array_equal(image, depth_mm)
    np.testing.assert_allclose(conv.depth_to_metres(CASES['16UC1 depth']), depth_mm / 1000.0,
                               rtol=1e-6)


@pytest.mark.parametrize('msg, code, words', [
    (raw(colour(4, 5), 'bgr8', cut=6), 'bad_data_length', 'data length 54 != step x height'),
    (raw(colour(4, 5), 'bgr8', pad=0), None, None),
    (Image(height=4, width=5, encoding='bgr8', step=61, data=bytes(61 * 4 + 1)),
     'bad_data_length', 'data length 245 != step x height = 61 x 4 = 244'),
    (Image(height=2, width=4, encoding='bgr8', step=6, data=bytes(12)), 'bad_step',
     'step 6 is smaller than width x pixel size = 12'),
    (Image(height=2, width=2, encoding='bgr32', step=24, data=bytes(48)),
     'unsupported_encoding', "unsupported encoding 'bgr32'"),
    (Image(height=0, width=0, encoding='bgr8'), 'empty_image', 'empty image'),
    (compressed('jpeg', b'not a jpeg'), 'decode_failed', 'could not decode compressed image'),
    (compressed('16UC1; compressedDepth png', b'\x00' * 30), 'decode_failed',
     'compressedDepth payload without its 12-byte header'),
    (compressed('jpeg', b''), 'empty_image', 'empty compressed image'),
])
def test_bad_input_gives_the_same_clear_error_on_both_paths(msg, code, words):
    node, bag = node_path(msg), bag_path(msg)
    if code is None:
        assert isinstance(node, np.ndarray) and isinstance(bag, np.ndarray)
        return
    assert isinstance(node, conv.ConversionError) and node.code == code
    assert isinstance(bag, image_codec.ImageCodecError) and bag.code == code
    assert words in str(node) and str(node) == str(bag)


def test_bag_reader_names_the_bad_message(tmp_path):
    from motionseg_ros.bags.writer import BagWriter
    with BagWriter(tmp_path / 'bag') as bag:
        msg = bag.ts.types['sensor_msgs/msg/Image'](
            header=bag._header(5, 'cam'), height=4, width=5, encoding='bgr8', is_bigendian=0,
            step=15, data=np.zeros(15 * 4 - 7, np.uint8))
        bag.write_msg('/camera/image_raw', 'sensor_msgs/msg/Image', msg, 5)
    with reader.BagReader(tmp_path / 'bag') as r:
        with pytest.raises(reader.BagError, match=r'/camera/image_raw at 5 ns: data length 53'):
            list(r.images())


def test_one_definition_of_shared_helpers():
    """stamp_to_ns, the encoding table and GT_TOPIC each exist once."""
    from motionseg_ros import stamps
    assert conv.stamp_to_ns is reader.stamp_to_ns is stamps.stamp_to_ns
    assert conv.ENCODINGS is image_codec.ENCODINGS
    root = Path(__file__).resolve().parents[1] / 'motionseg_ros'
    defined = {}
    for path in root.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == 'stamp_to_ns':
                defined.setdefault('stamp_to_ns', []).append(path.name)
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id in ('GT_TOPIC', 'ENCODINGS') and \
                        isinstance(node.value, (ast.Constant, ast.Dict)):
                    defined.setdefault(t.id, []).append(path.name)
    assert {k: len(v) for k, v in defined.items()} == {
        'stamp_to_ns': 1, 'GT_TOPIC': 1, 'ENCODINGS': 1}, defined
