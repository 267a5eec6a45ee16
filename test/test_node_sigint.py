"""SIGINT ends segment_node cleanly within 2 s, idle or in the middle of processing."""

from __future__ import annotations

import threading

import pytest
from ros_helpers import (SEGMENT_YAML, NodeProcess, Probe, davis_frames, image_msg,
                         isolate_dds, node_executable, require_ros)

require_ros()

import rclpy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from motionseg_ros.msg import MotionMasks  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def probe():
    isolate_dds()
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    p = Probe(ctx, 'sigint_probe')
    yield p
    p.close()
    rclpy.shutdown(context=ctx)


def _start() -> NodeProcess:
    node = NodeProcess(node_executable() + [
        '--ros-args', '-r', 'image:=/camera/image_raw', '--params-file', str(SEGMENT_YAML)])
    assert node.wait_output('ready', 60), node.output()
    return node


def _check_clean(node: NodeProcess, seconds: float) -> None:
    out = node.output()
    assert node.returncode == 0, out[-3000:]
    assert seconds < 2.0, f'took {seconds:.2f} s to exit'
    assert 'Traceback' not in out, out[-3000:]
    assert 'final counters' in out


def test_sigint_when_idle(probe):
    node = _start()
    try:
        _check_clean(node, node.interrupt())
    finally:
        node.close()


def test_sigint_while_processing(probe):
    frames = davis_frames('car-shadow', 10)
    probe.subscribe(MotionMasks, '/motion_masks')
    pub = probe.publisher(Image, '/camera/image_raw')
    node = _start()
    stop = threading.Event()
    try:
        assert probe.wait_matched(pub, ['/motion_masks'])

        def stream() -> None:
            i = 0
            while not stop.is_set():
                pub.publish(image_msg(frames[i % len(frames)], 1_700_000_000_000_000_000 +
                                      i * 50_000_000))
                i += 1
                stop.wait(0.05)
        feeder = threading.Thread(target=stream, daemon=True)
        feeder.start()
        assert probe.wait_for(lambda: len(probe.messages('/motion_masks')) >= 2, 30.0), \
            node.output()[-3000:]
        seconds = node.interrupt()  # the worker is busy: 20 fps in, ~6-15 fps processed
        stop.set()
        feeder.join(2.0)
        _check_clean(node, seconds)
    finally:
        stop.set()
        node.close()
