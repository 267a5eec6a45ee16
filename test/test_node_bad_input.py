"""Bad input keeps segment_node alive, is counted and reported, and the next good frame works.

One node subprocess (with depth enabled) receives, in turn, each kind of bad input followed by
a good frame; /diagnostics must report the problem and a MotionMasks must come for the good
frame's stamp.
"""

from __future__ import annotations

import array

import numpy as np
import pytest
from ros_helpers import (NodeProcess, Probe, davis_frames, image_msg, require_ros,
                         segment_node_session, stamp_ns)

require_ros()

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from motionseg_ros.msg import MotionMasks  # noqa: E402
from rcl_interfaces.msg import Log  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros

BASE_NS = 1_700_000_000 * 1_000_000_000


class Feeder:
    """Publishes frames with increasing stamps and checks the node's reaction."""

    def __init__(self, probe: Probe, node: NodeProcess, frames) -> None:
        self.probe, self.node, self.frames = probe, node, frames
        self.pub = probe.publisher(Image, '/camera/image_raw')
        self.depth_pub = probe.publisher(Image, '/camera/depth')
        self.stamp = BASE_NS
        self.i = 0
        self.size = frames[0].shape[:2]

    def next_stamp(self) -> int:
        self.stamp += 100_000_000
        return self.stamp

    def good(self, size=None, stamp=None) -> int:
        """Publish a good frame; return its stamp once its MotionMasks arrived."""
        img = self.frames[self.i % len(self.frames)]
        self.i += 1
        if size is not None:
            img = np.ascontiguousarray(img[:size[0], :size[1]])
        stamp = self.next_stamp() if stamp is None else stamp
        self.pub.publish(image_msg(img, stamp))
        assert self.probe.wait_for(lambda: any(
            stamp_ns(m.header.stamp) == stamp for m in self.probe.messages('/motion_masks')),
            20.0), f'no output for good frame {stamp}; node log:\n{self.node.output()[-3000:]}'
        return stamp

    def diag_after(self, key: str, at_least: int) -> dict:
        """Wait for a diagnostics message where ``key`` >= at_least and the node is idle."""
        def ok() -> bool:
            d = self.probe.latest_diagnostics()
            return bool(d) and int(d.get(key, 0)) >= at_least and d['in_flight'] == '0'
        assert self.probe.wait_for(ok, 10.0), \
            f'{key} not reported: {self.probe.latest_diagnostics()}\n{self.node.output()[-3000:]}'
        return self.probe.latest_diagnostics()


@pytest.fixture(scope='module')
def feeder():
    frames = davis_frames('car-shadow', 6)
    # a generous wait for trailing depth: pairing must not depend on the machine's load
    with segment_node_session(
            'bad_input_probe', remaps=['depth:=/camera/depth'],
            params=['use_depth:=true', 'depth_wait:=3.0']) as (probe, node):
        probe.subscribe(MotionMasks, '/motion_masks')
        probe.subscribe(DiagnosticArray, '/diagnostics')
        probe.subscribe(Log, '/rosout', depth=1000)
        f = Feeder(probe, node, frames)
        assert probe.wait_matched(f.pub, ['/motion_masks']), 'discovery failed'
        assert probe.wait_for(lambda: f.depth_pub.get_subscription_count() > 0, 10.0)
        assert probe.wait_for(lambda: probe.messages('/diagnostics'), 5.0)
        f.good()
        f.good()
        yield f
        assert node.alive(), node.output()[-3000:]
        node.interrupt()
        assert node.returncode == 0, node.output()[-3000:]


def _assert_consistent(d: dict) -> None:
    assert int(d['received']) == int(d['processed']) + int(d['dropped']) + int(d['rejected'])


def _raw(width: int, height: int, encoding: str, step: int, data: bytes, stamp: int) -> Image:
    msg = image_msg(np.zeros((1, 1, 3), np.uint8), stamp)
    msg.width, msg.height, msg.encoding, msg.step = width, height, encoding, step
    msg.data = array.array('B', data)
    return msg


def test_unknown_encoding(feeder):
    feeder.pub.publish(_raw(4, 4, 'weird42', 12, bytes(48), feeder.next_stamp()))
    d = feeder.diag_after('rejected.unsupported_encoding', 1)
    assert 'weird42' in d['last_warning']
    first = next(st for m in feeder.probe.messages('/diagnostics') for st in m.status
                 if any(kv.key == 'rejected.unsupported_encoding' for kv in st.values))
    assert first.level == b'\x01' and 'rejected' in first.message  # WARN in that report
    feeder.good()
    _assert_consistent(feeder.diag_after('rejected.unsupported_encoding', 1))


