#!/usr/bin/env python3
"""Measure segment_node end to end over DDS: publish a DAVIS sequence, time the MotionMasks.

    source env.sh
    python scripts/measure_dds_latency.py --sequence car-shadow --rate 10 --frames 80

Starts the installed node (unless ``--no-start``: then a node must already run on the same
domain, subscribed to ``--image-topic``), publishes the frames at ``--rate`` with best-effort QoS
like a camera driver, and prints: latency publish -> receipt of the MotionMasks with the same
stamp (p50 / p95 / max), the sustained output rate, the node's own counters (received,
processed, dropped, rejected) from /diagnostics, frames lost in transport, and the machine.
Images of 854x480 need the shared-memory profile (``--shm``, on by default) with best effort.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DAVIS = ROOT.parent / 'shared' / 'data' / 'davis2016' / 'JPEGImages' / '480p'


def machine() -> str:
    """Describe the CPU, core count and load, for the printed figures."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, 'getloadavg') else (float('nan'),) * 3
    return (f'{cpu}, {os.cpu_count()} cores, load avg {load[0]:.2f} {load[1]:.2f} '
            f'{load[2]:.2f}, {platform.system()} {platform.release()}, '
            f'Python {platform.python_version()}')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sequence', default='car-shadow', help='DAVIS 2016 sequence name')
    ap.add_argument('--data', type=Path, default=DAVIS, help='DAVIS JPEGImages/480p folder')
    ap.add_argument('--frames', type=int, default=80, help='frames to publish (loops)')
    ap.add_argument('--rate', type=float, default=10.0, help='publish rate (Hz)')
    ap.add_argument('--image-topic', default='/camera/image_raw')
    ap.add_argument('--output-topic', default='/motion_masks')
    ap.add_argument('--no-start', action='store_true', help='use an already running node')
    ap.add_argument('--params-file', type=Path, default=ROOT / 'config' / 'segment.yaml')
    ap.add_argument('--no-shm', dest='shm', action='store_false',
                    help='do not use config/fastdds_shm.xml (large images may be lost)')
    ap.add_argument('--reliable', action='store_true', help='publish with reliable QoS')
    return ap.parse_args(argv)


def percentile(values: List[float], q: float) -> float:
    """Return the q-th percentile, NaN for no values."""
    return float(np.percentile(values, q)) if values else float('nan')


