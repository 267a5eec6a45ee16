#!/usr/bin/env python3
"""Per-frame cost of the densifier alone: CPU ms (all its threads) and wall ms.

    python scripts/densifier_cost.py ROOT [--sequences car-shadow dog] [--frames 40]
        [--config default] [--config mask_head.yaml]

Runs the pipeline over the first frames of each sequence; the densifier's ``prepare`` is waited
for at once (no overlap with the tracker and classifier), so the process CPU time spent in
``prepare`` + ``densify`` is the densifier's own, even on a loaded machine. Prints medians over
frames 2.. (the first has no flow) for each config.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np


def measure(config: Optional[str], root: str, sequences: Sequence[str], frames: int
            ) -> Dict[str, Any]:
    """Return the densifier's median CPU and wall ms per frame under ``config``."""
    from motionseg_ros.config import load_config
    from motionseg_ros.evaluation.datasets import open_dataset
    from motionseg_ros.pipeline import StreamingPipeline
    from motionseg_ros.types import Frame
    cfg = load_config(config)
    dataset = open_dataset(root)
    wall, cpu = [], []
    for name in sequences:
        seq = dataset.sequences[name]
        pipe = StreamingPipeline(cfg)
        stage = pipe.stages['densifier']
        prepare, densify = stage.prepare, stage.densify
        spent = {'w': 0.0, 'c': 0.0}

        def timed_prepare(frame, ctx=None):
            w0, c0 = time.perf_counter(), time.process_time()
            prepare(frame, ctx)
            pending = getattr(stage, '_pending', None)
            if pending is not None:
                pending[1].result()
            spent['w'], spent['c'] = time.perf_counter() - w0, time.process_time() - c0

        def timed_densify(*args):
            w0, c0 = time.perf_counter(), time.process_time()
            out = densify(*args)
            spent['w'] += time.perf_counter() - w0
            spent['c'] += time.process_time() - c0
            return out

        stage.prepare, stage.densify = timed_prepare, timed_densify
        try:
            for i in range(min(frames, len(seq))):
                pipe.process(Frame(image=seq.image(i), stamp_ns=int(round(i * 1e9 / seq.fps)),
                                   index=i))
                if i >= 2:
                    wall.append(spent['w'] * 1e3)
                    cpu.append(spent['c'] * 1e3)
        finally:
            pipe.close()
    return {'densifier': cfg['densifier']['name'], 'frames': len(cpu),
            'cpu_ms_p50': float(np.median(cpu)), 'wall_ms_p50': float(np.median(wall)),
            'wall_ms_p95': float(np.percentile(wall, 95))}


def main() -> int:
    """Measure every config given (default: the packaged default and mask_head.yaml)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('root', help='dataset folder (e.g. ../shared/data/davis2016)')
    parser.add_argument('--sequences', nargs='+', default=['car-shadow', 'dog', 'blackswan'])
    parser.add_argument('--frames', type=int, default=40, help='frames per sequence')
    parser.add_argument('--config', action='append', default=None,
                        help="pipeline YAML ('default' for the packaged one); repeatable")
    args = parser.parse_args()
    configs = args.config or ['default', 'mask_head.yaml']
    out = {c: measure(None if c == 'default' else c, args.root, args.sequences, args.frames)
           for c in configs}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
