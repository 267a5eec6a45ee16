"""SIGINT ends segment_node cleanly, idle or in the middle of processing.

Clean means: exit code 0, no traceback, no C++ abort, and the final counters line. Also under
Ctrl-C on ``ros2 launch``, where the node gets SIGINT twice (the terminal signals the whole
process group, then launch forwards one more) while it is busy with images.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

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


def _start(own_group: bool = False, extra=()) -> NodeProcess:
    node = NodeProcess(node_executable() + [
        '--ros-args', '-r', 'image:=/camera/image_raw', '--params-file', str(SEGMENT_YAML),
        *extra], own_group=own_group)
    assert node.wait_output('ready', 60), node.output()
    return node


def _check_clean(node: NodeProcess) -> None:
    """Exit code 0 (a hung node, killed after 30 s, would be -9), no traceback, no abort."""
    out = node.output()
    assert node.returncode == 0, out[-3000:]
    for bad in ('Traceback', 'terminate called', 'KeyboardInterrupt', 'Aborted'):
        assert bad not in out, out[-3000:]
    assert 'final counters' in out


@contextmanager
def _feeding(probe: Probe, pub, frames, period: float = 0.05):
    """Publish frames at 1 / period Hz in a background thread while the block runs."""
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set():
            pub.publish(image_msg(frames[i % len(frames)], 1_700_000_000_000_000_000 +
                                  i * 50_000_000))
            i += 1
            stop.wait(period)
    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()
    try:
        yield
    finally:
        stop.set()
        feeder.join(2.0)


def test_sigint_when_idle_names_the_node_fully(probe):
    node = _start(extra=['-r', '__ns:=/front'])
    try:
        node.interrupt()
        _check_clean(node)
        final = [line for line in node.output().splitlines() if 'final counters' in line]
        assert final and '/front/segment_node' in final[0], final
    finally:
        node.close()


def test_sigint_while_processing(probe):
    frames = davis_frames('car-shadow', 10)
    probe.subscribe(MotionMasks, '/motion_masks')
    pub = probe.publisher(Image, '/camera/image_raw')
    node = _start()
    try:
        assert probe.wait_matched(pub, ['/motion_masks'])
        with _feeding(probe, pub, frames):
            assert probe.wait_for(lambda: len(probe.messages('/motion_masks')) >= 2, 30.0), \
                node.output()[-3000:]
            node.interrupt(timeout=30.0)  # the worker is busy: 20 fps in, fewer processed
        _check_clean(node)
    finally:
        node.close()


@pytest.mark.parametrize('gap', [0.0, 0.1, 0.3, 1.0])
def test_process_group_sigint_twice_under_load(probe, gap):
    """Ctrl-C on ``ros2 launch``: SIGINT to the group, a second one ``gap`` s later."""
    frames = davis_frames('car-shadow', 10)
    probe.subscribe(MotionMasks, '/motion_masks')
    pub = probe.publisher(Image, '/camera/image_raw')
    node = _start(own_group=True)
    try:
        assert probe.wait_matched(pub, ['/motion_masks'])
        probe.clear('/motion_masks')
        with _feeding(probe, pub, frames):
            assert probe.wait_for(lambda: len(probe.messages('/motion_masks')) >= 2, 30.0), \
                node.output()[-3000:]
            node.interrupt_group(times=2, gap=gap)
        _check_clean(node)
    finally:
        node.close()
