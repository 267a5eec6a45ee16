"""Every message of the package survives a round trip over real DDS between two rclpy nodes."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import require_ros

require_ros()

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402

from motionseg_ros.msg import (MotionMasks, ObjectMask, Trajectory,  # noqa: E402
                               TrajectoryArray)


@pytest.fixture(scope='module')
def nodes():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    talker = rclpy.create_node('msg_talker', context=ctx)
    listener = rclpy.create_node('msg_listener', context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(talker)
    executor.add_node(listener)
    yield talker, listener, executor
    executor.shutdown()
    talker.destroy_node()
    listener.destroy_node()
    rclpy.shutdown(context=ctx)


def _round_trip(nodes, msg_type, msg, topic):
    talker, listener, executor = nodes
    qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    received = []
    sub = listener.create_subscription(msg_type, topic, received.append, qos)
    pub = talker.create_publisher(msg_type, topic, qos)
    deadline = time.monotonic() + 20.0
    while (pub.get_subscription_count() == 0 or sub.get_publisher_count() == 0) \
            and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert pub.get_subscription_count() == 1, 'discovery did not match publisher and subscriber'
    pub.publish(msg)
    while not received and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    talker.destroy_publisher(pub)
    listener.destroy_subscription(sub)
    assert received, f'{msg_type.__name__} did not arrive over DDS'
    return received[0]


def _stamp(msg, sec, nsec):
    msg.sec = sec
    msg.nanosec = nsec


def test_motion_masks_480x854_round_trip(nodes):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(480, 854), dtype=np.uint8)
    msg = MotionMasks()
    _stamp(msg.header.stamp, 1700000000, 123456789)
    msg.header.frame_id = 'camera_optical'
    img = msg.label_image
    img.header = msg.header
    img.height, img.width, img.encoding, img.step = 480, 854, 'mono8', 854
    img.data = labels.tobytes()
    for k in range(1, 4):
        obj = ObjectMask()
        obj.id = 100 + k
        obj.label = k
        obj.score = 0.25 * k
        obj.roi.x_offset, obj.roi.y_offset, obj.roi.width, obj.roi.height = k, 2 * k, 50, 60
        obj.area = int((labels == k).sum())
        obj.num_dynamic_tracks = 7 * k
        msg.objects.append(obj)
    got = _round_trip(nodes, MotionMasks, msg, 'rt_motion_masks')
    assert got.header.stamp.sec == 1700000000 and got.header.stamp.nanosec == 123456789
    assert got.header.frame_id == 'camera_optical'
    assert (got.label_image.height, got.label_image.width) == (480, 854)
    assert got.label_image.encoding == 'mono8'
    out = np.frombuffer(bytes(got.label_image.data), np.uint8).reshape(480, 854)
    np.testing.assert_array_equal(out, labels)
    assert [o.id for o in got.objects] == [101, 102, 103]
    assert [o.label for o in got.objects] == [1, 2, 3]
    assert got.objects[2].score == pytest.approx(0.75)
    assert got.objects[1].roi.y_offset == 4 and got.objects[1].roi.height == 60
    assert [o.area for o in got.objects] == [int((labels == k).sum()) for k in (1, 2, 3)]
    assert got.objects[0].num_dynamic_tracks == 7


def test_trajectory_array_round_trip(nodes):
    rng = np.random.default_rng(1)
    n, t = 300, 16
    u = rng.uniform(0, 854, (n, t)).astype(np.float32)
    v = rng.uniform(0, 480, (n, t)).astype(np.float32)
    vis = rng.random((n, t)) > 0.2
    prob = rng.random(n).astype(np.float32)
    msg = TrajectoryArray()
    _stamp(msg.header.stamp, 42, 5)
    msg.header.frame_id = 'cam'
    for i in range(n):
        tr = Trajectory()
        tr.id = 2 ** 40 + i
        tr.object_id = -1 if i % 3 else i // 3
        tr.dynamic_probability = float(prob[i])
        tr.dynamic = bool(prob[i] > 0.5)
        tr.stamps = [Time(sec=40 + k // 10, nanosec=(k % 10) * 100_000_000) for k in range(t)]
        tr.u = u[i].tolist()
        tr.v = v[i].tolist()
        tr.visible = vis[i].tolist()
        msg.trajectories.append(tr)
    got = _round_trip(nodes, TrajectoryArray, msg, 'rt_trajectories')
    assert got.header.frame_id == 'cam' and got.header.stamp.nanosec == 5
    assert len(got.trajectories) == n
    for i in (0, 1, 150, n - 1):
        tr = got.trajectories[i]
        assert tr.id == 2 ** 40 + i
        assert tr.object_id == (-1 if i % 3 else i // 3)
        assert tr.dynamic_probability == pytest.approx(prob[i])
        assert tr.dynamic == bool(prob[i] > 0.5)
        np.testing.assert_array_equal(np.asarray(tr.u, np.float32), u[i])
        np.testing.assert_array_equal(np.asarray(tr.v, np.float32), v[i])
        assert list(tr.visible) == vis[i].tolist()
        assert [(s.sec, s.nanosec) for s in tr.stamps] == [
            (40 + k // 10, (k % 10) * 100_000_000) for k in range(t)]


def test_trajectory_and_object_mask_alone(nodes):
    obj = ObjectMask(id=7, label=1, score=0.5, area=10, num_dynamic_tracks=3)
    got = _round_trip(nodes, ObjectMask, obj, 'rt_object_mask')
    assert (got.id, got.label, got.area, got.num_dynamic_tracks) == (7, 1, 10, 3)
    tr = Trajectory(id=1, object_id=-1, dynamic_probability=0.1, dynamic=False,
                    u=[1.5], v=[2.5], visible=[True])
    got = _round_trip(nodes, Trajectory, tr, 'rt_trajectory')
    assert got.object_id == -1 and list(got.u) == [1.5] and list(got.visible) == [True]