def main(argv: Optional[List[str]] = None) -> int:
    """Run the measurement; return the exit code."""
    args = parse_args(argv)
    files = sorted((args.data / args.sequence).glob('*.jpg'))
    if not files:
        print(f'error: no JPEG frames in {args.data / args.sequence}', file=sys.stderr)
        return 2
    if args.shm:
        profile = str(ROOT / 'config' / 'fastdds_shm.xml')
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = profile  # Fast DDS 3 (Jazzy, Kilted)
        if os.environ.get('ROS_DISTRO') == 'humble':  # Fast DDS 2.6 reads the old name
            os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] = profile
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    import cv2
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy
    from sensor_msgs.msg import Image

    from motionseg_ros.msg import MotionMasks
    from motionseg_ros.ros.conversions import numpy_to_image, stamp_to_ns

    frames = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in files]
    node_proc = None
    if not args.no_start:
        from ament_index_python.packages import get_package_prefix
        exe = Path(get_package_prefix('motionseg_ros')) / 'lib' / 'motionseg_ros' / 'segment_node'
        node_proc = subprocess.Popen(
            [str(exe), '--ros-args', '-r', f'image:={args.image_topic}',
             '--params-file', str(args.params_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    node = rclpy.create_node('measure_dds_latency')
    sent: Dict[int, float] = {}
    latency_ms: List[float] = []
    receipts: List[float] = []
    diag: Dict[str, str] = {}
    lock = threading.Lock()

    def on_masks(msg: MotionMasks) -> None:
        now = time.monotonic()
        with lock:
            t0 = sent.get(stamp_to_ns(msg.header.stamp))
            if t0 is not None:
                latency_ms.append((now - t0) * 1e3)
                receipts.append(now)

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if 'segment' in status.name:
                with lock:
                    diag.clear()
                    diag.update({kv.key: kv.value for kv in status.values})

    reliable = QoSProfile(depth=10, reliability=QoSReliabilityPolicy.RELIABLE)
    node.create_subscription(MotionMasks, args.output_topic, on_masks, reliable)
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    pub = node.create_publisher(Image, args.image_topic, QoSProfile(
        depth=5, reliability=QoSReliabilityPolicy.RELIABLE if args.reliable
        else QoSReliabilityPolicy.BEST_EFFORT))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    code = 0
    try:
        deadline = time.monotonic() + 60
        while (pub.get_subscription_count() == 0 or node.count_publishers(args.output_topic) == 0
               or not diag) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pub.get_subscription_count() == 0:
            print('error: no node subscribed to', args.image_topic, file=sys.stderr)
            return 1
        with lock:
            start_counts = {k: int(diag.get(k, 0)) for k in
                            ('received', 'processed', 'dropped', 'rejected')}
        period = 1.0 / args.rate
        t_start = time.monotonic()
        for i in range(args.frames):
            target = t_start + i * period
            time.sleep(max(0.0, target - time.monotonic()))
            stamp = time.time_ns()
            msg = numpy_to_image(frames[i % len(frames)], 'bgr8')
            msg.header.frame_id = 'camera'
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            with lock:
                sent[stamp] = time.monotonic()
            pub.publish(msg)
        pub_s = time.monotonic() - t_start

        def settled() -> bool:
            with lock:
                return bool(diag) and diag.get('in_flight') == '0' and \
                    int(diag['received']) - start_counts['received'] > 0
        end = time.monotonic() + 30
        time.sleep(1.5)
        while not settled() and time.monotonic() < end:
            time.sleep(0.1)
        time.sleep(1.2)
        with lock:
            counts = {k: int(diag.get(k, 0)) - start_counts[k] for k in start_counts}
            lat, rec, d = list(latency_ms), list(receipts), dict(diag)
        span = rec[-1] - rec[0] if len(rec) > 1 else float('nan')
        h, w = frames[0].shape[:2]
        print(f'machine: {machine()}')
        print(f'input: {args.sequence} {w}x{h} bgr8, {args.frames} frames at {args.rate:g} Hz '
              f'(achieved {args.frames / pub_s:.2f} Hz), '
              f"{'reliable' if args.reliable else 'best effort'}, "
              f"shm profile {'on' if args.shm else 'off'}")
        backends = [f'{k[8:]}={v}' for k, v in d.items() if k.startswith('backend.')]
        print('backends: ' + ', '.join(backends))
        print(f'end-to-end latency publish->MotionMasks receipt: p50 {percentile(lat, 50):.1f} '
              f'ms, p95 {percentile(lat, 95):.1f} ms, max {max(lat, default=float("nan")):.1f} '
              f'ms over {len(lat)} outputs')
        print(f'sustained output rate: {(len(rec) - 1) / span:.2f} Hz '
              f'({len(rec)} outputs in {span:.2f} s)')
        print(f"node counters: received {counts['received']}, processed {counts['processed']}, "
              f"dropped {counts['dropped']}, rejected {counts['rejected']}; "
              f"lost in transport {args.frames - counts['received']}")
        print(f"node-side latency (receipt->publish): p50 {d.get('latency_p50_ms')} ms, "
              f"p95 {d.get('latency_p95_ms')} ms; processing p50 "
              f"{d.get('processing_p50_ms')} ms, p95 {d.get('processing_p95_ms')} ms")
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        if node_proc is not None:
            node_proc.send_signal(signal.SIGINT)
            try:
                node_proc.wait(10)
            except subprocess.TimeoutExpired:
                node_proc.kill()
                code = 1
    return code


if __name__ == '__main__':
    sys.exit(main())
