"""A 16UC1 depth image sent to segment_node's image input is refused, logged and counted.

Before, the node shifted it to 8 bits and segmented it as a camera image while ``motionseg run``
refused the same topic; both now refuse it with the same reason (see test_image_codec.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from ros_helpers import davis_frames, image_msg, require_ros, segment_node_session, stamp_ns

require_ros()

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from motionseg_ros.msg import MotionMasks  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

pytestmark = pytest.mark.ros

BASE_NS = 1_700_000_000 * 1_000_000_000


def test_depth_on_the_image_input_is_rejected_and_counted():
    frames = davis_frames('car-shadow', 2)
    with segment_node_session('depth_as_image_probe') as (probe, node):
        probe.subscribe(MotionMasks, '/motion_masks')
        probe.subscribe(DiagnosticArray, '/diagnostics')
        pub = probe.publisher(Image, '/camera/image_raw')
        assert probe.wait_matched(pub, ['/motion_masks']), 'discovery failed'
        depth = np.full(frames[0].shape[:2], 1500, np.uint16)   # 1.5 m everywhere
        pub.publish(image_msg(depth, BASE_NS, '16UC1'))

        def rejected() -> bool:
            d = probe.latest_diagnostics() or {}
            return d.get('rejected.depth_as_image') == '1' and d.get('in_flight') == '0'
        assert probe.wait_for(rejected, 20.0), \
            f'{probe.latest_diagnostics()}\n{node.output()[-3000:]}'
        d = probe.latest_diagnostics()
        assert 'encoding 16UC1 looks like depth' in d['last_warning']
        assert (d['received'], d['processed'], d['rejected']) == ('1', '0', '1')
        assert not probe.messages('/motion_masks')        # nothing segmented from depth
        assert 'looks like depth' in node.output()          # logged
        # the node goes on with the next camera image
        pub.publish(image_msg(frames[1], BASE_NS + 100_000_000))
        assert probe.wait_for(lambda: any(stamp_ns(m.header.stamp) == BASE_NS + 100_000_000
                                          for m in probe.messages('/motion_masks')), 30.0), \
            node.output()[-3000:]
        assert node.alive()
        assert node.interrupt() < 5.0 and node.returncode == 0, node.output()[-3000:]
