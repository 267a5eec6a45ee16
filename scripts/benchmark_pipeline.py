#!/usr/bin/env python3
"""Benchmark the streaming pipeline: per-stage and end-to-end ms (p50/p95), fps, peak RSS.

    python scripts/benchmark_pipeline.py INPUT [INPUT ...] [--config FILE] [--set k=v ...]
                                         [--frames N] [--warmup 5] [--threads 0]

INPUT is anything ``motionseg run`` reads (video, image folder, DAVIS sequence folder), or a
dataset root that ``motionseg evaluate`` reads (each of its sequences); the frames are
decoded into memory first so that decoding is not timed, and looped (ping-pong) to reach
``--frames`` (0: each input once). End to end is the pipeline's ``process()`` total. With
several inputs, a pooled line over all their timed frames follows the per-input tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from typing import Dict, List, Tuple

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


def expand(inputs: List[str]) -> List[str]:
    """Replace a dataset root (any layout ``motionseg evaluate`` reads) by its sequences."""
    from motionseg_ros.evaluation.datasets import DatasetError, open_dataset

    out: List[str] = []
    for item in inputs:
        try:
            sequences = open_dataset(item).select(None)
        except DatasetError:  # a video, an image folder or one sequence
            out.append(item)
            continue
        out.extend(str(seq.image_paths[0].parent) for seq in sequences)
    return out


def run_input(path: str, args: argparse.Namespace, config: dict) -> Tuple[Dict[str, list], float]:
    """Time one input; print its table; return per-stage ms lists and CPU seconds."""
    from motionseg_ros.io.sources import open_source
    from motionseg_ros.pipeline import StreamingPipeline
    from motionseg_ros.types import Frame

    images = [f.image for f in open_source(path)]
    if not images:
        raise SystemExit(f'{path}: no frames')
    pipe = StreamingPipeline(config)
    period = int(1e9 / 30)
    stages: Dict[str, list] = {}
    frames = args.frames if args.frames > 0 else len(images)
    t_wall = t_cpu = 0.0
    for i in range(args.warmup + frames):
        k = i % (2 * len(images) - 2) if len(images) > 1 else 0
        k = k if k < len(images) else 2 * len(images) - 2 - k  # ping-pong: no jump at the loop
        if i == args.warmup:
            t_wall = time.perf_counter()
            t_cpu = time.process_time()
        res = pipe.process(Frame(image=images[k], stamp_ns=i * period, index=i))
        if i >= args.warmup:
            for key, ms in res.timings_ms.items():
                stages.setdefault(key, []).append(ms)
    wall = time.perf_counter() - t_wall
    cpu = time.process_time() - t_cpu
    backends = pipe.backends
    pipe.close()
    h, w = images[0].shape[:2]
    print(f'input: {path} ({w}x{h}, {len(images)} frames, {frames} timed); backends: '
          f'{backends}; overrides: {" ".join(args.set) or "none"}')
    print_table(stages)
    tot = np.asarray(stages['total'])
    print(f'end to end: {len(tot) / (tot.sum() / 1e3):.1f} fps from process() time, '
          f'{len(tot) / wall:.1f} fps wall; p95 latency {np.percentile(tot, 95):.1f} ms')
    print(f'CPU time: {cpu / len(tot) * 1e3:.1f} ms per frame over all threads '
          f'(a lower bound on latency for a busy machine: {len(tot) / cpu:.1f} fps per core)')
    return stages, cpu


def print_table(stages: Dict[str, list]) -> None:
    """Print p50 / p95 / mean per stage."""
    print(f'{"stage":12s} {"p50 ms":>8s} {"p95 ms":>8s} {"mean ms":>8s} {"frames":>7s}')
    order = ['depth', 'tracker', 'features', 'classifier', 'grouping', 'densifier', 'total']
    for key in order + sorted(set(stages) - set(order)):
        if key in stages:
            v = np.asarray(stages[key])
            print(f'{key:12s} {np.percentile(v, 50):8.1f} {np.percentile(v, 95):8.1f} '
                  f'{v.mean():8.1f} {v.size:7d}')


def main() -> int:
    """Parse arguments, run every input, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('input', nargs='+')
    ap.add_argument('--config', default=None)
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--frames', type=int, default=200,
                    help='frames timed per input (looped); 0: each input once')
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--threads', type=int, default=0,
                    help="OpenCV threads (0: the config's pipeline.opencv_threads)")
    args = ap.parse_args()
    from motionseg_ros.config import load_config

    overrides = list(args.set)
    if args.threads > 0:
        overrides.append(f'pipeline.opencv_threads={args.threads}')
    config = load_config(args.config, overrides)
    print(f'machine: {machine()}')
    pooled: Dict[str, list] = {}
    cpu_total = 0.0
    inputs = expand(args.input)
    for path in inputs:
        stages, cpu = run_input(path, args, config)
        cpu_total += cpu
        for key, v in stages.items():
            pooled.setdefault(key, []).extend(v)
        print()
    if len(inputs) > 1:
        tot = np.asarray(pooled['total'])
        print(f'pooled over {len(inputs)} inputs, {tot.size} timed frames:')
        print_table(pooled)
        print(f'end to end: {tot.size / (tot.sum() / 1e3):.1f} fps; latency p50 '
              f'{np.percentile(tot, 50):.1f} ms, p95 {np.percentile(tot, 95):.1f} ms; CPU '
              f'{cpu_total / tot.size * 1e3:.1f} ms per frame over all threads')
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f'machine after: {machine()}')
    print(f'peak RSS: {peak_kb / 1024:.1f} MiB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
