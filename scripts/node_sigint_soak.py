#!/usr/bin/env python3
"""Repeat Ctrl-C on ``ros2 launch`` against a busy segment_node: does it always end cleanly.

    source env.sh
    python scripts/node_sigint_soak.py --runs 20

Each run starts the installed node in its own process group, feeds it frames at 20 fps (it is
busy when the signal comes), waits for two outputs, then sends SIGINT to the whole group twice
(the terminal's Ctrl-C reaches launch and node, then launch forwards one more), ``--gap`` s
apart (cycling through the given gaps). Clean = exit code 0, no traceback, no
``KeyboardInterrupt``, no C++ abort. Prints one line per run and the clean count.
``--pythonpath DIR`` runs the node module from another source tree (e.g. an older commit
extracted with ``git archive``) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test'))

BAD = ('Traceback', 'KeyboardInterrupt', 'terminate called')


def main() -> int:
    """Run the soak; exit 1 when any run was not clean."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=20)
    ap.add_argument('--gap', type=float, nargs='+', default=[0.0, 0.02, 0.1, 0.3])
    ap.add_argument('--pythonpath', help='run motionseg_ros.ros.segment_node from this tree')
    args = ap.parse_args()

    from ros_helpers import (SEGMENT_YAML, NodeProcess, Probe, davis_frames, image_msg,
                             isolate_dds, node_executable)
    isolate_dds()
    import rclpy
    from sensor_msgs.msg import Image

    from motionseg_ros.msg import MotionMasks
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    probe = Probe(ctx, 'sigint_soak')
    probe.subscribe(MotionMasks, '/motion_masks')
    pub = probe.publisher(Image, '/camera/image_raw')
    frames = davis_frames('car-shadow', 10)
    cmd, env = node_executable(), {}
    if args.pythonpath:
        # the module's file, not ``-m``: that would put the working directory (this
        # checkout) first on sys.path
        cmd = [sys.executable, str(Path(args.pythonpath, 'motionseg_ros/ros/segment_node.py'))]
        env = {'PYTHONPATH': f"{args.pythonpath}:{os.environ.get('PYTHONPATH', '')}"}
    clean_runs = 0
    for run in range(args.runs):
        gap = args.gap[run % len(args.gap)]
        node = NodeProcess(cmd + ['--ros-args', '-r', 'image:=/camera/image_raw',
                                  '--params-file', str(SEGMENT_YAML)], env=env, own_group=True)
        stop = threading.Event()
        try:
            if not node.wait_output('ready', 120):
                print(f'run {run + 1}: did not start\n{node.output()[-2000:]}')
                continue
            probe.wait_matched(pub, ['/motion_masks'])
            probe.clear('/motion_masks')

            def feed() -> None:
                i = 0
                while not stop.is_set():
                    pub.publish(image_msg(frames[i % len(frames)],
                                          1_700_000_000_000_000_000 + i * 50_000_000))
                    i += 1
                    stop.wait(0.05)
            threading.Thread(target=feed, daemon=True).start()
            busy = probe.wait_for(lambda: len(probe.messages('/motion_masks')) >= 2, 60.0)
            seconds = node.interrupt_group(times=2, gap=gap)
            stop.set()
            out = node.output()
            bad = [b for b in BAD if b in out]
            clean = node.returncode == 0 and not bad
            clean_runs += clean
            print(f'run {run + 1:2d}: gap {gap:.2f} s  busy={busy}  exit {node.returncode:3d}  '
                  f'{seconds:5.2f} s  {"clean" if clean else "NOT CLEAN " + str(bad)}',
                  flush=True)
        finally:
            stop.set()
            node.close()
    print(f'{clean_runs}/{args.runs} clean  (machine: {platform.machine()}, '
          f'{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f})')
    probe.close()
    rclpy.shutdown(context=ctx)
    return 0 if clean_runs == args.runs else 1


if __name__ == '__main__':
    raise SystemExit(main())
