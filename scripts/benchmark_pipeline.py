#!/usr/bin/env python3
"""Benchmark the streaming pipeline: per-stage and end-to-end ms (p50/p95), fps, peak RSS.

    python scripts/benchmark_pipeline.py INPUT [INPUT ...] [--config FILE] [--set k=v ...]
                                         [--frames N] [--warmup 5] [--threads 0]
                                         [--busy-cores K | --compare-busy K]

INPUT is anything ``motionseg run`` reads (video, image folder, DAVIS sequence folder), or a
dataset root that ``motionseg evaluate`` reads (each of its sequences); the frames are
decoded into memory first so that decoding is not timed, and looped (ping-pong) to reach
``--frames`` (0: each input once). End to end is the pipeline's ``process()`` total. With
several inputs, a pooled line over all their timed frames follows the per-input tables.

``--busy-cores K`` runs K competing CPU-bound processes (``evaluation.busy_load``) from before
the warm-up to the end, as a robot whose CPU is busy elsewhere; ``--compare-busy K`` runs
everything idle and then with K busy processes and prints the two side by side with their ratio.
Peak RSS is the process's high-water mark, reset before each run where Linux allows it.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import signal
import sys
import time
from typing import Dict, List, Tuple

import numpy as np


_interrupted = False


def _on_sigint(signum: int, frame: object) -> None:
    """Ctrl-C that is not lost: remembered, then raised as usual.

    A KeyboardInterrupt raised inside an import or a finaliser can be swallowed ("Exception
    ignored in ..."); the frame loop checks the flag, so the run still stops within one frame.
    """
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def machine(busy: str = 'no busy processes') -> str:
    """Describe the CPU: model name, cores usable, load average, competing busy processes."""
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as fh:
            for line in fh:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    from motionseg_ros.evaluation.evaluate import usable_cores
    cores = usable_cores()
    load = ', '.join(f'{x:.2f}' for x in os.getloadavg())
    return f'{model}; {cores} cores usable; load average {load}; {busy}'


def reset_peak_rss() -> None:
    """Reset the kernel's RSS high-water mark of this process (Linux >= 4.0; else a no-op)."""
    try:
        with open('/proc/self/clear_refs', 'w', encoding='ascii') as fh:
            fh.write('5')
    except OSError:
        pass


def peak_rss_mib() -> float:
    """Peak RSS since the last reset (VmHWM), else since the process started."""
    try:
        with open('/proc/self/status', encoding='ascii') as fh:
            for line in fh:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        if _interrupted:
            raise KeyboardInterrupt
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


def run_all(args: argparse.Namespace, config: dict, busy_cores: int) -> Dict[str, float]:
    """Run every input with ``busy_cores`` busy processes; print the tables; return a summary."""
    from motionseg_ros.evaluation.busy_load import BusyLoad
    import motionseg_ros.pipeline  # noqa: F401  imported before the load starts, not timed

    reset_peak_rss()
    pooled: Dict[str, list] = {}
    cpu_total = 0.0
    inputs = expand(args.input)
    with BusyLoad(busy_cores) as load:
        print(f'machine: {machine(load.describe())}', flush=True)
        for path in inputs:
            stages, cpu = run_input(path, args, config)
            cpu_total += cpu
            for key, v in stages.items():
                pooled.setdefault(key, []).extend(v)
            print()
        after = machine(load.describe())
    used = ', '.join(f'{c:.1f}' for c in load.cpu_used)
    if busy_cores:
        print(f'busy processes ran: {busy_cores}, CPU s each: {used}; all stopped')
    tot = np.asarray(pooled['total'])
    if len(inputs) > 1:
        print(f'pooled over {len(inputs)} inputs, {tot.size} timed frames:')
        print_table(pooled)
        print(f'end to end: {tot.size / (tot.sum() / 1e3):.1f} fps; latency p50 '
              f'{np.percentile(tot, 50):.1f} ms, p95 {np.percentile(tot, 95):.1f} ms; CPU '
              f'{cpu_total / tot.size * 1e3:.1f} ms per frame over all threads')
    print(f'machine after: {after}')
    peak = peak_rss_mib()
    print(f'peak RSS: {peak:.1f} MiB')
    cls = np.asarray(pooled.get('classifier', [np.nan]))
    return {'fps': tot.size / (tot.sum() / 1e3),
            'end to end p50 ms': float(np.percentile(tot, 50)),
            'end to end p95 ms': float(np.percentile(tot, 95)),
            'classifier p50 ms': float(np.percentile(cls, 50)),
            'classifier p95 ms': float(np.percentile(cls, 95)),
            'peak RSS MiB': peak}


def print_comparison(idle: Dict[str, float], busy: Dict[str, float], k: int) -> None:
    """Print the idle and loaded summaries side by side with loaded / idle."""
    head = f'busy {k}'
    print(f'idle vs {k} busy processes ({machine("busy processes stopped")}):')
    print(f'{"":20s} {"idle":>9s} {head:>9s} {"ratio":>7s}')
    for key, a in idle.items():
        b = busy[key]
        ratio = b / a if a else float('nan')
        print(f'{key:20s} {a:9.1f} {b:9.1f} {ratio:7.2f}')


def main() -> int:
    """Parse arguments, run every input (idle and / or loaded), print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('input', nargs='+')
    ap.add_argument('--config', default=None)
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--frames', type=int, default=200,
                    help='frames timed per input (looped); 0: each input once')
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--threads', type=int, default=0,
                    help="OpenCV threads (0: the config's pipeline.opencv_threads)")
    load = ap.add_mutually_exclusive_group()
    load.add_argument('--busy-cores', type=int, default=0, metavar='K',
                      help='run K competing CPU-bound processes during the benchmark')
    load.add_argument('--compare-busy', type=int, default=0, metavar='K',
                      help='run idle, then with K busy processes; print both side by side')
    args = ap.parse_args()
    signal.signal(signal.SIGINT, _on_sigint)
    if args.busy_cores < 0 or args.compare_busy < 0:
        ap.error('the number of busy processes must be >= 0')
    from motionseg_ros.config import load_config

    overrides = list(args.set)
    if args.threads > 0:
        overrides.append(f'pipeline.opencv_threads={args.threads}')
    config = load_config(args.config, overrides)
    if not args.compare_busy:
        run_all(args, config, args.busy_cores)
        return 0
    print('== idle ==')
    idle = run_all(args, config, 0)
    print(f'\n== {args.compare_busy} busy processes ==')
    busy = run_all(args, config, args.compare_busy)
    print()
    print_comparison(idle, busy, args.compare_busy)
    return 0


if __name__ == '__main__':
    sys.exit(main())
