"""`motionseg replay` over real DDS: a subscriber in the test receives every frame intact."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, require_data, require_ros

try:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
except ImportError:  # pragma: no cover - no ROS here
    require_ros()

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from motionseg_ros.bags.reader import BagReader  # noqa: E402
from motionseg_ros.bags.writer import BagWriter  # noqa: E402

pytestmark = pytest.mark.ros
FPS = 20.0
START = 1_700_000_000_000_000_000


@pytest.fixture
def ros():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('replay_test_listener', context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def make_bag(path: Path, n: int = 8, storage: str = 'mcap') -> list:
    rng = np.random.default_rng(3)
    frames = []
    with BagWriter(path, storage=storage) as bag:
        for i in range(n):
            img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
            stamp = START + int(i * 1e9 / FPS)
            bag.write_image('/camera/image_raw', img, stamp, 'cam')
            bag.write_camera_info('/camera/camera_info', stamp, 'cam', 64, 48,
                                  (60.0, 61.0, 31.5, 23.5))
            frames.append((stamp, img))
    return frames


def replay(args, timeout=60.0):
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, '-m', 'motionseg_ros', 'replay', *args],
                            cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def collect(node, executor, proc, subs, want, timeout=60.0):
    """Spin until ``want`` messages arrived on every subscription or the replay ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
        if all(len(box) >= want[t] for t, box in subs.items()):
            break
        if proc.poll() is not None:
            # drain what is still in flight
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.02)
            break
    out, _ = proc.communicate(timeout=30)
    return out


def subscribe(node, msg_type, topic, box):
    qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    return node.create_subscription(
        msg_type, topic, lambda m: box.append((time.monotonic(), m)), qos)


def test_replay_made_bag_delivers_all_frames_intact(tmp_path, ros):
    node, executor = ros
    frames = make_bag(tmp_path / 'bag')
    images, infos = [], []
    subscribe(node, Image, '/camera/image_raw', images)
    subscribe(node, CameraInfo, '/camera/camera_info', infos)
    proc = replay([str(tmp_path / 'bag'), '--wait-subscribers', '20'])
    out = collect(node, executor, proc, {'img': images, 'info': infos},
                  {'img': len(frames), 'info': len(frames)})
    assert proc.returncode == 0, out
    assert 'published 16 messages' in out, out
    assert len(images) == len(frames), out
    assert len(infos) == len(frames)
    for (stamp, img), (_, msg) in zip(frames, images):
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
        assert msg.header.frame_id == 'cam' and msg.encoding == 'bgr8'
        got = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        np.testing.assert_array_equal(got, img)
    assert list(infos[0][1].k) == [60.0, 0.0, 31.5, 0.0, 61.0, 23.5, 0.0, 0.0, 1.0]
    # recorded timing is honoured: 7 intervals of 50 ms cannot arrive faster than that
    # (no upper bound: a busy machine may deliver late, which is not the player's fault)
    span = images[-1][0] - images[0][0]
    assert span > 0.25, span


def test_replay_rate_offset_topics_remap_clock(tmp_path, ros):
    node, executor = ros
    from rosgraph_msgs.msg import Clock
    frames = make_bag(tmp_path / 'bag', n=10, storage='sqlite3')
    images, clocks = [], []
    subscribe(node, Image, '/remapped/image', images)
    subscribe(node, Clock, '/clock', clocks)
    # skip the first 0.2 s (4 frames) and play twice as fast, images only
    # rcl remapping rules apply once, the first matching rule wins (no chaining)
    proc = replay([str(tmp_path / 'bag'), '--rate', '2', '--start-offset', '0.2', '--clock',
                   '--topics', '/camera/image_raw', '--remap',
                   '/camera/image_raw:=/remapped/image', '/remapped/image:=/elsewhere',
                   '--wait-subscribers', '20'])
    out = collect(node, executor, proc, {'img': images}, {'img': 6})
    assert proc.returncode == 0, out
    assert '/camera/image_raw -> /remapped/image' in out and 'deprecated' not in out, out
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    assert stamps == [s for s, _ in frames[4:]], out
    assert clocks, 'no /clock published'
    clock_ns = [c.clock.sec * 10**9 + c.clock.nanosec for _, c in clocks]
    assert min(clock_ns) >= frames[4][0] and max(clock_ns) <= frames[-1][0]
    span = images[-1][0] - images[0][0]   # 5 intervals of 50 ms at x2 = 125 ms
    assert span < 1.0


def test_replay_ros1_bag_by_field_copy(ros):
    bag = require_data(SHARED_DATA / 'rosbags' / 'roboto_tiny_svo' / 'tiny_svo.bag')
    node, executor = ros
    with BagReader(bag) as reader:
        expected = [(im.stamp_ns, im.frame_id) for im in reader.images(['/camera/image_raw'])]
        raw0 = next(iter(reader.messages(['/camera/image_raw']))).msg
    images = []
    subscribe(node, Image, '/camera/image_raw', images)
    proc = replay([str(bag), '--topics', '/camera/image_raw', '--wait-subscribers', '20'])
    out = collect(node, executor, proc, {'img': images}, {'img': len(expected)})
    assert proc.returncode == 0, out
    assert len(images) == len(expected) == 10
    got = [(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec, m.header.frame_id)
           for _, m in images]
    assert got == expected
    first = images[0][1]
    assert (first.width, first.height, first.encoding) == (752, 480, 'mono8')
    assert bytes(first.data) == bytes(raw0.data)


