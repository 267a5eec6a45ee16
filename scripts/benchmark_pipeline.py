#!/usr/bin/env python3
"""Benchmark the streaming pipeline: per-stage and end-to-end ms (p50/p95), fps, peak RSS.

    python scripts/benchmark_pipeline.py INPUT [--config FILE] [--set k=v ...] [--frames N]
                                         [--warmup 5] [--threads 0]

INPUT is anything ``motionseg run`` reads (video, image folder, DAVIS sequence folder); the
frames are decoded into memory first so that decoding is not timed, and looped to reach
``--frames``. End to end is the pipeline's ``process()`` total.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time

import numpy as np


def machine() -> str:
    """Describe the CPU: model name, logical cores usable by this process, load average."""
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as fh:
            for line in fh:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    return f'{model}; {cores} cores usable; load average {load}'


def main() -> int:
    """Parse arguments, run, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('input')
    ap.add_argument('--config', default=None)
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--frames', type=int, default=200, help='frames timed (input is looped)')
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--threads', type=int, default=0, help='cv2.setNumThreads (0: default)')
    args = ap.parse_args()
    import cv2
    if args.threads > 0:
        cv2.setNumThreads(args.threads)
    from motionseg_ros.config import load_config
    from motionseg_ros.io.sources import open_source
    from motionseg_ros.pipeline import StreamingPipeline
    from motionseg_ros.types import Frame

    src = open_source(args.input)
    images = [f.image for f in src]
    if not images:
        print('no frames', file=sys.stderr)
        return 2
    pipe = StreamingPipeline(load_config(args.config, args.set))
    period = int(1e9 / 30)
    stages: dict = {}
    totals = []
    n = args.warmup + args.frames
    t_wall = t_cpu = 0.0
    for i in range(n):
        k = i % (2 * len(images) - 2) if len(images) > 1 else 0
        k = k if k < len(images) else 2 * len(images) - 2 - k  # ping-pong: no jump at the loop
        if i == args.warmup:
            t_wall = time.perf_counter()
            t_cpu = time.process_time()
        res = pipe.process(Frame(image=images[k], stamp_ns=i * period, index=i))
        if i >= args.warmup:
            totals.append(res.timings_ms.get('total', 0.0))
            for key, ms in res.timings_ms.items():
                stages.setdefault(key, []).append(ms)
    wall = time.perf_counter() - t_wall
    cpu = time.process_time() - t_cpu
    h, w = images[0].shape[:2]
    print(f'machine: {machine()}')
    print(f'input: {args.input} ({w}x{h}, {len(images)} frames, looped to {args.frames}); '
          f'backends: {pipe.backends}; overrides: {" ".join(args.set) or "none"}')
    print(f'{"stage":12s} {"p50 ms":>8s} {"p95 ms":>8s} {"mean ms":>8s} {"frames":>7s}')
    order = ['depth', 'tracker', 'features', 'classifier', 'grouping', 'densifier', 'total']
    for key in order + sorted(set(stages) - set(order)):
        if key in stages:
            v = np.asarray(stages[key])
            print(f'{key:12s} {np.percentile(v, 50):8.1f} {np.percentile(v, 95):8.1f} '
                  f'{v.mean():8.1f} {v.size:7d}')
    tot = np.asarray(totals)
    print(f'end to end: {len(tot) / (tot.sum() / 1e3):.1f} fps from process() time, '
          f'{len(tot) / wall:.1f} fps wall; p95 latency {np.percentile(tot, 95):.1f} ms')
    print(f'CPU time: {cpu / len(tot) * 1e3:.1f} ms per frame over all threads '
          f'(a lower bound on latency for a busy machine: {len(tot) / cpu:.1f} fps per core)')
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f'peak RSS: {peak_kb / 1024:.1f} MiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