def test_data_length_not_step_times_height(feeder):
    h, w = feeder.size
    feeder.pub.publish(_raw(w, h, 'bgr8', w * 3, bytes(w * 3 * h - 100), feeder.next_stamp()))
    d = feeder.diag_after('rejected.bad_data_length', 1)
    assert 'step x height' in d['last_warning']
    feeder.good()


def test_empty_image(feeder):
    feeder.pub.publish(_raw(0, 0, 'bgr8', 0, b'', feeder.next_stamp()))
    d = feeder.diag_after('rejected.empty_image', 1)
    assert 'empty image' in d['last_warning']
    feeder.good()


def _rosout_warnings(feeder: Feeder, text: str) -> list:
    """Return the WARN lines of the node on /rosout that contain ``text``."""
    return [m for m in feeder.probe.messages('/rosout')
            if m.name.endswith('segment_node') and m.level == Log.WARN and text in m.msg]


def test_resolution_change(feeder):
    before = int((feeder.probe.latest_diagnostics() or {}).get('events.resolution_change', 0))
    stamp = feeder.good(size=(240, 320))  # processed after a reset, at its own size
    small = [m for m in feeder.probe.messages('/motion_masks')
             if stamp_ns(m.header.stamp) == stamp][0]
    assert (small.label_image.width, small.label_image.height) == (320, 240)
    d = feeder.diag_after('events.resolution_change', before + 1)
    # the pipeline's warning reaches /diagnostics and rosout
    assert 'resolution changed' in d['last_pipeline_warning'], d
    assert int(d['pipeline_warnings']) >= 1 and int(d['pipeline_resets']) >= 1, d
    assert feeder.probe.wait_for(lambda: _rosout_warnings(feeder, 'resolution changed'), 10.0)
    feeder.good()  # back to full size: a second change, still fine
    d = feeder.diag_after('events.resolution_change', before + 2)
    _assert_consistent(d)


def test_stamp_going_backwards(feeder):
    feeder.good()
    back = feeder.stamp - 5_000_000_000
    feeder.good(stamp=back)
    d = feeder.diag_after('events.stamp_backwards', 1)
    assert 'stamp went backwards' in d['last_pipeline_warning'], d
    assert feeder.probe.wait_for(lambda: _rosout_warnings(feeder, 'stamp went backwards'),
                                 10.0)
    warned = [st for m in feeder.probe.messages('/diagnostics') for st in m.status
              if any(kv.key == 'last_pipeline_warning' and 'stamp went backwards' in kv.value
                     for kv in st.values)]
    assert any(st.level == b'\x01' for st in warned), 'no WARN report for the reset'
    feeder.stamp = back
    feeder.good()


def test_nan_depth(feeder):
    stamp = feeder.next_stamp()
    nan_depth = image_msg(np.full(feeder.size, np.nan, np.float32), stamp, '32FC1')
    feeder.depth_pub.publish(nan_depth)
    feeder.probe.wait_for(lambda: False, 0.3)  # let the depth arrive before its image
    feeder.stamp = stamp - 1
    feeder.good(stamp=stamp)  # the image is still segmented, without depth
    d = feeder.diag_after('events.depth_rejected', 1)
    assert 'no valid pixel' in d['last_warning']
    stamp = feeder.next_stamp()
    depth_mm = np.full(feeder.size, 2500, np.uint16)
    feeder.depth_pub.publish(image_msg(depth_mm, stamp, '16UC1'))
    feeder.probe.wait_for(lambda: False, 0.3)
    feeder.stamp = stamp - 1
    feeder.good(stamp=stamp)
    d = feeder.diag_after('events.depth_paired', 1)
    _assert_consistent(d)
    assert int(d['rejected']) >= 3


def test_depth_arriving_just_after_its_image_is_paired(feeder):
    depth_mm = np.full(feeder.size, 1800, np.uint16)
    before = int(feeder.probe.latest_diagnostics().get('events.depth_paired', 0))
    old = feeder.next_stamp()
    feeder.depth_pub.publish(image_msg(depth_mm, old, '16UC1'))  # the depth stream is live
    feeder.probe.wait_for(lambda: False, 0.2)
    stamp = feeder.next_stamp()
    feeder.pub.publish(image_msg(feeder.frames[0], stamp))
    feeder.probe.wait_for(lambda: False, 0.03)  # the depth comes 30 ms after its image
    feeder.depth_pub.publish(image_msg(depth_mm, stamp, '16UC1'))
    assert feeder.probe.wait_for(lambda: any(
        stamp_ns(m.header.stamp) == stamp for m in feeder.probe.messages('/motion_masks')), 20.0)
    feeder.diag_after('events.depth_paired', before + 1)