def test_replay_bad_input_is_one_clean_line(tmp_path):
    bad = tmp_path / 'broken.mcap'
    bad.write_bytes(b'\x89MCAP0\r\n' + b'\x00' * 50)
    res = subprocess.run([sys.executable, '-m', 'motionseg_ros', 'replay', str(bad)],
                         cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert 'broken.mcap' in res.stderr and 'Traceback' not in res.stderr
    res = subprocess.run([sys.executable, '-m', 'motionseg_ros', 'replay', str(tmp_path),
                          '--remap', 'nonsense'], cwd=str(REPO), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and 'Traceback' not in res.stderr


def test_field_copy_of_ros1_messages_and_unavailable_types(ros):
    from motionseg_ros.bags.player import BagPlayer, copy_fields, message_class
    from motionseg_ros.bags.reader import BagError
    bag = require_data(SHARED_DATA / 'rosbags' / 'roboto_tiny_svo' / 'tiny_svo.bag')
    node, _ = ros
    done = set()
    with BagReader(bag) as reader:
        for m in reader.messages():
            if m.topic in done or m.topic == '/rosout':
                continue
            done.add(m.topic)
            out = copy_fields(m.msg, message_class(m.msgtype))
            assert out.header.frame_id == m.msg.header.frame_id
            assert out.header.stamp.nanosec == m.msg.header.stamp.nanosec
            if m.topic == '/camera/camera_info':
                np.testing.assert_array_equal(out.k, m.msg.K)  # ROS 1 spelling
                assert list(out.d) == list(m.msg.D) and out.distortion_model == 'plumb_bob'
            if m.topic == '/imu/data':
                assert out.orientation.w == m.msg.orientation.w
                np.testing.assert_array_equal(out.angular_velocity_covariance,
                                              m.msg.angular_velocity_covariance)
    assert len(done) == 5
    # ROS 1 rosgraph_msgs/Log has no ROS 2 twin: left out of "all topics", an error by name
    player = BagPlayer(node, bag)
    assert '/rosout' not in player.topics and 'rosout' in player.warnings[0]
    with pytest.raises(BagError, match='rosgraph_msgs/msg/Log'):
        BagPlayer(node, bag, topics=['/rosout'])


def test_replay_loop_until_interrupted(tmp_path, ros):
    import signal
    node, executor = ros
    frames = make_bag(tmp_path / 'bag', n=4)
    images = []
    subscribe(node, Image, '/camera/image_raw', images)
    proc = replay([str(tmp_path / 'bag'), '--loop', '--rate', '4', '--topics',
                   '/camera/image_raw', '--wait-subscribers', '20'])
    deadline = time.monotonic() + 60
    while len(images) < 2 * len(frames) + 1 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert 'published' in out and 'Traceback' not in out
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    # every loop continues the recorded 20 fps: shifted by 3 intervals + 1 period (no reset)
    period = int(1e9 / FPS)
    expected = [s + k * 4 * period for k in range(3) for s, _ in frames]
    assert stamps[:9] == expected[:9], out
    assert all(b > a for a, b in zip(stamps, stamps[1:])), stamps
    # the rest of the message is the recorded one
    assert bytes(images[4][1].data) == bytes(images[0][1].data)


def test_shift_stamps_reaches_nested_and_sequence_times():
    from builtin_interfaces.msg import Time

    from motionseg_ros.bags.player import shift_stamps
    from motionseg_ros.msg import Trajectory, TrajectoryArray
    msg = TrajectoryArray()
    msg.header.stamp = Time(sec=1, nanosec=900_000_000)
    msg.trajectories = [Trajectory(stamps=[Time(sec=2, nanosec=0), Time(sec=2, nanosec=5)])]
    shift_stamps(msg, 250_000_000)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (2, 150_000_000)
    assert [(t.sec, t.nanosec) for t in msg.trajectories[0].stamps] == [
        (2, 250_000_000), (2, 250_000_005)]


def test_replay_waits_for_discovery_by_default(tmp_path, ros):
    """Without --wait-subscribers the first frames used to go out before discovery (lost)."""
    node, executor = ros
    frames = make_bag(tmp_path / 'bag', n=20)
    images = []
    subscribe(node, Image, '/camera/image_raw', images)
    proc = replay([str(tmp_path / 'bag'), '--topics', '/camera/image_raw'])
    out = collect(node, executor, proc, {'img': images}, {'img': len(frames)})
    assert proc.returncode == 0, out
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    assert stamps == [s for s, _ in frames], out
    assert 'subscribers matched' in out, out


def test_replay_partial_ros2_bag_with_zstd_messages(ros):
    folder = require_data(SHARED_DATA / 'rosbags' / 'amber_soccer_goal_partial' / 'soccer_goal')
    node, executor = ros
    images = []
    subscribe(node, Image, '/camera/image_raw', images)
    res = subprocess.run([sys.executable, '-m', 'motionseg_ros', 'replay', str(folder)],
                         cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and '--allow-partial' in res.stderr
    proc = replay([str(folder), '--allow-partial', '--wait-subscribers', '20'])
    out = collect(node, executor, proc, {'img': images}, {'img': 2})
    assert proc.returncode == 0 and 'warning' in out and 'missing' in out, out
    assert [m.header.stamp.nanosec for _, m in images] == [297777777, 331088888]
    first = images[0][1]
    assert (first.width, first.height, first.encoding, first.header.frame_id) == (
        640, 480, 'rgb8', 'camera')
    with BagReader(folder, allow_partial=True) as reader:
        expected = next(iter(reader.messages())).msg
    assert bytes(first.data) == bytes(expected.data)
