"""segment_node's other inputs: CompressedImage, CameraInfo intrinsics and use_sim_time."""

from __future__ import annotations

import array
import threading

import cv2
import pytest
from ros_helpers import davis_frames, require_ros, segment_node_session, stamp_ns

require_ros()

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from motionseg_ros.msg import MotionMasks  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage  # noqa: E402

pytestmark = pytest.mark.ros

BASE_NS = 1_700_000_000 * 1_000_000_000
SIM_S = 1234


@pytest.fixture(scope='module')
def run():
    frames = davis_frames('car-shadow', 8)
    stop = threading.Event()
    with segment_node_session(
            'inputs_probe', remaps=['camera_info:=/camera/camera_info'],
            params=['compressed:=true', 'use_sim_time:=true']) as (probe, node):
        try:
            assert '/camera/image_raw/compressed' in node.output()
            probe.subscribe(MotionMasks, '/motion_masks')
            probe.subscribe(DiagnosticArray, '/diagnostics')
            pub = probe.publisher(CompressedImage, '/camera/image_raw/compressed')
            info_pub = probe.publisher(CameraInfo, '/camera/camera_info')
            clock_pub = probe.publisher(Clock, '/clock', reliable=True)

            def tick() -> None:  # simulated time stands still at SIM_S, as a paused bag would
                while not stop.is_set():
                    clock_pub.publish(Clock(clock=Time(sec=SIM_S)))
                    stop.wait(0.1)
            threading.Thread(target=tick, daemon=True).start()
            assert probe.wait_matched(pub, ['/motion_masks'])
            assert probe.wait_for(lambda: info_pub.get_subscription_count() > 0, 10.0)
            h, w = frames[0].shape[:2]
            info = CameraInfo(width=w, height=h,
                              k=[700.0, 0.0, w / 2, 0.0, 700.0, h / 2, 0.0, 0.0, 1.0])
            info_pub.publish(info)
            sent = []
            for i, img in enumerate(frames):
                stamp = BASE_NS + i * 100_000_000
                ok, jpg = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 90])
                msg = CompressedImage(format='jpeg', data=array.array('B', jpg.tobytes()))
                msg.header.frame_id = 'camera'
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                pub.publish(msg)
                sent.append(stamp)
                probe.wait_for(lambda s=stamp: any(stamp_ns(m.header.stamp) == s for m in
                                                   probe.messages('/motion_masks')), 5.0)
                info_pub.publish(info)
            assert probe.wait_for(lambda: (probe.latest_diagnostics() or {}).get('processed') ==
                                  str(len(frames)), 10.0), probe.latest_diagnostics()
            yield {'probe': probe, 'node': node, 'sent': sent, 'size': frames[0].shape[:2]}
            node.interrupt()
            assert node.returncode == 0, node.output()[-3000:]
        finally:
            stop.set()


def test_compressed_images_are_segmented(run):
    masks = run['probe'].messages('/motion_masks')
    assert [stamp_ns(m.header.stamp) for m in masks] == run['sent']
    h, w = run['size']
    assert all((m.label_image.width, m.label_image.height) == (w, h) for m in masks)
    diag = run['probe'].latest_diagnostics()
    assert diag['rejected'] == '0' and diag['received'] == str(len(run['sent']))


def test_camera_info_reaches_the_pipeline(run):
    assert run['probe'].latest_diagnostics()['intrinsics'] == 'True'


def test_use_sim_time_is_honoured(run):
    diag = run['probe'].latest_diagnostics()
    assert diag['use_sim_time'] == 'True'
    stamps = [m.header.stamp.sec for m in run['probe'].messages('/diagnostics')]
    assert stamps[-1] == SIM_S, 'diagnostics are not stamped with /clock time'
