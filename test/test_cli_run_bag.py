"""`motionseg run` on rosbags: a bag the project writes and real bags recorded on robots."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import DAVIS, SHARED_DATA, require_data
from PIL import Image

from motionseg_ros.bags.writer import BagWriter
from motionseg_ros.cli import main
from motionseg_ros.io.sources import SourceError, open_source


def _davis_bag(path, n=8, storage='mcap', compressed=False):
    seq = require_data(DAVIS / 'JPEGImages' / '480p' / 'car-shadow')
    files = sorted(seq.glob('*.jpg'))[:n]
    stamps = []
    with BagWriter(path, storage=storage) as bag:
        for i, f in enumerate(files):
            img = cv2.resize(cv2.imread(str(f)), (320, 180), interpolation=cv2.INTER_AREA)
            stamp = 1_700_000_000_000_000_000 + i * 100_000_000
            if compressed:
                bag.write_compressed('/camera/image_raw/compressed', img, stamp, 'cam')
            else:
                bag.write_image('/camera/image_raw', img, stamp, 'cam')
            stamps.append(stamp)
    return stamps


@pytest.mark.parametrize('storage,compressed', [('mcap', False), ('sqlite3', True)])
def test_run_on_made_bag(tmp_path, storage, compressed):
    stamps = _davis_bag(tmp_path / 'bag', storage=storage, compressed=compressed)
    src = open_source(tmp_path / 'bag')
    assert len(src) == len(stamps)
    assert src.fps == pytest.approx(10.0, rel=1e-3)
    frames = list(src)
    assert [f.stamp_ns for f in frames] == stamps          # header stamps kept
    assert frames[0].image.shape == (180, 320, 3)
    out = tmp_path / 'out'
    assert main(['run', str(tmp_path / 'bag'), '--output', str(out), '--no-video', '-q']) == 0
    masks = sorted((out / 'masks').glob('*.png'))
    assert len(masks) == len(stamps)
    first = Image.open(masks[0])
    assert first.mode == 'P' and first.size == (320, 180)
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['frames'] == len(stamps)


def test_real_ros1_bag_needs_a_topic_choice(tmp_path, capsys):
    bag = require_data(SHARED_DATA / 'rosbags' / 'roboto_tiny_davis' / 'tiny.bag')
    with pytest.raises(SourceError, match='several image topics'):
        open_source(bag)
    out = tmp_path / 'out'
    assert main(['run', str(bag), '--output', str(out), '--no-video', '-q']) == 2
    assert 'choose one with --topic' in capsys.readouterr().err
    assert main(['run', str(bag), '--topic', '/dvs/image_raw', '--output', str(out),
                 '--no-video', '-q']) == 0
    masks = sorted((out / 'masks').glob('*.png'))
    assert len(masks) == 4                                 # the topic's 4 mono8 frames
    assert Image.open(masks[0]).size == (346, 260)
    assert np.asarray(Image.open(masks[0])).max() == 0     # a static hall: nothing moves


def test_broken_bag_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / 'broken.mcap'
    bad.write_bytes(b'\x89MCAP0\r\n' + b'\x00' * 64)
    assert main(['run', str(bad), '--output', str(tmp_path / 'o'), '-q']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'broken.mcap' in err[0]


@pytest.mark.parametrize('bag_name,topic', [
    ('raw.bag', '/spot/depth/frontleft/image'),
    ('compressed.bag', '/spot/depth/frontleft/image/compressed'),            # 16UC1 png
    ('compressedDepth.bag', '/spot/depth/frontleft/image/compressedDepth'),
])
def test_depth_topic_is_refused_naming_the_encoding(tmp_path, capsys, bag_name, topic):
    """A real robot's 16UC1 depth stream is not segmented as a camera image (nor by the node)."""
    bag = require_data(SHARED_DATA / 'rosbags' / 'ctu_spot_image_transport_codecs' / bag_name)
    assert main(['run', str(bag), '--topic', topic, '--output', str(tmp_path / 'o'), '-q',
                 '--no-video']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and topic in err[0], err
    assert 'encoding 16UC1 looks like depth, not a camera image' in err[0]


def test_16bit_colour_and_mono_bags_run_like_the_node(tmp_path):
    """rgb16 / mono16 camera images keep their high 8 bits (they were refused as depth)."""
    rng = np.random.default_rng(4)
    img16 = rng.integers(0, 65536, (48, 64, 3), dtype=np.uint64).astype(np.uint16)
    with BagWriter(tmp_path / 'bag') as bag:
        for i in range(3):
            stamp = 1_700_000_000_000_000_000 + i * 100_000_000
            bag.write_image('/camera/image_raw', img16[:, :, ::-1], stamp, encoding='rgb16')
            bag.write_image('/mono', img16[:, :, 0], stamp)            # mono16
    frames = list(open_source(tmp_path / 'bag'))
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[0].image, (img16 >> 8).astype(np.uint8))
    mono = list(open_source(tmp_path / 'bag', topic='/mono'))
    np.testing.assert_array_equal(mono[0].image[:, :, 1], (img16[:, :, 0] >> 8).astype(np.uint8))
