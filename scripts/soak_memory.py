#!/usr/bin/env python3
"""Soak test: resident memory of the pipeline over a long stream (an input looped).

    python scripts/soak_memory.py INPUT [--frames 2000] [--warmup 200] [--every 250]

Prints RSS at intervals and the growth after warm-up; exits 1 when it exceeds ``--limit-mb``
(50 by default). The input is played forwards and backwards (ping-pong) with increasing
stamps so that tracks and objects keep being born and lost as in a real stream.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np


def rss_mb() -> float:
    """Return the resident set size of this process in MiB (Linux /proc)."""
    with open(f'/proc/{os.getpid()}/statm', encoding='ascii') as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def main() -> int:
    """Run the stream and report memory."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('input')
    ap.add_argument('--config', default=None)
    ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE')
    ap.add_argument('--frames', type=int, default=2000)
    ap.add_argument('--warmup', type=int, default=200)
    ap.add_argument('--every', type=int, default=250)
    ap.add_argument('--limit-mb', type=float, default=50.0)
    args = ap.parse_args()
    from motionseg_ros.config import load_config
    from motionseg_ros.io.sources import open_source
    from motionseg_ros.pipeline import StreamingPipeline
    from motionseg_ros.types import Frame

    images = [f.image for f in open_source(args.input)]
    pipe = StreamingPipeline(load_config(args.config, args.set))
    n = len(images)
    base = None
    peak_after = 0.0
    t0 = time.perf_counter()
    max_objects = 0
    for i in range(args.frames):
        k = i % (2 * n - 2) if n > 1 else 0
        k = k if k < n else 2 * n - 2 - k
        res = pipe.process(Frame(image=images[k], stamp_ns=i * 33_333_333, index=i))
        max_objects = max(max_objects, max((o.id for o in res.objects), default=0))
        if i + 1 == args.warmup:
            gc.collect()
            base = rss_mb()
            print(f'frame {i + 1:6d}: RSS {base:8.1f} MiB (baseline after warm-up)', flush=True)
        elif (i + 1) % args.every == 0 or i + 1 == args.frames:
            now = rss_mb()
            if base is not None:
                peak_after = max(peak_after, now - base)
            grow = f'{now - base:+7.1f} MiB' if base is not None else ''
            print(f'frame {i + 1:6d}: RSS {now:8.1f} MiB {grow}  tracks {res.tracks.num_tracks}'
                  f'  ({(i + 1) / (time.perf_counter() - t0):.1f} fps)', flush=True)
    stores = {name: len(getattr(stage, '_prob', getattr(stage, '_prev', {})) or {})
              for name, stage in pipe.stages.items()
              if stage is not None and name in ('classifier', 'grouping')}
    print(f'max growth after warm-up: {peak_after:.1f} MiB over {args.frames - args.warmup} '
          f'frames; highest object id {max_objects}; per-track maps {stores}')
    return 0 if peak_after <= args.limit_mb else 1


if __name__ == '__main__':
    np.seterr(all='ignore')
    sys.exit(main())
