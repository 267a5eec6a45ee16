"""Bag reading (real bags with their quirks, bags written here) and `motionseg make-bag`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import REPO, SHARED_DATA, require_data

from motionseg_ros.bags.reader import BagError, BagReader, normalize_type
from motionseg_ros.bags.writer import BagWriter
from motionseg_ros.cli import main as cli_main

ROSBAGS = SHARED_DATA / 'rosbags'
SPOT = ROSBAGS / 'ctu_spot_image_transport_codecs'
START = 1_700_000_000_000_000_000


def images_by_camera(path: Path) -> dict:
    with BagReader(path) as reader:
        return {im.topic.split('/image')[0]: im for im in reader.images()}


# ------------------------------------------------------------------------------ real bags
def test_spot_raw_compressed_and_compressed_depth_agree():
    require_data(SPOT)
    raw = images_by_camera(SPOT / 'raw.bag')
    comp = images_by_camera(SPOT / 'compressed.bag')
    cdepth = images_by_camera(SPOT / 'compressedDepth.bag')
    assert set(raw) == set(comp)
    # 16UC1 raw == 16-bit PNG ("16UC1; png compressed ", trailing space) == compressedDepth
    depth = raw['/spot/depth/frontleft']
    assert depth.encoding == '16UC1' and depth.image.dtype == np.uint16 and depth.is_depth
    np.testing.assert_array_equal(depth.image, comp['/spot/depth/frontleft'].image)
    np.testing.assert_array_equal(depth.image, cdepth['/spot/depth/frontleft'].image)
    # mono8 with is_bigendian=1 decodes like its JPEG twin; rgb8 comes out BGR
    for cam in ('/spot/camera/hand_mono', '/spot/camera/frontleft', '/spot/camera/hand_color'):
        a, b = raw[cam].image.astype(float), comp[cam].image.astype(float)
        assert raw[cam].encoding == comp[cam].encoding == 'bgr8'
        assert a.shape == b.shape and a.shape[2] == 3
        assert np.abs(a - b).mean() < 6.0, cam
    a = raw['/spot/camera/hand_color'].image.astype(float)
    b = comp['/spot/camera/hand_color'].image.astype(float)
    assert np.abs(a - b).mean() < np.abs(a[..., ::-1] - b).mean()
    assert raw['/spot/camera/hand_mono'].image.shape == (171, 224, 3)
    # header stamps (2022) differ from log times (2023): both are reported
    im = raw['/spot/camera/frontleft']
    assert im.frame_id == 'frontleft_fisheye'
    assert im.stamp_ns // 10**9 == 1648052479 and im.log_ns // 10**9 == 1672826398


def test_ros1_bag_and_ros1_profile_mcap_read_the_same():
    bag = require_data(ROSBAGS / 'roboto_tiny_davis' / 'tiny.bag')
    mcap = require_data(ROSBAGS / 'roboto_tiny_davis_ros1_mcap' / 'tiny.mcap')
    with BagReader(bag) as a, BagReader(mcap) as b:
        counts = {t: i.count for t, i in a.topics.items()}
        assert counts == {'/dvs/image_raw': 4, '/dvs1/image_raw': 3}
        assert {t: (i.msgtype, i.count) for t, i in b.topics.items()} == {
            t: (i.msgtype, i.count) for t, i in a.topics.items()}
        ia, ib = list(a.images()), list(b.images())
    assert len(ia) == len(ib) == 7
    for x, y in zip(ia, ib):
        assert (x.topic, x.log_ns, x.stamp_ns, x.frame_id) == (y.topic, y.log_ns, y.stamp_ns,
                                                               y.frame_id)
        assert x.frame_id == ''   # empty frame_id is kept, not an error
        np.testing.assert_array_equal(x.image, y.image)
        assert x.image.shape == (260, 346, 3)
    # the two topics' header stamps are 43 s apart although log times interleave
    dvs = [x.stamp_ns for x in ia if x.topic == '/dvs/image_raw']
    dvs1 = [x.stamp_ns for x in ia if x.topic == '/dvs1/image_raw']
    assert 42e9 < dvs[0] - dvs1[0] < 44e9


def test_svo_bag_topics_and_stamps():
    bag = require_data(ROSBAGS / 'roboto_tiny_svo' / 'tiny_svo.bag')
    with BagReader(bag) as reader:
        assert reader.topics['/camera/camera_info'].msgtype == 'sensor_msgs/msg/CameraInfo'
        assert reader.image_topics() == ['/camera/image_raw']
        ims = list(reader.images())
        info = next(iter(reader.messages(['/camera/camera_info']))).msg
    assert len(ims) == 10 and ims[0].frame_id == '/camera'
    assert ims[0].stamp_ns // 10**9 == 1363639135 and ims[0].log_ns // 10**9 == 1697103075
    assert (info.width, info.height) == (752, 480)
    with pytest.raises(BagError, match='not images'):
        with BagReader(bag) as reader:
            next(reader.images(['/imu/data']))
    with pytest.raises(BagError, match='no topic'):
        with BagReader(bag) as reader:
            next(reader.images(['/nope']))


def test_partial_split_bag_with_message_compression_and_ros1_type_name():
    folder = require_data(ROSBAGS / 'amber_soccer_goal_partial' / 'soccer_goal')
    with pytest.raises(BagError) as err:
        BagReader(folder)
    text = str(err.value)
    assert 'soccer_goal' in text and '12 of 13' in text and 'soccer_goal_0.mcap' in text
    with BagReader(folder, allow_partial=True) as reader:
        assert reader.warnings and 'missing' in reader.warnings[0]
        # "sensor_msgs/Image" in the bag -> sensor_msgs/msg/Image
        assert reader.topics['/camera/image_raw'].msgtype == 'sensor_msgs/msg/Image'
        ims = list(reader.images())
    assert len(ims) == 2
    assert ims[0].image.shape == (480, 640, 3) and ims[0].frame_id == 'camera'
    assert ims[0].stamp_ns == 8297777777 and ims[1].stamp_ns == 8331088888
    # the .mcap alone: per-message zstd announced by the metadata.yaml beside it
    with BagReader(folder / 'soccer_goal_12.mcap') as reader:
        alone = list(reader.images())
    np.testing.assert_array_equal(alone[1].image, ims[1].image)


def test_normalize_type():
    assert normalize_type('sensor_msgs/Image') == 'sensor_msgs/msg/Image'
    assert normalize_type('sensor_msgs/msg/Image') == 'sensor_msgs/msg/Image'


# ------------------------------------------------------------------------------ written bags
def write_bag(path: Path, storage: str, n: int = 5) -> list:
    frames = []
    yy, xx = np.mgrid[0:30, 0:40]
    with BagWriter(path, storage=storage) as bag:
        for i in range(n):
            # smooth colour ramps (JPEG-friendly), a different one per channel and frame
            img = np.dstack([(xx * 6 + i) % 256, yy * 8, (xx + yy) * 3 + 10 * i]).astype(np.uint8)
            labels = np.zeros((30, 40), np.uint8)
            labels[5:10, 5 + i:15 + i] = 1
            labels[20:25, 20:30] = 2
            stamp = START + i * 100_000_000
            bag.write_image('/camera/image_raw', img, stamp)
            bag.write_compressed('/camera/image_raw/compressed', img, stamp, quality=95)
            bag.write_labels('/gt/masks', labels, stamp)
            frames.append((stamp, img, labels))
    return frames


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_written_bag_round_trip(tmp_path, storage):
    frames = write_bag(tmp_path / 'bag', storage)
    with BagReader(tmp_path / 'bag') as reader:
        assert reader.image_topics() == ['/camera/image_raw', '/camera/image_raw/compressed',
                                         '/gt/masks']
        raw = list(reader.images(['/camera/image_raw']))
        comp = list(reader.images(['/camera/image_raw/compressed']))
        gt = list(reader.images(['/gt/masks'], bgr=False))
    assert [r.stamp_ns for r in raw] == [f[0] for f in frames] == [g.stamp_ns for g in gt]
    for r, c, g, (stamp, img, labels) in zip(raw, comp, gt, frames):
        np.testing.assert_array_equal(r.image, img)
        assert r.frame_id == 'camera' and r.log_ns == stamp
        assert c.image.shape == img.shape and np.abs(c.image.astype(int) - img).mean() < 4
        assert g.encoding == 'mono8'
        np.testing.assert_array_equal(g.image, labels)


def test_made_bag_opens_with_rosbags_and_mcap(tmp_path):
    from mcap.reader import make_reader
    from rosbags.highlevel import AnyReader
    frames = write_bag(tmp_path / 'bag', 'mcap')
    with AnyReader([tmp_path / 'bag']) as reader:
        conns = [c for c in reader.connections if c.topic == '/camera/image_raw']
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(conns)]
    assert len(msgs) == len(frames)
    assert msgs[0].encoding == 'bgr8' and bytes(msgs[0].data) == frames[0][1].tobytes()
    files = list((tmp_path / 'bag').glob('*.mcap'))
    assert len(files) == 1
    with open(files[0], 'rb') as fh:
        mr = make_reader(fh)
        assert mr.get_header().profile == 'ros2'
        summary = mr.get_summary()
        topics = {ch.topic: summary.schemas[ch.schema_id].name
                  for ch in summary.channels.values()}
        assert topics['/camera/image_raw'] == 'sensor_msgs/msg/Image'
        assert topics['/camera/image_raw/compressed'] == 'sensor_msgs/msg/CompressedImage'
        assert summary.statistics.message_count == 3 * len(frames)
        stamps = [m.log_time for _, ch, m in mr.iter_messages(topics=['/gt/masks'])]
    assert stamps == [f[0] for f in frames]


def test_truncated_and_corrupt_bags_raise_bag_error_naming_the_file(tmp_path):
    write_bag(tmp_path / 'bag', 'mcap')
    mcap = next((tmp_path / 'bag').glob('*.mcap'))
    cut = tmp_path / 'cut.mcap'
    cut.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagError, match='cut.mcap'):
        with BagReader(cut) as reader:
            list(reader.images())
    garbage = tmp_path / 'garbage.mcap'
    garbage.write_bytes(b'not a bag at all' * 10)
    with pytest.raises(BagError, match='garbage.mcap'):
        BagReader(garbage)
    write_bag(tmp_path / 'sq', 'sqlite3')
    db = next((tmp_path / 'sq').glob('*.db3'))
    db.write_bytes(b'\x00' * 4096)
    with pytest.raises(BagError, match='sq'):
        with BagReader(tmp_path / 'sq') as reader:
            list(reader.images())
    with pytest.raises(BagError, match='no such bag'):
        BagReader(tmp_path / 'absent')


def test_truncated_ros1_bag(tmp_path):
    src = require_data(SPOT / 'raw.bag')
    cut = tmp_path / 'raw_cut.bag'
    cut.write_bytes(src.read_bytes()[:200_000])
    with pytest.raises(BagError, match='raw_cut.bag'):
        with BagReader(cut) as reader:
            list(reader.images())


def test_sqlite3_split_bag_with_missing_file(tmp_path):
    frames = write_bag(tmp_path / 'bag', 'sqlite3')
    meta = tmp_path / 'bag' / 'metadata.yaml'
    data = yaml.safe_load(meta.read_text())
    data['rosbag2_bagfile_information']['relative_file_paths'].append('bag_1.db3')
    meta.write_text(yaml.safe_dump(data))
    with pytest.raises(BagError, match='bag_1.db3'):
        BagReader(tmp_path / 'bag')
    with BagReader(tmp_path / 'bag', allow_partial=True) as reader:
        assert len(list(reader.images(['/camera/image_raw']))) == len(frames)


# ------------------------------------------------------------------------------ make-bag
def write_folder(folder: Path, n: int = 6, with_gt: bool = True) -> None:
    (folder / 'img').mkdir(parents=True)
    if with_gt:
        (folder / 'gt').mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        cv2.imwrite(str(folder / 'img' / f'{i:05d}.png'),
                    rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        if with_gt and i % 2 == 0:    # sparse ground truth
            m = np.zeros((24, 32), np.uint8)
            m[4:10, i:i + 8] = 255
            cv2.imwrite(str(folder / 'gt' / f'{i:05d}.png'), m)


def test_make_bag_from_folder_with_gt_and_camera_info(tmp_path, capsys):
    write_folder(tmp_path)
    out = tmp_path / 'bag'
    assert cli_main(['make-bag', str(tmp_path / 'img'), '--output', str(out), '--rate', '10',
                     '--gt-masks', str(tmp_path / 'gt'), '--camera-info']) == 0
    assert '6 frames' in capsys.readouterr().out
    with BagReader(out) as reader:
        assert reader.topics['/camera/camera_info'].count == 6
        ims = list(reader.images(['/camera/image_raw']))
        gts = list(reader.images(['/gt/masks'], bgr=False))
    assert [i.stamp_ns - ims[0].stamp_ns for i in ims] == [k * 100_000_000 for k in range(6)]
    assert [g.stamp_ns for g in gts] == [ims[k].stamp_ns for k in (0, 2, 4)]
    assert set(np.unique(gts[0].image)) == {0, 1}
    src = cv2.imread(str(tmp_path / 'img' / '00003.png'))
    np.testing.assert_array_equal(ims[3].image, src)


def test_make_bag_compressed_sqlite3_from_video(tmp_path):
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 15.0, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), 40 * i, np.uint8))
    writer.release()
    out = tmp_path / 'bag'
    assert cli_main(['make-bag', str(video), '-o', str(out), '--storage', 'sqlite3',
                     '--compressed']) == 0
    with BagReader(out) as reader:
        assert list(reader.topics) == ['/camera/image_raw/compressed']
        ims = list(reader.images())
    assert len(ims) == 5
    assert ims[1].stamp_ns - ims[0].stamp_ns == pytest.approx(1e9 / 15, abs=1)


def test_make_bag_davis_auto(tmp_path):
    seq = require_data(SHARED_DATA / 'davis2016' / 'JPEGImages' / '480p' / 'car-shadow')
    out = tmp_path / 'bag'
    assert cli_main(['make-bag', str(seq), '-o', str(out), '--gt-masks', 'auto',
                     '--max-frames', '3']) == 0
    with BagReader(out) as reader:
        gts = list(reader.images(['/gt/masks'], bgr=False))
        ims = list(reader.images(['/camera/image_raw']))
    assert len(gts) == len(ims) == 3
    assert gts[0].image.shape == (480, 854) and set(np.unique(gts[0].image)) == {0, 1}
    assert ims[1].stamp_ns - ims[0].stamp_ns == pytest.approx(1e9 / 24, abs=1)


def test_make_bag_errors_are_one_line(tmp_path):
    write_folder(tmp_path, with_gt=False)
    (tmp_path / 'bag').mkdir()
    (tmp_path / 'bag' / 'metadata.yaml').write_text('x')
    for args in (['/nonexistent/input', '-o', str(tmp_path / 'o1')],
                 [str(tmp_path / 'img'), '-o', str(tmp_path / 'bag')],
                 [str(tmp_path / 'img'), '-o', str(tmp_path / 'o2'), '--gt-masks', 'auto'],
                 [str(tmp_path / 'img'), '-o', str(tmp_path / 'o3'), '--rate', '-1']):
        res = subprocess.run([sys.executable, '-m', 'motionseg_ros', 'make-bag', *args],
                             cwd=str(REPO), capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.count('\n') == 1 and 'Traceback' not in res.stderr, res.stderr
    shutil.rmtree(tmp_path / 'bag')
